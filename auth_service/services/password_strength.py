"""How guessable a password is, estimated with zxcvbn (the Python port of Dropbox's estimator).

Why an estimator beside the block-list: after the bare common passwords,
cracking tools try keyboard walks ("1qaz2wsx3edc"), leet-speak of common words
("P@ssword1234"), dates, repeats and sequences, and the account holder's own
name, email and birthday. zxcvbn models each of those patterns, counts the
guesses an attacker needs for the cheapest combination of them, and maps the
count to a score 0..4 (Wheeler, "zxcvbn: Low-Budget Password Strength
Estimation", USENIX Security 2016).

The threshold is score >= 3 (``MIN_SCORE``): at least 10^8 guesses, which
zxcvbn describes as "safely unguessable: moderate protection from an offline
slow-hash scenario", i.e. a leaked table of argon2id hashes like ours. Score 4
(10^10) would also reject the seed client's "Str0ngP@ssw0rd!!" (10^8.1), whose
flow must keep working unchanged.

What zxcvbn misses, and what this module adds (still no composition rule):

- Shift held on the digit row. zxcvbn finds "1qaz2wsx3edc" on its password
  list, but scores "1qaz@WSX3edc" (Shift held for the middle column) at 10^9:
  its dictionary matcher undoes case and leet-speak, not Shift. Cracking rules
  toggle Shift as readily as case, so the password is scored a second time
  with "!@#$%^&*()" read as "1234567890", and the lower score counts.
- The account's own data. zxcvbn takes it as ``user_inputs`` and then treats
  it as a one-guess word, but the floor it puts under any combination of three
  or more parts (10^8) lifts "John14041980!" to score 3. A password whose
  cheapest reading uses the name, the email or the date of birth (also
  reversed or in leet-speak) is refused outright (NIST SP 800-63B-4
  §3.1.1.2: "context-specific words ... such as ... the username").

Cost: zxcvbn is pure Python and grows much faster than linearly with the
length: measured on a 2-core machine under load, 128 random characters took
over a second, 64 digit-heavy ones up to a second, 32 at most ~150 ms (mean
~60 ms; ~3x less on an idle core). A registration request must not buy that
much CPU, so only the first ``ESTIMATED_LENGTH`` (32) code points are
estimated, and the caller runs the estimate off the event loop, one at a time
(``PasswordPolicy.check_async``). This is sound: guessing the whole password
takes at least as many guesses as guessing its first 32 characters, so the
bound can only refuse more (a weak start followed by a strong tail), never
accept a weaker password.

Memory: zxcvbn keeps its word lists (passwords, English words, names,
surnames, TV and film) as Python dicts, about 14 MB of the auth service's
resident memory, loaded at import.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from zxcvbn import zxcvbn

__all__ = ["ESTIMATED_LENGTH", "MIN_SCORE", "Estimate", "estimate", "personal_words"]

MIN_SCORE = 3
ESTIMATED_LENGTH = 32  # see "Cost" above
# Shorter pieces of a name ("Al", "Li") would match inside too many ordinary words.
_MIN_PERSONAL_WORD = 3
_UNSHIFT = str.maketrans("!@#$%^&*()", "1234567890")  # US keyboard digit row
_SHIFT_WARNING = "Holding Shift on the number keys does not hide a common pattern."
_WORD_SPLIT = re.compile(r"[^\w]+|_")

# zxcvbn() stores the user inputs in a module-level dictionary before matching,
# so two threads estimating at once could read each other's inputs.
_zxcvbn_lock = threading.Lock()

# The kinds of personal data, in the order messages name them.
NAME, EMAIL, BIRTH = "name", "email address", "date of birth"


@dataclass(frozen=True)
class Estimate:
    """What the estimator found.

    Attributes:
        score: zxcvbn's 0..4, the lower of the two readings (as typed, Shift undone).
        personal: kinds of the account's own data the password is built from
            (``"name"``, ``"email address"``, ``"date of birth"``), in that order.
        feedback: zxcvbn's warning and suggestions for the weaker reading, as
            sentences. Fixed texts: they never contain the password.
    """

    score: int
    personal: tuple[str, ...]
    feedback: tuple[str, ...]


def personal_words(
    *, name: str | None, email: str | None, date_of_birth: date | None
) -> dict[str, str]:
    """The account's own data as the words an attacker would try, each with its kind.

    Name: each word and all of them run together ("john", "doe", "johndoe").
    Email: the local part, its pieces split at punctuation, and the domain's
    labels but the last ("example" of "example.com"). Date of birth: the year
    and the usual day/month/year orders with 4- and 2-digit years
    ("14041980", "04141980", "19800414", "140480", "1404", "0414", ...).
    """
    words: dict[str, str] = {}

    def add(kind: str, candidates: Iterable[str]) -> None:
        for word in candidates:
            word = word.lower()  # as zxcvbn lowers its user inputs
            if len(word) >= _MIN_PERSONAL_WORD:
                words.setdefault(word, kind)

    if name:
        parts = [p for p in _WORD_SPLIT.split(name) if p]
        add(NAME, [*parts, "".join(parts)])
    if email:
        local, _, domain = email.rpartition("@")
        if not local:
            local, domain = domain, ""
        add(EMAIL, [local, local.split("+", 1)[0], *_WORD_SPLIT.split(local)])
        add(EMAIL, domain.split(".")[:-1])
    if date_of_birth is not None:
        d, m = f"{date_of_birth.day:02d}", f"{date_of_birth.month:02d}"
        yyyy = f"{date_of_birth.year:04d}"
        yy = yyyy[2:]
        orders = [d + m + yyyy, m + d + yyyy, yyyy + m + d, d + m + yy, m + d + yy, yy + m + d]
        add(BIRTH, [yyyy, d + m, m + d, *orders])
    return words


def estimate(
    password: str, personal: Mapping[str, str], *, date_of_birth: date | None = None
) -> Estimate:
    """Score ``password`` (its first ``ESTIMATED_LENGTH`` code points) with zxcvbn.

    Args:
        password: the candidate, already NFKC-normalised.
        personal: ``personal_words(...)``: word -> kind.
        date_of_birth: a date zxcvbn reads in the password ("1980-04-14",
            "14.4.80") that is this one counts as the date of birth too.

    Returns:
        The lower score of the password as typed and with Shift undone on the
        digit row, which personal data it is built from, and the feedback.
    """
    typed = password[:ESTIMATED_LENGTH]
    readings = [_zxcvbn(typed, personal)]
    unshifted = typed.translate(_UNSHIFT)
    if unshifted != typed:
        readings.append(_zxcvbn(unshifted, personal))
    weakest = min(readings, key=lambda r: r["score"])
    found = {_personal_kind(m, personal, date_of_birth) for r in readings for m in r["sequence"]}
    feedback = weakest["feedback"]
    warning = feedback["warning"]
    if weakest is not readings[0] and readings[0]["score"] >= MIN_SCORE:
        # zxcvbn's warning describes the Shift-undone text ("This is a very
        # common password"), which is not what the person typed.
        warning = _SHIFT_WARNING
    sentences = [warning, *feedback["suggestions"]]
    return Estimate(
        score=int(weakest["score"]),
        personal=tuple(kind for kind in (NAME, EMAIL, BIRTH) if kind in found),
        feedback=tuple(s for s in sentences if s),
    )


def _personal_kind(
    match: Mapping[str, Any], personal: Mapping[str, str], date_of_birth: date | None
) -> str | None:
    """Which kind of personal data one part of zxcvbn's cheapest reading is, if any."""
    if match["pattern"] == "dictionary" and match.get("dictionary_name") == "user_inputs":
        return personal.get(match["matched_word"])
    if match["pattern"] == "date" and date_of_birth is not None:
        read = (match.get("year"), match.get("month"), match.get("day"))
        if read == (date_of_birth.year, date_of_birth.month, date_of_birth.day):
            return BIRTH
    return None


def _zxcvbn(password: str, personal: Mapping[str, str]) -> dict[str, Any]:
    with _zxcvbn_lock:
        result: dict[str, Any] = zxcvbn(
            password, user_inputs=list(personal), max_length=ESTIMATED_LENGTH
        )
    return result
