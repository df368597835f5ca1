"""PasswordPolicy after NIST SP 800-63B: length, common list, email local part, no composition."""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import date

import pytest

from auth_service.services.password_policy import (
    PackedStringSet,
    PasswordPolicy,
    load_common_passwords,
)
from auth_service.services.password_strength import ESTIMATED_LENGTH

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
    at_limit = hashlib.sha512(b"fixed").hexdigest()  # 128 characters, no pattern
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
    # 12 code points, 48 UTF-8 bytes; unrelated ones (a repeat or a run of
    # neighbouring code points would be refused as too easy to guess).
    emoji = "\U0001f510\U0001f419\U0001f335\U0001f3bb\U0001f6b2\U0001f34b" + (
        "\U0001f989\U0001f9ed\U0001fa81\U0001f30b\U0001f3b2\U0001f994"
    )
    assert len(emoji) == 12
    assert policy.check(emoji, email=EMAIL) == []

    # A ligature expands under NFKC: 11 typed code points, 12 after NFKC.
    ligature = "\ufb01ve-apple-x"
    assert len(ligature) == 11
    assert policy.check(ligature, email=EMAIL) == []


def test_custom_lengths() -> None:
    policy = PasswordPolicy(min_length=15, max_length=64, common_passwords=[])
    assert policy.check("kx7#Qm2!vLp9Rw4", email=EMAIL) == []
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


# --- guessability (zxcvbn), issue: guessable passwords passed ----------------------------------

# The seed client's account: its own data is context for the estimate.
SEED_CONTEXT = {"email": "john@example.com", "name": "John Doe", "date_of_birth": date(1980, 4, 14)}
GUESSABLE = "Password is too easy to guess."


def test_seed_client_password_is_accepted_with_its_own_context(policy: PasswordPolicy) -> None:
    assert policy.check("Str0ngP@ssw0rd!!", **SEED_CONTEXT) == []


@pytest.mark.parametrize(
    "password",
    [
        "P@ssword1234",  # the examples: leet-speak of a common word + digits
        "1qaz@WSX3edc",  # ... and a keyboard walk with Shift held on one column
        "!QAZ2wsx#EDC",  # keyboard walk, Shift on the other columns
        "Zaq1@wsx3edc",  # keyboard walk, reversed columns
        "P@$$w0rd1234",  # leet-speak
        "aaaabbbbcccc",  # repeats
        "abcabcabcabc",  # repeated sequence
        "Summer14041999",  # a word and a date
    ],
)
def test_guessable_passwords_rejected_with_advice(policy: PasswordPolicy, password: str) -> None:
    problems = policy.check(password, **SEED_CONTEXT)
    assert len(problems) == 1
    assert problems[0].startswith(GUESSABLE)
    assert len(problems[0]) > len(GUESSABLE) + 10  # says what to do about it
    _assert_no_echo(password, problems)


def test_shift_on_the_digit_row_is_named(policy: PasswordPolicy) -> None:
    problems = policy.check("1qaz@WSX3edc", **SEED_CONTEXT)
    assert "Holding Shift on the number keys does not hide a common pattern." in problems[0]


@pytest.mark.parametrize(
    ("password", "kinds"),
    [
        ("Jd14041980!!", ["date of birth"]),
        ("D0e-04141980", ["date of birth"]),  # the US order
        ("j0hnd0e-1980", ["name"]),  # leet-speak of the full name
        ("nhojeod1980!", ["name"]),  # reversed
        ("1980-04-14-doe", ["name", "date of birth"]),  # a date zxcvbn reads is the birthday
        ("eXaMpLe.1980", ["email address"]),  # the email's domain
    ],
)
def test_passwords_built_from_the_account_data_rejected(
    policy: PasswordPolicy, password: str, kinds: list[str]
) -> None:
    problems = policy.check(password, **SEED_CONTEXT)
    assert problems == [f"Password must not contain your {kind}." for kind in kinds]
    for message in problems:
        for personal in ("john", "doe", "1980", "14041980", "0414", "example"):
            assert personal not in message.casefold()
    _assert_no_echo(password, problems)


def test_email_local_part_rule_answers_first(policy: PasswordPolicy) -> None:
    # Checked before the estimate, so the problem is reported once.
    assert policy.check("John14041980!", **SEED_CONTEXT) == [LOCAL]


def test_the_same_words_pass_for_another_account(policy: PasswordPolicy) -> None:
    # Personal data counts only for the account it belongs to.
    other = {"email": "ada@lovelace.example", "name": "Ada Lovelace"}
    for password in ("Jd14041980!!", "D0e-04141980", "nhojeod1980!", "eXaMpLe.1980"):
        assert policy.check(password, **other) == []


def test_only_the_first_32_characters_are_estimated(policy: PasswordPolicy) -> None:
    # Bounded work: the estimator grows much faster than linearly with the
    # length. Guessing a whole password takes at least as long as guessing its
    # start, so a strong start is enough whatever follows it ...
    assert ESTIMATED_LENGTH == 32
    head = hashlib.sha256(b"head").hexdigest()[:32]  # no pattern
    assert policy.check(head + "aaaaaaaa", **SEED_CONTEXT) == []
    # ... and a weak start is refused whatever strength follows it.
    weak_head = ("abc" * 11)[:32]
    assert policy.check(weak_head + head, **SEED_CONTEXT)[0].startswith(GUESSABLE)


@pytest.mark.anyio
async def test_check_async_answers_as_check_does(policy: PasswordPolicy) -> None:
    for password in ("Str0ngP@ssw0rd!!", "P@ssword1234", "Jd14041980!!"):
        expected = policy.check(password, **SEED_CONTEXT)
        assert await policy.check_async(password, **SEED_CONTEXT) == expected
