"""Cross-service behaviour with real processes: revocation propagation, the
auth service down, the user service down during registration."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import REDIS_URL, new_user
from tests.e2e.processes import Pair

pytestmark = pytest.mark.e2e


@pytest.fixture
def pair(tmp_path: Path, redis_prefix: str) -> Iterator[Pair]:
    p = Pair(tmp_path, REDIS_URL, redis_prefix)
    p.start()
    try:
        yield p
    finally:
        p.stop()


def _login(p: Pair) -> tuple[str, dict[str, str]]:
    body = new_user()
    r = httpx.post(f"{p.auth.url}/users", json=body, timeout=10)
    assert r.status_code == 201, r.text
    tok = httpx.post(
        f"{p.auth.url}/login",
        json={"email": body["email"], "password": body["password"]},
        timeout=10,
    )
    return r.json()["id"], tok.json()


def test_logout_reaches_the_user_service_within_a_second(pair: Pair) -> None:
    trials = []
    for _ in range(5):
        uid, tok = _login(pair)
        bearer = {"Authorization": f"Bearer {tok['access_token']}"}
        assert httpx.get(f"{pair.user.url}/users/{uid}", headers=bearer).status_code == 200
        t0 = time.monotonic()
        assert httpx.post(f"{pair.auth.url}/logout", headers=bearer).status_code == 204
        while httpx.get(f"{pair.user.url}/users/{uid}", headers=bearer).status_code != 401:
            assert time.monotonic() - t0 < 1.0, "revocation took longer than a second"
        trials.append(time.monotonic() - t0)
    assert max(trials) < 1.0


def test_user_service_keeps_serving_while_auth_is_down(pair: Pair) -> None:
    uid, tok = _login(pair)
    bearer = {"Authorization": f"Bearer {tok['access_token']}"}
    assert (
        httpx.get(f"{pair.user.url}/users/{uid}", headers=bearer).status_code == 200
    )  # JWKS now cached
    pair.auth.stop()
    try:
        assert httpx.get(f"{pair.user.url}/users/{uid}", headers=bearer).status_code == 200
        # A token from a key the user service never saw is refused, not waved through.
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        claims = jwt.decode(tok["access_token"], options={"verify_signature": False})
        forged = jwt.encode(
            claims, stranger, algorithm="RS256", headers={"typ": "at+jwt", "kid": "never-seen"}
        )
        r = httpx.get(f"{pair.user.url}/users/{uid}", headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401
    finally:
        pair.auth.start()


def test_registration_with_user_service_down_is_503_and_leaves_nothing(pair: Pair) -> None:
    body = new_user()
    pair.user.stop()
    r = httpx.post(f"{pair.auth.url}/users", json=body, timeout=20)
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    # No half-made account: the password does not log in.
    login = httpx.post(
        f"{pair.auth.url}/login", json={"email": body["email"], "password": body["password"]}
    )
    assert login.status_code == 401
    pair.user.start()
    retry = httpx.post(f"{pair.auth.url}/users", json=body, timeout=20)
    assert retry.status_code == 201, retry.text
    tok = httpx.post(
        f"{pair.auth.url}/login", json={"email": body["email"], "password": body["password"]}
    ).json()
    me = httpx.get(
        f"{pair.user.url}/users/me", headers={"Authorization": f"Bearer {tok['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["email"] == body["email"]


def test_key_rotation_is_learned_on_first_sight_of_the_new_kid(
    tmp_path: Path, redis_prefix: str
) -> None:
    # `rotate` publishes a key before it signs (--activate-after, default 60 s,
    # longer than the JWKS refetch interval). This test activates at once, so
    # it shortens the refetch interval and the key reload to stay quick.
    pair = Pair(
        tmp_path, REDIS_URL, redis_prefix, JWKS_MIN_REFETCH_SECONDS="1", KEY_RELOAD_SECONDS="0.5"
    )
    pair.start()
    try:
        _rotation_walk(pair, tmp_path)
    finally:
        pair.stop()


def _rotation_walk(pair: Pair, tmp_path: Path) -> None:
    import subprocess
    import sys

    uid, old = _login(pair)
    old_bearer = {"Authorization": f"Bearer {old['access_token']}"}
    assert httpx.get(f"{pair.user.url}/users/{uid}", headers=old_bearer).status_code == 200
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "auth_service.keys",
            "rotate",
            "--activate-after",
            "0",
            "--key-dir",
            str(tmp_path / "keys"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # The auth service reloads its key dir every few seconds; wait for a token
    # signed with the new kid.
    old_kid = jwt.get_unverified_header(old["access_token"])["kid"]
    deadline = time.monotonic() + 15
    while True:
        _, new = _login(pair)
        if jwt.get_unverified_header(new["access_token"])["kid"] != old_kid:
            break
        assert time.monotonic() < deadline, "auth service never switched to the rotated key"
        time.sleep(0.5)
    time.sleep(1.1)  # past the user service's refetch interval since its last fetch
    new_uid = jwt.decode(new["access_token"], options={"verify_signature": False})["sub"]
    r = httpx.get(
        f"{pair.user.url}/users/{new_uid}",
        headers={"Authorization": f"Bearer {new['access_token']}"},
    )
    assert r.status_code == 200
    # Old tokens stay valid until they expire.
    assert httpx.get(f"{pair.user.url}/users/{uid}", headers=old_bearer).status_code == 200
    assert uuid.UUID(new_uid)


def _account(p: Pair) -> tuple[dict[str, str], str, dict[str, str]]:
    body = new_user()
    r = httpx.post(f"{p.auth.url}/users", json=body, timeout=10)
    assert r.status_code == 201, r.text
    tok = httpx.post(
        f"{p.auth.url}/login",
        json={"email": body["email"], "password": body["password"]},
        timeout=10,
    )
    return body, r.json()["id"], {"Authorization": f"Bearer {tok.json()['access_token']}"}


def test_account_deletion_reaches_the_user_service_within_a_second(pair: Pair) -> None:
    trials = []
    for _ in range(3):
        body, uid, bearer = _account(pair)
        # A second device's token, still unexpired after the deletion.
        other = httpx.post(
            f"{pair.auth.url}/login",
            json={"email": body["email"], "password": body["password"]},
            timeout=10,
        ).json()
        other_bearer = {"Authorization": f"Bearer {other['access_token']}"}
        for b in (bearer, other_bearer):
            assert httpx.get(f"{pair.user.url}/users/{uid}", headers=b).status_code == 200
        t0 = time.monotonic()
        r = httpx.request(
            "DELETE",
            f"{pair.auth.url}/users/me",
            json={"password": body["password"]},
            headers=bearer,
            timeout=20,
        )
        assert r.status_code == 204, r.text
        for b in (bearer, other_bearer):
            while httpx.get(f"{pair.user.url}/users/{uid}", headers=b).status_code != 401:
                assert time.monotonic() - t0 < 1.0, "a deleted account's token outlived a second"
        trials.append(time.monotonic() - t0)
    assert max(trials) < 1.0


def test_deletion_with_user_service_down_is_503_and_changes_nothing(pair: Pair) -> None:
    body, uid, bearer = _account(pair)
    pair.user.stop()
    try:
        r = httpx.request(
            "DELETE",
            f"{pair.auth.url}/users/me",
            json={"password": body["password"]},
            headers=bearer,
            timeout=20,
        )
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        # Nothing changed here: the session lives, the password logs in.
        assert httpx.get(f"{pair.auth.url}/sessions", headers=bearer).status_code == 200
        login = httpx.post(
            f"{pair.auth.url}/login",
            json={"email": body["email"], "password": body["password"]},
            timeout=10,
        )
        assert login.status_code == 200
        export = httpx.get(f"{pair.auth.url}/users/me/export", headers=bearer, timeout=20)
        assert export.status_code == 503
    finally:
        pair.user.start()
    assert httpx.get(f"{pair.user.url}/users/{uid}", headers=bearer).status_code == 200
    # The retry finishes the job.
    r = httpx.request(
        "DELETE",
        f"{pair.auth.url}/users/me",
        json={"password": body["password"]},
        headers=bearer,
        timeout=20,
    )
    assert r.status_code == 204, r.text
