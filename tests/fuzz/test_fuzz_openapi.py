"""Schemathesis against both services' own OpenAPI documents, over HTTP.

Every operation of both services is fuzzed with schema-valid and
schema-violating inputs, each case sent twice: as generated (anonymous) and
with a live user's bearer token, so the fuzzer reaches past authentication.
The checks are the ones the issue names: no 5xx, and no response that breaks
the service's own documented schema (status code, content type, headers,
body), plus "schema-violating input is refused".

Both services listen on real sockets, served from threads of this process
(tests/faults/servers.py): schemathesis' ASGI transport would run each
request on a fresh event loop, and the services' Redis pools belong to one.
A 5xx shows its traceback in the test's captured log.

Bounded: MAX_EXAMPLES per operation, derandomized so that CI and a laptop
generate the same cases. Explore with more by editing it locally (150 per
operation found nothing further when this was written).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import REDIS_URL, auth_settings, new_user, user_settings
from tests.faults.servers import delete_prefix, register_and_login, threaded_services
from tests.support.mail import load_sink

pytestmark = [
    pytest.mark.fuzz,
    # Hypothesis warns when the global `random` state moves while a case is
    # drawn. In the whole suite something in this process (not the services,
    # which run as processes here) touches it now and then, and the suite
    # turns warnings into errors; it does not change which cases are drawn
    # (derandomize=True), so it is no failure of the services under test.
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
]

# Per operation; each example is two real HTTP requests (registrations and
# logins hash a password). ~25 operations: about 30 s on an idle laptop.
MAX_EXAMPLES = 20

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


class _Cluster:
    def __init__(self, auth_url: str, user_url: str, bearer: str, admin_bearer: str) -> None:
        self.auth_url = auth_url
        self.user_url = user_url
        self.bearer = bearer
        self.admin_bearer = admin_bearer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Cluster]:
    prefix = f"test:fuzz:{uuid.uuid4().hex[:12]}:"
    tmp = tmp_path_factory.mktemp("fuzz")
    # Mail goes to the development sink, as under `make run`: forgot-password
    # is fuzzed with its mail path, not refused for want of a mail server.
    sink = load_sink().start_sink(tmp / "mail")
    smtp = {"smtp_url": f"smtp://127.0.0.1:{sink.port}"}
    try:
        with threaded_services(tmp, redis_url=REDIS_URL, redis_prefix=prefix, auth=smtp) as (
            auth,
            user,
        ):
            _, tokens = register_and_login(auth.url, new_user())
            admin = new_user()
            register_and_login(auth.url, admin)
            # Promoted in its database (what `auth_service.admin promote`
            # does), then logged in again: roles travel in the token.
            with sqlite3.connect(tmp / "auth.db") as db:
                db.execute(
                    "UPDATE identities SET roles = 'admin' WHERE email_key = ?",
                    (admin["email"].lower(),),
                )
            _, admin_tokens = register_and_login(auth.url, admin, register=False)
            yield _Cluster(auth.url, user.url, tokens["access_token"], admin_tokens["access_token"])
    finally:
        sink.stop()
        delete_prefix(REDIS_URL, prefix)


def _openapi(service: str) -> dict[str, Any]:
    """The service's OpenAPI document, from the app object itself.

    Built at import (collection needs it) from `create_app`, which starts
    nothing until its lifespan runs. (schemathesis' `from_fixture` would load
    it from the running process instead, but its lazy loader breaks on
    pytest 9: it writes the private `Function._nodeid`.)
    """
    if service == "auth":
        from auth_service.main import create_app as create_auth

        doc: dict[str, Any] = create_auth(
            auth_settings(database_url="sqlite+aiosqlite:///:memory:")
        ).openapi()
    else:
        from user_service.main import create_app as create_user

        doc = create_user(user_settings(database_url="sqlite+aiosqlite:///:memory:")).openapi()
    return doc


auth_api = schemathesis.openapi.from_dict(_openapi("auth"))
user_api = schemathesis.openapi.from_dict(_openapi("user"))

_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # a CI failure reproduces locally
    suppress_health_check=list(HealthCheck),
)


def _call(case: Any, cluster: _Cluster, base_url: str) -> None:
    """Each generated case as generated, then with a user's bearer token and,
    where the user is refused (403: admin-only operations), an admin's --
    unless the case carries its own Authorization header."""
    # A 5xx fails here; its traceback is in the captured log of the test.
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=15)
    if case.headers and "authorization" in {h.lower() for h in case.headers}:
        return
    for token in (cluster.bearer, cluster.admin_bearer):
        r = case.call_and_validate(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            checks=CHECKS,
            timeout=15,
        )
        if r.status_code != 403:
            break


@auth_api.parametrize()
@_SETTINGS
def test_auth_service_conforms_to_its_schema(case: Any, cluster: _Cluster) -> None:
    _call(case, cluster, cluster.auth_url)


@user_api.parametrize()
@_SETTINGS
def test_user_service_conforms_to_its_schema(case: Any, cluster: _Cluster) -> None:
    _call(case, cluster, cluster.user_url)


def test_fuzz_budget_stays_bounded() -> None:
    # Guard against raising the budget until `make test` crawls.
    assert MAX_EXAMPLES <= 50
