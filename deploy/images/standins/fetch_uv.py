"""Fetch uv's static binary from its manylinux wheel on PyPI: fetch_uv.py VERSION DEST.

The wheel is found through the simple index's JSON form (PEP 691) and checked
against the sha256 the index gives for it.
"""

import hashlib
import io
import json
import os
import platform
import sys
import urllib.request
import zipfile

version, dest = sys.argv[1], sys.argv[2]
request = urllib.request.Request(
    "https://pypi.org/simple/uv/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
)
with urllib.request.urlopen(request, timeout=60) as r:  # noqa: S310 (a fixed https URL)
    files = json.load(r)["files"]
prefix = f"uv-{version}-py3-none-manylinux"
wheel = next(
    f
    for f in files
    if f["filename"].startswith(prefix) and f["filename"].endswith(f"{platform.machine()}.whl")
)
if not wheel["url"].startswith("https://"):
    sys.exit(f"{wheel['url']}: not an https URL")
with urllib.request.urlopen(wheel["url"], timeout=300) as r:  # noqa: S310 (https, checked)
    data = r.read()
if hashlib.sha256(data).hexdigest() != wheel["hashes"]["sha256"]:
    sys.exit(f"{wheel['filename']}: sha256 does not match the index")
with zipfile.ZipFile(io.BytesIO(data)) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/uv"))
    with open(dest, "wb") as out:
        out.write(z.read(name))
os.chmod(dest, 0o755)  # noqa: S103 (an executable, as in the original image)
