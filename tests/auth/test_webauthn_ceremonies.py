"""The ceremony verifier (auth_service/services/webauthn/ceremonies.py) without any server.

Two sources of responses: a recorded Chromium registration + assertion
(tests/vectors/webauthn_chromium.json, see record_webauthn_chromium.py) for
the exact shapes a browser sends, and the software authenticator for the
forgeries. One test per refusal reason.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from auth_service.errors import CeremonyFailed
from auth_service.services.webauthn.ceremonies import (
    NewCredential,
    assertion_credential_id,
    client_challenge,
    verify_assertion,
    verify_registration,
)
from auth_service.services.webauthn.options import (
    KnownCredential,
    authentication_options,
    registration_options,
)
from auth_service.services.webauthn.relying_party import RelyingParty
from tests.support.soft_authenticator import SoftAuthenticator, b64url, unb64url

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "webauthn_chromium.json").read_text()
)
RP = RelyingParty(
    rp_id="localhost",
    rp_name="Identity Platform",
    origins=("http://localhost:8000", "http://localhost:8001"),
    timeout_ms=300_000,
)


def _reason(exc: pytest.ExceptionInfo[CeremonyFailed]) -> str:
    return exc.value.reason


# --- the recorded browser responses ---------------------------------------------


def _chromium_registration() -> NewCredential:
    return verify_registration(
        credential=VECTOR["registration"],
        expected_challenge=unb64url(VECTOR["registration_challenge"]),
        expected_rp=RP,
    )


def _verify_chromium_assertion(**overrides: Any) -> Any:
    new = _chromium_registration()
    kwargs: dict[str, Any] = {
        "credential": VECTOR["authentication"],
        "expected_challenge": unb64url(VECTOR["authentication_challenge"]),
        "expected_rp": RP,
        "expected_user_handle": unb64url(VECTOR["user_handle"]),
        "require_user_handle": True,
        "credential_public_key": new.public_key,
        "credential_sign_count": new.sign_count,
        "credential_backup_eligible": new.backup_eligible,
    }
    kwargs.update(overrides)
    return verify_assertion(**kwargs)


def test_chromium_registration_verifies() -> None:
    new = _chromium_registration()
    assert new.credential_id == VECTOR["registration"]["id"]
    assert new.aaguid == "01020304-0506-0708-0102-030405060708"  # Chromium's virtual AAGUID
    assert new.transports == ("internal",)
    assert new.backup_eligible is False
    assert new.sign_count == 1


def test_chromium_assertion_verifies() -> None:
    result = _verify_chromium_assertion()
    assert result.credential_id == VECTOR["authentication"]["id"]
    assert result.new_sign_count == 2


def test_chromium_assertion_lookup_helpers() -> None:
    assert assertion_credential_id(VECTOR["authentication"]) == VECTOR["registration"]["id"]
    assert client_challenge(VECTOR["authentication"]) == unb64url(
        VECTOR["authentication_challenge"]
    )


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"expected_rp": RelyingParty("localhost", "x", ("https://idp.example",), 1)},
            "origin_mismatch",
        ),
        (
            {"expected_rp": RelyingParty("example.com", "x", ("http://localhost:8000",), 1)},
            "rp_id_mismatch",
        ),
        ({"expected_challenge": b"another challenge, 32 bytes long"}, "challenge_mismatch"),
        ({"credential_sign_count": 2}, "sign_count_regression"),
        ({"credential_sign_count": 9}, "sign_count_regression"),
        ({"expected_user_handle": b"\x00" * 16}, "user_handle_mismatch"),
        ({"credential_backup_eligible": True}, "backup_eligibility_changed"),
    ],
)
def test_chromium_assertion_refused_when_expectations_differ(
    overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(CeremonyFailed) as exc:
        _verify_chromium_assertion(**overrides)
    assert _reason(exc) == reason


def test_chromium_assertion_with_another_key_is_a_bad_signature() -> None:
    other = SoftAuthenticator()
    other.create({"rp": {"id": "localhost"}, "user": {"id": "AAAA"}, "challenge": "AAAA"})
    key = next(iter(other.credentials.values())).cose_public_key()
    with pytest.raises(CeremonyFailed) as exc:
        _verify_chromium_assertion(credential_public_key=key)
    assert _reason(exc) == "signature_invalid"


def test_chromium_registration_refused_for_another_origin() -> None:
    with pytest.raises(CeremonyFailed) as exc:
        verify_registration(
            credential=VECTOR["registration"],
            expected_challenge=unb64url(VECTOR["registration_challenge"]),
            expected_rp=RelyingParty("localhost", "x", ("http://localhost:9999",), 1),
        )
    assert _reason(exc) == "origin_mismatch"


def test_tampered_client_data_breaks_the_registration() -> None:
    cred = copy.deepcopy(VECTOR["registration"])
    data = json.loads(unb64url(cred["response"]["clientDataJSON"]))
    data["challenge"] = b64url(b"x" * 32)
    cred["response"]["clientDataJSON"] = b64url(json.dumps(data).encode())
    with pytest.raises(CeremonyFailed) as exc:
        verify_registration(
            credential=cred,
            expected_challenge=unb64url(VECTOR["registration_challenge"]),
            expected_rp=RP,
        )
    assert _reason(exc) == "challenge_mismatch"


# --- options --------------------------------------------------------------------


def test_registration_options_policy() -> None:
    options = json.loads(
        registration_options(
            rp=RP,
            user_handle=b"\x01" * 16,
            user_name="a@example.com",
            challenge=b"c" * 32,
            exclude=[KnownCredential(b64url(b"id1"), ("usb", "bogus"))],
        )
    )
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    # Unknown transports are dropped, known ones kept (L3 §5.8.4: hints only).
    assert options["excludeCredentials"] == [
        {"id": b64url(b"id1"), "type": "public-key", "transports": ["usb"]}
    ]
    assert options["user"] == {
        "id": b64url(b"\x01" * 16),
        "name": "a@example.com",
        "displayName": "a@example.com",
    }


def test_authentication_options_policy() -> None:
    options = json.loads(authentication_options(rp=RP, challenge=b"c" * 32, allow=[]))
    assert options == {
        "rpId": "localhost",
        "challenge": b64url(b"c" * 32),
        "timeout": 300_000,
        "allowCredentials": [],
        "userVerification": "required",
    }


# --- forgeries from the software authenticator ------------------------------------


def _registered() -> tuple[SoftAuthenticator, NewCredential, dict[str, Any]]:
    authn = SoftAuthenticator()
    options = {
        "rp": {"id": "localhost"},
        "user": {"id": b64url(b"\x07" * 16)},
        "challenge": b64url(b"r" * 32),
    }
    new = verify_registration(
        credential=authn.create(options), expected_challenge=b"r" * 32, expected_rp=RP
    )
    request = {"rpId": "localhost", "challenge": b64url(b"a" * 32), "allowCredentials": []}
    return authn, new, request


def _assert(new: NewCredential, credential: dict[str, Any], **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "credential": credential,
        "expected_challenge": b"a" * 32,
        "expected_rp": RP,
        "expected_user_handle": b"\x07" * 16,
        "require_user_handle": True,
        "credential_public_key": new.public_key,
        "credential_sign_count": new.sign_count,
        "credential_backup_eligible": new.backup_eligible,
    }
    kwargs.update(overrides)
    return verify_assertion(**kwargs)


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ({"origin": "http://localhost:8002"}, "origin_mismatch"),
        ({"rp_id": "127.0.0.1"}, "rp_id_mismatch"),
        ({"uv": False}, "user_not_verified"),
        ({"up": False}, "user_not_present"),
        ({"cross_origin": True}, "cross_origin"),
        ({"type_": "webauthn.create"}, "wrong_ceremony_type"),
        ({"user_handle": None}, "user_handle_missing"),
    ],
)
def test_forged_assertion_reasons(forge: dict[str, Any], reason: str) -> None:
    authn, new, request = _registered()
    with pytest.raises(CeremonyFailed) as exc:
        _assert(new, authn.get(request, **forge))
    assert _reason(exc) == reason


def test_counter_must_grow_unless_both_are_zero() -> None:
    authn, new, request = _registered()
    with pytest.raises(CeremonyFailed) as exc:
        _assert(new, authn.get(request, sign_count=3), credential_sign_count=5)
    assert _reason(exc) == "sign_count_regression"
    with pytest.raises(CeremonyFailed):
        _assert(new, authn.get(request, sign_count=5), credential_sign_count=5)
    # Authenticators without a counter report 0 forever (L3 §6.1.1).
    assert _assert(new, authn.get(request, sign_count=0)).new_sign_count == 0
    assert (
        _assert(new, authn.get(request, sign_count=6), credential_sign_count=5).new_sign_count == 6
    )


def test_second_origin_from_settings_is_accepted() -> None:
    authn, new, request = _registered()
    result = _assert(new, authn.get(request, origin="http://localhost:8001"))
    assert result.new_sign_count == 1


def test_user_handle_is_optional_when_the_user_is_known() -> None:
    authn, new, request = _registered()
    _assert(new, authn.get(request, user_handle=None), require_user_handle=False)


@pytest.mark.parametrize(
    "junk",
    [
        {},
        {"id": "a", "rawId": "b", "type": "public-key", "response": {}},
        {"id": "a", "rawId": "a", "type": "nope", "response": {}},
        {"response": {"clientDataJSON": "%%%"}},
        {"response": {"clientDataJSON": b64url(b"[1, 2]")}},
    ],
)
def test_malformed_input_is_a_ceremony_failure(junk: dict[str, Any]) -> None:
    _, new, _ = _registered()
    for call in (
        lambda: _assert(new, junk),
        lambda: verify_registration(credential=junk, expected_challenge=b"x", expected_rp=RP),
        lambda: client_challenge(junk),
    ):
        with pytest.raises(CeremonyFailed) as exc:
            call()
        assert _reason(exc) == "malformed"
