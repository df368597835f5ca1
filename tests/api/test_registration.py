"""POST /users: validation, normalisation, uniqueness and the all-or-nothing rule."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Services, new_user

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", ""),
        ("name", ""),
        ("name", "x" * 201),
        ("name", "bad\nname"),
        ("job_title", ""),
        ("date_of_birth", "1800-01-01"),
        ("date_of_birth", "2999-01-01"),
        ("date_of_birth", "14/04/1980"),
        ("date_of_birth", "1980-02-30"),
        ("password", "short"),
        ("password", "password1234"),
        ("password", "x" * 129),
    ],
)
async def test_invalid_fields_are_422_problems(services: Services, field: str, value: str) -> None:
    body = new_user(**{field: value})
    r = await services.auth.post("/users", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 422
    assert any(e["field"] == field for e in problem["errors"]), problem
    # Nothing was created: the same email registers fine with a valid body.
    assert (
        await services.auth.post(
            "/users", json=new_user(email=body["email"]) if field != "email" else new_user()
        )
    ).status_code == 201


async def test_password_never_echoed_in_errors(services: Services) -> None:
    secret = "hunter2hunter2-" + "é" * 200
    r = await services.auth.post("/users", json=new_user(password=secret))
    assert r.status_code == 422
    assert "hunter2" not in r.text


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("P@ssword1234", "Password is too easy to guess."),  # leet-speak of a common word
        ("1qaz@WSX3edc", "Password is too easy to guess."),  # keyboard walk
        ("Jd14041980!!", "Password must not contain your date of birth."),  # the seed's 1980-04-14
    ],
)
async def test_guessable_password_is_a_422_naming_the_reason(
    services: Services, password: str, reason: str
) -> None:
    body = new_user(password=password)
    r = await services.auth.post("/users", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert [e["field"] for e in errors] == ["password"]
    assert errors[0]["message"].startswith(reason)
    assert password.casefold() not in r.text.casefold()
    # Nothing was created: the same email registers with the seed's password.
    retry = await services.auth.post("/users", json=new_user(email=body["email"]))
    assert retry.status_code == 201


async def test_unknown_fields_are_refused(services: Services) -> None:
    r = await services.auth.post("/users", json={**new_user(), "roles": ["admin"]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "roles"


async def test_password_containing_email_local_part_is_refused(services: Services) -> None:
    body = new_user(email="margaret.hamilton@example.com", password="margaret.hamilton-apollo11")
    r = await services.auth.post("/users", json=body)
    assert r.status_code == 422


async def test_email_is_unique_in_any_letter_case(services: Services) -> None:
    body = new_user(email="Case.Test@Example.com")
    assert (await services.auth.post("/users", json=body)).status_code == 201
    for variant in ("case.test@example.com", "CASE.TEST@EXAMPLE.COM", "Case.Test@example.COM"):
        r = await services.auth.post("/users", json={**body, "email": variant})
        assert r.status_code == 409, variant
    login = await services.auth.post(
        "/login", json={"email": "CASE.test@example.com", "password": body["password"]}
    )
    assert login.status_code == 200


async def test_parallel_registrations_of_one_email_make_one_account(services: Services) -> None:
    body = new_user()
    results = await asyncio.gather(*(services.auth.post("/users", json=body) for _ in range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 1, codes
    assert codes.count(409) == 19, codes


async def test_malformed_json_is_a_problem_not_a_500(services: Services) -> None:
    r = await services.auth.post(
        "/users", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


async def test_oversized_body_is_refused_before_parsing(services: Services) -> None:
    r = await services.auth.post(
        "/users", content=b"x" * 200_000, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"


async def test_framework_404_and_405_are_problems(services: Services) -> None:
    r404 = await services.auth.get("/nope")
    r405 = await services.auth.get("/login")
    assert (r404.status_code, r405.status_code) == (404, 405)
    assert (
        r404.headers["content-type"] == r405.headers["content-type"] == "application/problem+json"
    )
