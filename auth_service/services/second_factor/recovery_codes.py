"""Recovery codes: generation, normalisation and hashing (pure functions).

A code is 24 Crockford base32 symbols, 120 bits from `secrets`, shown as
six groups of four. Crockford's alphabet has no I, L, O or U, and the
normaliser maps the look-alikes back, so a code retyped from paper still works.

Why a fast hash and not argon2: these are not passwords. With 120 random bits
an offline attacker holding the table faces 2**120 guesses per account, which
no hashing speed makes practical. NIST SP 800-63B §5.1.2.1 says exactly this:
look-up secrets of at least 112 bits may be stored with a plain approved
one-way function; only shorter ones need a salted, slow KDF. A slow KDF would
add cost for nothing, and (salted per code) would force checking every stored
code on each attempt instead of one indexed lookup. The owner's id keys the
HMAC, so one precomputation cannot serve every account and a code is bound to
the account it was issued for.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

__all__ = ["generate_codes", "hash_code", "normalize_code"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_SYMBOLS = 24  # 24 x 5 bits = 120 bits (>= 112, see above)
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_DOMAIN = b"idp:recovery-code:v1:"


def _one_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_SYMBOLS))
    return "-".join(raw[i : i + 4] for i in range(0, _SYMBOLS, 4))


def generate_codes(count: int) -> list[str]:
    """`count` distinct fresh codes, formatted for display."""
    codes: set[str] = set()
    while len(codes) < count:
        codes.add(_one_code())
    return sorted(codes)


def normalize_code(code: str) -> str | None:
    """Canonical form of a typed code, or None when it cannot be one."""
    cleaned = code.upper().replace("-", "").replace(" ", "").translate(_LOOKALIKES)
    if len(cleaned) != _SYMBOLS or any(c not in _ALPHABET for c in cleaned):
        return None
    return cleaned


def hash_code(user_id: uuid.UUID, normalized: str) -> str:
    """HMAC-SHA256 of a normalised code, keyed by its owner's id (hex)."""
    return hmac.new(user_id.bytes, _DOMAIN + normalized.encode(), hashlib.sha256).hexdigest()
