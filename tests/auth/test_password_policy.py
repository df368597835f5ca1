"""PasswordPolicy after NIST SP 800-63B: length, common list, email local part, no composition."""

from __future__ import annotations

import unicodedata

import pytest

from auth_service.services.password_policy import (
    PackedStringSet,
    PasswordPolicy,
    load_common_passwords,
)

EMAIL = "john@example.com"


@pytest.fixture(scope="module")
def policy() -> PasswordPolicy:
    return PasswordPolicy()


def _assert_no_echo(password: str, problems: list[str]) -> None:
    for message in problems:
        assert password.casefold() not in message.casefold()


# --- the client we must not break --------------------------------------------------------


def test_seed_client_password_is_accepted(policy: PasswordPolicy) -> None:
    assert policy.check("Str0ngP@ssw0rd!!", email="john@example.com") == []


# --- no composition rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "glacier marmalade trombone",  # lower case words only
        "zqxvbnmwlkjh",  # 12 letters, no digit, no symbol
        "839201746512",  # 12 digits, no letter
        "kx7#Qm2!vLp9",  # exactly 12
        "maggie!82649173",  # common word + an unpredictable tail (see _is_common)
        "sunshine 4821 9067",
        "密码是一句很长的中文句子",  # 12 CJK code points (36 UTF-8 bytes)
    ],
)
def test_acceptable_passwords(policy: PasswordPolicy, password: str) -> None:
    assert policy.check(password, email=EMAIL) == []


# --- length -----------------------------------------------------------------------------------


def test_too_short(policy: PasswordPolicy) -> None:
    password = "k7#Qm2!vLp9"
    problems = policy.check(password, email=EMAIL)
    assert problems == ["Password must be at least 12 characters long (it has 11)."]
    _assert_no_echo(password, problems)


def test_empty_password_is_too_short(policy: PasswordPolicy) -> None:
    assert policy.check("", email=EMAIL) == [
        "Password must be at least 12 characters long (it has 0)."
    ]


def test_128_characters_accepted_129_rejected(policy: PasswordPolicy) -> None:
    at_limit = "ab3$" * 32
    assert len(at_limit) == 128
    assert policy.check(at_limit, email=EMAIL) == []

    over = at_limit + "z"
    problems = policy.check(over, email=EMAIL)
    assert problems == ["Password must be at most 128 characters long (it has 129)."]
    _assert_no_echo(over, problems)


def test_length_counts_code_points_after_nfkc(policy: PasswordPolicy) -> None:
    # 13 code points as typed (decomposed accents), 11 after NFKC composes them.
    decomposed = "Ame\u0301lie-Noe\u0308l"
    assert len(decomposed) == 13
    assert len(unicodedata.normalize("NFKC", decomposed)) == 11
    assert policy.check(decomposed, email=EMAIL) == [
        "Password must be at least 12 characters long (it has 11)."
    ]

    # One code point per character however many UTF-8 bytes it takes.
    emoji = "\U0001f510\U0001f511" * 6  # 12 code points, 48 UTF-8 bytes
    assert policy.check(emoji, email=EMAIL) == []

    # A ligature expands under NFKC: 11 typed code points, 12 after NFKC.
    ligature = "\ufb01ve-apple-x"
    assert len(ligature) == 11
    assert policy.check(ligature, email=EMAIL) == []


def test_custom_lengths() -> None:
    policy = PasswordPolicy(min_length=15, max_length=64, common_passwords=[])
    assert policy.check("a" * 3 + "bcdefghijklm", email=EMAIL) == []
    assert policy.check("bcdefghijklmno", email=EMAIL)[0].startswith("Password must be at least 15")
    with pytest.raises(ValueError, match="min_length"):
        PasswordPolicy(min_length=0)
    with pytest.raises(ValueError, match="max_length"):
        PasswordPolicy(min_length=20, max_length=19)


# --- common passwords -----------------------------------------------------------------------

COMMON = "Password is too common: it is on a list of passwords that attackers try first."


@pytest.mark.parametrize(
    "password",
    [
        "qwerty123456",  # from the zxcvbn list
        "1qaz2wsx3edc",  # from the zxcvbn list
        "PasswordPassword",  # hand-added; the comparison ignores case
        "QWERTYUIOPASDF",
        "123456789012",
        "correct horse battery staple",
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11\uff12\uff13\uff14",  # fullwidth
    ],
)
def test_common_password_rejected(policy: PasswordPolicy, password: str) -> None:
    problems = policy.check(password, email=EMAIL)
    assert COMMON in problems
    _assert_no_echo(password, problems)


