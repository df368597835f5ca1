"""Field types both services validate the same way."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StringConstraints

__all__ = ["DateOfBirth", "JobTitle", "PersonName", "email_key"]

_EARLIEST_BIRTH = date(1900, 1, 1)
# ASCII digits only (\d would admit other scripts' digits): YYYY-MM-DD first.
_ISO_DATE_PREFIX = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _coerce_date(value: Any) -> Any:
    """Accept an ISO date or an ISO datetime (the seed client sends
    `1980-04-14T10:00:00Z`). A birth date is a calendar date, so the date part
    is kept as written, not shifted into UTC.

    Nothing else: pydantic's lax mode would read `0`, `"630720000"` or
    `1e9` as Unix timestamps, so a client bug (or a fuzzer) sending a number
    would silently store 1970-01-01 instead of getting a 422.
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE_PREFIX.match(value):
        raise ValueError("must be an ISO 8601 date (YYYY-MM-DD) or date-time")
    if "T" in value.upper():
        try:
            return datetime.fromisoformat(value.strip()).date()
        except ValueError as exc:
            raise ValueError("must be an ISO 8601 date or date-time") from exc
    return value


def _sane_birth_date(value: date) -> date:
    if value < _EARLIEST_BIRTH:
        raise ValueError(f"must not be before {_EARLIEST_BIRTH.isoformat()}")
    if value > datetime.now(UTC).date():
        raise ValueError("must not be in the future")
    return value


DateOfBirth = Annotated[date, BeforeValidator(_coerce_date), AfterValidator(_sane_birth_date)]

# Printable text only: control characters in names end up in logs, CSV exports
# and terminals where they can forge lines or escape sequences.
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
PersonName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_PRINTABLE)
]
JobTitle = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_PRINTABLE)
]


def email_key(normalized_email: str) -> str:
    """The identity key of an email: NFKC, case-folded.

    Mailbox local parts are case-sensitive in theory (RFC 5321 §2.4) but never
    in practice; treating them so would let "John@" and "john@" be two
    accounts, which users and support staff cannot tell apart.
    """
    return unicodedata.normalize("NFKC", normalized_email).casefold()
