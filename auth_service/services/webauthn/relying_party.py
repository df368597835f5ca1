"""Who we are to an authenticator: the WebAuthn Relying Party (RP) identity.

The RP ID and the allowed origins come from settings and never from a request:
`Host`, `Origin` and `X-Forwarded-Host` are all under a client's or a proxy's
control, and an RP that derived its expected origin from them would accept a
phishing site's ceremony (WebAuthn L3 §13.4.9, "Validating the origin of a
credential").
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["RelyingParty", "check_relying_party", "parse_origins"]


@dataclass(frozen=True)
class RelyingParty:
    """The RP's fixed identity and ceremony parameters.

    Attributes:
        rp_id: the RP ID (L3 §5.1.3, "rp.id"): a registrable domain suffix of,
            or equal to, every origin's host.
        rp_name: human-palatable name shown by the browser (L3 §5.4.1).
        origins: the exact origins (scheme://host[:port]) ceremonies may run on
            (L3 §7.1 step 9, §7.2 step 13).
        timeout_ms: the `timeout` member sent to the client (L3 §15.1).
    """

    rp_id: str
    rp_name: str
    origins: tuple[str, ...]
    timeout_ms: int


def parse_origins(value: str) -> tuple[str, ...]:
    """Split a comma-separated origin list, dropping blanks and trailing slashes."""
    return tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())


def check_relying_party(rp_id: str, origins: tuple[str, ...], *, production: bool) -> list[str]:
    """Return what is wrong with an RP ID / origin pair (empty when fine).

    Each origin must be a bare `scheme://host[:port]` whose host is the RP ID
    or one of its subdomains: a browser refuses any other combination
    (L3 §5.1.3 step 8, §5.1.4.1 step 7), so a mistake here would only show up
    as every ceremony failing. In production only https origins are allowed:
    WebAuthn needs a secure context, and `http://localhost` is its sole
    exception (L3 §5.1.3 step 3, Secure Contexts §3.1).
    """
    problems: list[str] = []
    if not rp_id or rp_id != rp_id.strip().lower() or "/" in rp_id or ":" in rp_id:
        problems.append(f"WEBAUTHN_RP_ID must be a lower-case host name, got {rp_id!r}")
    if not origins:
        problems.append("WEBAUTHN_ORIGINS must list at least one origin")
    for origin in origins:
        parts = urlsplit(origin)
        host = parts.hostname or ""
        if parts.scheme not in {"http", "https"} or not host or parts.path or parts.query:
            problems.append(f"WEBAUTHN_ORIGINS: {origin!r} is not scheme://host[:port]")
            continue
        if host != rp_id and not host.endswith("." + rp_id):
            problems.append(f"WEBAUTHN_ORIGINS: host of {origin!r} is not within RP ID {rp_id!r}")
        if production and parts.scheme != "https":
            problems.append(f"WEBAUTHN_ORIGINS: {origin!r} must be https in production")
    if production and rp_id == "localhost":
        problems.append("WEBAUTHN_RP_ID must be the public domain in production")
    return problems