@pytest.mark.parametrize(
    "password",
    [
        "password123456",  # digit run
        "iloveyou2024!!",  # year + two symbols
        "sunshine12341234",  # periodic digits
        "Dragon!@#$%^&*",  # shifted-digit walk
        "football!!!!!!!!",  # one symbol repeated
        "monkey9876543210",  # descending run
        "letmein 1234",
    ],
)
def test_common_password_with_predictable_suffix_rejected(
    policy: PasswordPolicy, password: str
) -> None:
    problems = policy.check(password, email=EMAIL)
    assert problems == [COMMON]
    _assert_no_echo(password, problems)


def test_shipped_list_loads_once_and_is_folded() -> None:
    common = load_common_passwords()
    assert load_common_passwords() is common
    assert len(common) > 30_000
    assert {"123456", "password", "passwordpassword", "iloveyou1234"} <= common
    assert not any(entry.startswith("#") for entry in common)
    assert all(entry == unicodedata.normalize("NFKC", entry).casefold() for entry in common)
    assert "str0ngp@ssw0rd" not in common
    assert "str0ngp@ssw0rd!!" not in common


def test_custom_list_is_folded_on_load() -> None:
    policy = PasswordPolicy(common_passwords=["Hunter2Hunter2", "# not an entry", ""])
    assert policy.check("hunter2HUNTER2", email=EMAIL) == [COMMON]
    assert policy.check("# not an entry", email=EMAIL) == []


# --- email local part -------------------------------------------------------------------------

LOCAL = "Password must not contain the part of your email address before the @."


@pytest.mark.parametrize(
    ("password", "email"),
    [
        ("my-john-passphrase", "john@example.com"),
        ("My-JOHN-passphrase", "John@Example.com"),
        ("john.smith is here", "john.smith+news@example.com"),
        ("john.smith+news rocks", "john.smith+news@example.com"),
        ("hello-bob-the-builder", "bob@example.com"),
    ],
)
def test_email_local_part_rejected(policy: PasswordPolicy, password: str, email: str) -> None:
    problems = policy.check(password, email=email)
    assert problems == [LOCAL]
    _assert_no_echo(password, problems)


def test_short_local_part_is_ignored(policy: PasswordPolicy) -> None:
    # "jo" occurs in plenty of good passwords; only local parts of 3+ count.
    assert policy.check("journey-to-mordor", email="jo@example.com") == []


# --- repeated character, other problems --------------------------------------------------------


@pytest.mark.parametrize("password", ["zzzzzzzzzzzz", "ZzZzZzZzZzZz", "\u00e9" * 6 + "e\u0301" * 6])
def test_single_repeated_character_rejected(policy: PasswordPolicy, password: str) -> None:
    problems = policy.check(password, email=EMAIL)
    assert problems == ["Password must not be a single character repeated."]


def test_lone_surrogate_reported(policy: PasswordPolicy) -> None:
    problems = policy.check("gl\ud800cier marmalade", email=EMAIL)
    assert problems == ["Password contains characters that are not valid Unicode text."]


def test_several_problems_reported_together(policy: PasswordPolicy) -> None:
    problems = policy.check("Dragon", email="dragon@example.com")
    assert problems == [
        "Password must be at least 12 characters long (it has 6).",
        COMMON,
        LOCAL,
    ]


# --- packed block-list (memory, issue 6 target 7) ----------------------------------------------


def test_packed_list_answers_exactly_like_a_frozenset() -> None:
    common = load_common_passwords()
    assert isinstance(common, PackedStringSet)
    plain = frozenset(common)
    assert len(plain) == len(common)
    probes = [
        *sorted(plain)[::97],
        "",
        "\x00",
        "\uffff" * 3,
        "password1",
        "passwor",
        "passwordd",
        " password",
        "123456 ",
        min(plain)[:-1],
        min(plain) + "\x00",
        max(plain) + "a",
    ]
    for probe in probes:
        assert (probe in common) == (probe in plain), probe
    for entry in plain:
        assert entry in common


def test_packed_set_edge_cases() -> None:
    empty = PackedStringSet()
    assert len(empty) == 0
    assert "" not in empty
    assert list(empty) == []
    odd = PackedStringSet(["b", "", "a\nb", "\u00e9t\u00e9", "b", "\U0001f600"])
    assert len(odd) == 5  # duplicates collapse, like a set
    assert set(odd) == {"b", "", "a\nb", "\u00e9t\u00e9", "\U0001f600"}
    for member in ("b", "", "a\nb", "\u00e9t\u00e9", "\U0001f600"):
        assert member in odd
    for other in ("a", "ab", "a\n", "\nb", "ete", "bb", 1, None, b"b"):
        assert other not in odd
    assert odd == {"b", "", "a\nb", "\u00e9t\u00e9", "\U0001f600"}
