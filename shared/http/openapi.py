"""OpenAPI helpers so documented errors match what the services answer."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

__all__ = ["PROBLEM_SCHEMA", "problem_responses"]

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries documenting RFC 9457 bodies for these statuses."""
    return {
        s: {
            "description": HTTPStatus(s).phrase,
            "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
        }
        for s in statuses
    }
