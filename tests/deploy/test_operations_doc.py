"""docs/OPERATIONS.md lists every setting with its true default.

When a setting is added or a default changes, regenerate the table:
    uv run python docs/settings_table.py --write
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from auth_service.config import AuthSettings
from user_service.config import UserSettings

REPO = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_settings_table", REPO / "docs/settings_table.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


settings_table = _generator()
DOC = (REPO / "docs" / "OPERATIONS.md").read_text()


def test_every_setting_has_a_description() -> None:
    undescribed = [row[0] for row in settings_table.fields() if not row[3]]
    assert undescribed == [], (
        "describe these in docs/settings_table.py (DESCRIPTIONS) or with "
        f"Field(description=...): {undescribed}"
    )


def test_the_doc_holds_the_current_table() -> None:
    assert settings_table.rewrite(DOC) == DOC, (
        "docs/OPERATIONS.md is out of date: uv run python docs/settings_table.py --write"
    )


def test_every_field_is_in_the_doc() -> None:
    names = {n.upper() for cls in (AuthSettings, UserSettings) for n in cls.model_fields}
    missing = sorted(n for n in names if f"| `{n}` |" not in DOC)
    assert missing == []


def test_the_doc_covers_running_and_scaling() -> None:
    for heading in (
        "## Running in production",
        "### Docker Compose",
        "### Kubernetes",
        "### Schema migrations",
        "## How it scales",
        "### Where state lives",
        "### Keys across auth replicas",
        "### JWKS caching at resource servers",
        "### Capacity and sizing",
    ):
        assert f"\n{heading}\n" in DOC, heading
