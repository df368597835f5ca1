"""What the auth service leaves out of memory until a route needs it.

py_webauthn (with pyasn1, pyOpenSSL and cbor2 under it) and segno are ~6 MB
of every process's RSS (bench/README.md, P7); only passkey ceremonies and
TOTP enrolment use them, and they load on first use. A fresh interpreter
tells: this test process has imported them already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = ("webauthn", "segno", "pyasn1", "OpenSSL", "cbor2")


def _loaded_after(code: str) -> list[str]:
    probe = f"""
import json, sys
{code}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded: list[str] = json.loads(out.splitlines()[-1])
    return loaded


def test_building_the_app_loads_neither_webauthn_nor_qr_rendering() -> None:
    loaded = _loaded_after(
        "from auth_service.main import create_app\n"
        "from auth_service.stores.challenges import ChallengeStore"
    )
    assert "auth_service" in loaded  # the probe did import the service
    assert [m for m in LEFT_OUT if m in loaded] == []


def test_a_passkey_ceremony_loads_webauthn_when_it_runs() -> None:
    loaded = _loaded_after(
        "from auth_service.services.webauthn.ceremonies import client_challenge\n"
        "from auth_service.errors import CeremonyFailed\n"
        "try:\n"
        "    client_challenge({'response': {'clientDataJSON': 'e30'}})\n"
        "except CeremonyFailed:\n"
        "    pass"
    )
    assert "webauthn" in loaded
