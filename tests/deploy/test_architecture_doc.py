"""docs/ARCHITECTURE.md is the project's design: it exists, it is what the repo cites, and its
code map names files that exist and every module of shared/."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
OUTSIDE = "DESIGN" + ".md"  # a file outside the repo; built so this test does not cite it


def test_no_file_cites_a_design_document_outside_the_repo() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    citing = [
        name
        for name in files
        if (ROOT / name).is_file()
        and name != "uv.lock"
        and OUTSIDE in (ROOT / name).read_text(errors="replace")
    ]
    assert citing == []


def test_the_paths_the_architecture_names_exist() -> None:
    text = DOC.read_text()
    paths = set(
        re.findall(
            r"`((?:shared|auth_service|user_service|deploy|bench|tests|docs)/[^`*<> ]*)`", text
        )
    )
    assert len(paths) > 20
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert missing == []


def test_the_code_map_places_every_shared_module() -> None:
    text = DOC.read_text()
    modules = sorted(p.name for p in (ROOT / "shared").rglob("*.py") if p.name != "__init__.py")
    unplaced = [m for m in modules if f"`{m}`" not in text]
    assert unplaced == []
