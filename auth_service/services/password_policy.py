"""Password policy after NIST SP 800-63B-4 §3.1.1.2 (800-63B-3 §5.1.1.2).

What it checks: length in Unicode code points after NFKC normalisation
(12..128 by default, docs/ARCHITECTURE.md), a block-list of common passwords shipped
with the project (auth_service/data/common_passwords.txt), the email's local
part, and a single repeated character. What it deliberately does not check: no
composition rules (one upper case letter, one digit, ...). NIST says verifiers
SHALL NOT impose them, because they push people towards predictable patterns
like "Password1!" and add no real strength.

Messages are for the person choosing the password. They never repeat the
password.
"""

from __future__ import annotations

import functools
import itertools
import string
import unicodedata
from array import array
from collections.abc import Iterable, Iterator, Set
from importlib import resources

__all__ = ["PackedStringSet", "PasswordPolicy", "load_common_passwords"]

_COMMON_PASSWORDS_RESOURCE = ("data", "common_passwords.txt")  # inside auth_service/

# What the "common word + predictable suffix" rule strips from the end.
_SUFFIX_CHARS = frozenset(string.digits + string.punctuation + " ")
# Shift + 1..0 on a US keyboard: "password!@#$%^" is a well-worn pattern.
_SHIFTED_DIGITS = "!@#$%^&*()"


def _fold(text: str) -> str:
    """NFKC, then case-fold: the form used both for the list and for comparisons."""
    return unicodedata.normalize("NFKC", text).casefold()


class PackedStringSet(Set[str]):
    """An immutable set of strings kept as one sorted string plus end offsets.

    Why: the shipped block-list has ~30,000 entries; as a frozenset of str
    objects it held ~5 MB of the auth service's resident memory for its whole
    life (issue 6, target 7), this form ~0.4 MB. Membership is an exact binary
    search (~16 string comparisons, microseconds, only on registration and
    password changes): the same answers as the frozenset it replaces, so the
    policy rejects exactly the same passwords.
    """

    __slots__ = ("_blob", "_ends")

    def __init__(self, entries: Iterable[str] = ()) -> None:
        ordered = sorted(set(entries))
        ends = array("Q")
        end = 0
        for entry in ordered:
            end += len(entry)
            ends.append(end)
        self._blob = "".join(ordered)
        self._ends = ends

    def _entry(self, index: int) -> str:
        start = self._ends[index - 1] if index else 0
        return self._blob[start : self._ends[index]]

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        lo, hi = 0, len(self._ends)
        while lo < hi:  # bisect_left over the sorted entries
            mid = (lo + hi) // 2
            if self._entry(mid) < value:
                lo = mid + 1
            else:
                hi = mid
        return lo < len(self._ends) and self._entry(lo) == value

    def __iter__(self) -> Iterator[str]:
        return (self._entry(i) for i in range(len(self._ends)))

    def __len__(self) -> int:
        return len(self._ends)


@functools.cache
def load_common_passwords() -> PackedStringSet:
    """Read the shipped common-password list once per process (cached).

    Lines starting with ``#`` are comments. Entries are folded again on load,
    so an edited file cannot break the case-insensitive comparison.
    """
    resource = resources.files("auth_service")
    for part in _COMMON_PASSWORDS_RESOURCE:
        resource = resource / part
    return _parse(resource.read_text(encoding="utf-8").splitlines())


def _parse(lines: Iterable[str]) -> PackedStringSet:
    return PackedStringSet(
        _fold(line) for line in (raw.strip() for raw in lines) if line and not line.startswith("#")
    )


