"""Every request model forbids unknown fields and bounds every string and list.

Audited from the services' own OpenAPI documents, so a model added later (by
any feature) is held to the rule without anyone remembering this test. The
body size limit (64 KiB, shared/http/middleware.py) bounds everything as a last resort;
these bounds are the first: a field that can only be 254 characters long
cannot carry 60 KiB into a hash, a log line or a database column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import auth_settings, user_settings

# Objects that may carry unknown members, and why.
OPEN_BY_DESIGN = {
    # py_webauthn parses the browser's PublicKeyCredential (L3 toJSON); its
    # members are authenticator-defined and only the body limit bounds them.
    # tests/fuzz/test_fuzz_webauthn.py fuzzes what reads it.
    "credential",
    # POST /token: RFC 6749 §3.2 says the server MUST ignore unrecognised
    # parameters. The endpoint caps the form at 16 fields of 1 KiB each.
    "body(application/x-www-form-urlencoded)",
}
# Formats whose syntax bounds the length.
BOUNDED_FORMATS = {"uuid", "date", "date-time", "binary"}
# An anchored pattern ending in a bounded repetition bounds the length too.
_BOUNDED_PATTERN = re.compile(r"\{\d+(,\d+)?\}\$$")


def _string_bounded(schema: dict[str, Any]) -> bool:
    return (
        "maxLength" in schema
        or "enum" in schema
        or "const" in schema
        or schema.get("format") in BOUNDED_FORMATS
        or bool(_BOUNDED_PATTERN.search(schema.get("pattern", "")))
    )


def _documents() -> dict[str, dict[str, Any]]:
    from auth_service.main import create_app as create_auth
    from user_service.main import create_app as create_user

    return {
        "auth": create_auth(auth_settings(database_url="sqlite+aiosqlite:///:memory:")).openapi(),
        "user": create_user(user_settings(database_url="sqlite+aiosqlite:///:memory:")).openapi(),
    }


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = doc["components"]["schemas"][name]
    return schema


def _problems(doc: dict[str, Any], schema: dict[str, Any], where: str) -> Iterator[str]:
    schema = _resolve(doc, schema)
    for key in ("anyOf", "oneOf", "allOf"):
        for i, sub in enumerate(schema.get(key, [])):
            yield from _problems(doc, sub, f"{where}[{key}{i}]")
    kind = schema.get("type")
    name = where.rsplit(".", 1)[-1].split("[", 1)[0]
    if kind == "object" or "properties" in schema:
        if name in OPEN_BY_DESIGN:
            return
        if schema.get("additionalProperties", True) is not False:
            yield f"{where}: object allows unknown fields"
        for prop, sub in schema.get("properties", {}).items():
            yield from _problems(doc, sub, f"{where}.{prop}")
    elif kind == "string" and not _string_bounded(schema):
        yield f"{where}: string without maxLength"
    elif kind == "array":
        if "maxItems" not in schema:
            yield f"{where}: array without maxItems"
        if "items" in schema:
            yield from _problems(doc, schema["items"], f"{where}[]")
    elif kind == "integer" and where.startswith("query") and "maximum" not in schema:
        yield f"{where}: integer without maximum"


def _request_problems(doc: dict[str, Any]) -> Iterator[str]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            label = f"{method.upper()} {path}"
            for param in op.get("parameters", []):
                where = f"{param['in']}.{param['name']}"
                for p in _problems(doc, param.get("schema", {}), where):
                    yield f"{label} {p}"
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                for p in _problems(doc, content.get("schema", {}), f"body({media})"):
                    yield f"{label} {p}"


@pytest.mark.parametrize("service", ["auth", "user"])
def test_every_request_field_is_closed_and_bounded(service: str) -> None:
    doc = _documents()[service]
    problems = sorted(set(_request_problems(doc)))
    assert not problems, "\n".join(problems)
