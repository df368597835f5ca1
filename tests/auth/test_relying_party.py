"""WebAuthn RP settings: defaults that work locally, refusals that catch mistakes at start."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from auth_service.config import AuthSettings
from auth_service.services.webauthn.relying_party import check_relying_party, parse_origins


def test_defaults_serve_the_gateway_and_the_service_port() -> None:
    rp = AuthSettings(env="test").relying_party
    assert rp.rp_id == "localhost"
    assert rp.origins == ("http://localhost:8000", "http://localhost:8001")
    assert rp.timeout_ms == 300_000


def test_origins_are_parsed_and_trimmed() -> None:
    assert parse_origins(" https://a.example/ , ,https://b.a.example") == (
        "https://a.example",
        "https://b.a.example",
    )


@pytest.mark.parametrize(
    ("rp_id", "origins", "production", "problem"),
    [
        ("localhost", ("http://evil.example",), False, "not within RP ID"),
        ("example.com", ("https://notexample.com",), False, "not within RP ID"),
        ("localhost", ("http://localhost:8000/path",), False, "scheme://host"),
        ("localhost", ("ftp://localhost",), False, "scheme://host"),
        ("Example.com", ("https://example.com",), False, "lower-case"),
        ("localhost", (), False, "at least one"),
        ("example.com", ("http://id.example.com",), True, "https in production"),
        ("localhost", ("https://localhost",), True, "public domain"),
    ],
)
def test_bad_relying_party_settings_are_named(
    rp_id: str, origins: tuple[str, ...], production: bool, problem: str
) -> None:
    problems = check_relying_party(rp_id, origins, production=production)
    assert any(problem in p for p in problems), problems


def test_subdomain_origins_are_allowed() -> None:
    assert (
        check_relying_party(
            "example.com", ("https://example.com", "https://id.example.com:8443"), production=True
        )
        == []
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"webauthn_origins": "http://evil.example"},
        {"webauthn_rp_id": "example.com"},
        {"webauthn_timeout_seconds": 5},
        {"mfa_token_ttl_seconds": 1},
    ],
)
def test_settings_refuse_to_start(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AuthSettings(env="test", **overrides)