class PasswordPolicy:
    """Check a new password against the policy. No composition rules.

    Args:
        min_length: fewest code points (after NFKC). docs/ARCHITECTURE.md: 12.
        max_length: most code points (after NFKC). docs/ARCHITECTURE.md: 128. NIST asks
            for at least 64, so that passphrases fit.
        common_passwords: the block-list. Defaults to the shipped list
            (loaded once per process). Entries are compared after NFKC and
            case-folding.

    Raises:
        ValueError: ``min_length < 1`` or ``max_length < min_length``.
    """

    def __init__(
        self,
        *,
        min_length: int = 12,
        max_length: int = 128,
        common_passwords: Iterable[str] | None = None,
    ) -> None:
        if min_length < 1 or max_length < min_length:
            raise ValueError(
                "expected 1 <= min_length <= max_length, "
                f"got min_length={min_length}, max_length={max_length}"
            )
        self.min_length = min_length
        self.max_length = max_length
        self._common = (
            load_common_passwords() if common_passwords is None else _parse(common_passwords)
        )

    def check(self, password: str, *, email: str) -> list[str]:
        """List the ways a new password breaks the policy.

        Args:
            password: the password as the client sent it.
            email: the account's email. A password that contains its local part
                (the part before the last "@", 3 or more characters) is rejected.

        Returns:
            Human-readable problems. An empty list means the password is
            acceptable. The messages never contain the password.
        """
        problems: list[str] = []
        normalized = unicodedata.normalize("NFKC", password)
        # 800-63B counts each Unicode code point as one character, after
        # normalisation. The hasher hashes the same NFKC form.
        length = len(normalized)
        if length < self.min_length:
            problems.append(
                f"Password must be at least {self.min_length} characters long (it has {length})."
            )
        elif length > self.max_length:
            problems.append(
                f"Password must be at most {self.max_length} characters long (it has {length})."
            )
        if any(0xD800 <= ord(c) <= 0xDFFF for c in normalized):
            # A lone surrogate cannot be UTF-8 encoded, so the hasher would refuse it.
            problems.append("Password contains characters that are not valid Unicode text.")

        folded = normalized.casefold()
        if folded and len(set(folded)) == 1:
            problems.append("Password must not be a single character repeated.")
        if self._is_common(folded):
            problems.append(
                "Password is too common: it is on a list of passwords that attackers try first."
            )
        if _contains_email_local_part(folded, email):
            problems.append(
                "Password must not contain the part of your email address before the @."
            )
        return problems

    def _is_common(self, folded: str) -> bool:
        if folded in self._common:
            return True
        # Also reject a common password with a predictable tail: "password123456",
        # "iloveyou2024!!", "sunshine!!!!!!". Cracking rules try these right after
        # the bare word, and a 12-character minimum invites them ("password" + 4
        # digits). To avoid over-rejecting, the rule needs both:
        #   - the part left after stripping trailing digits, punctuation and
        #     spaces is itself on the list (exact match, no leetspeak folding);
        #   - the stripped tail is predictable (see _is_predictable_suffix).
        # So "maggie!82649173" passes: a common word followed by 8 random
        # digits resists guessing through its tail. "Str0ngP@ssw0rd!!" (the
        # seed client's password) passes too: "str0ngp@ssw0rd" is not on the
        # list. There is no leetspeak folding: it would match far more of the
        # list against ordinary passphrases, for little gain.
        # Only trailing characters are stripped. Prefixes ("123password") are
        # rarer, and stripping them too would reject more good passwords.
        base = folded.rstrip("".join(_SUFFIX_CHARS))
        suffix = folded[len(base) :]
        if not base or not suffix or base not in self._common:
            return False
        return _is_predictable_suffix(suffix)


def _is_predictable_suffix(suffix: str) -> bool:
    """A tail of digits/punctuation that cracking rules would try early."""
    if len(suffix) <= 4:
        return True  # "1", "123", "2024", "!!", "1!": the shortest appendages
    digits = "".join(c for c in suffix if c in string.digits)
    others = "".join(c for c in suffix if c not in string.digits)
    simple_symbols = len(others) <= 2 or len(set(others)) == 1 or others in _SHIFTED_DIGITS
    return simple_symbols and _is_simple_digit_run(digits)


def _is_simple_digit_run(digits: str) -> bool:
    """Short, periodic ("1111", "1212", "123123") or a +-1 run ("123456", "987654")."""
    if len(digits) <= 4:
        return True
    if any(digits == digits[:p] * (len(digits) // p) for p in range(1, 5) if len(digits) % p == 0):
        return True
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(digits)}
    return steps in ({1}, {9})  # ascending or descending, wrapping 9->0 ("1234567890")


def _contains_email_local_part(folded_password: str, email: str) -> bool:
    local = _fold(email.rpartition("@")[0] if "@" in email else email)
    candidates = {local}
    # Sub-addressing ("john+shop@..."): the part before "+" names the person too.
    if "+" in local:
        candidates.add(local.split("+", 1)[0])
    return any(len(c) >= 3 and c in folded_password for c in candidates)
