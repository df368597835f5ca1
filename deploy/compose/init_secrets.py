"""Create the secrets docker-compose.yml reads: passwords, env files, signing keys.

The stack's `secrets-init` service runs this inside the auth image on every
`up`, into the `idp-secrets` volume:

    python init_secrets.py --dir /run/secrets --owner 10001:10001

Writes, into the directory:

    postgres_password  auth_db_password  user_db_password  redis_password
    grafana_admin_password
    auth.env  user.env     DATABASE_URL and REDIS_URL of each service
    signing_keys/          the auth service's key directory (manifest + PEM),
                           made by `python -m auth_service.keys rotate`

Existing files are kept, never overwritten: PostgreSQL reads its passwords
only when its volume is first initialised, so a second run must not change
them. Delete a file (and the volume it belongs to) to make a new one.
Nothing secret is printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = Path(__file__).resolve().parent / "secrets"

# Host names and ports as docker-compose.yml names them.
POSTGRES = "postgres:5432"
REDIS = "redis:6379"


def _password() -> str:
    # URL-safe alphabet: the password goes into URLs and a Redis config
    # unescaped. 32 bytes of entropy.
    return secrets.token_urlsafe(32)


def _write(path: Path, make: Callable[[], str], created: list[str], *, mode: int = 0o600) -> str:
    """The file's content, creating it only when it does not exist."""
    if path.exists():
        return path.read_text().strip()
    content = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content + "\n")
    os.chmod(path, mode)  # whatever the umask
    created.append(path.name)
    return content


# PostgreSQL's init script, Redis and Grafana read the passwords as their own
# users, whose uids differ per image: world-readable *files*. What keeps them
# private is where the directory lives: a volume mounted only into the stack's
# containers (or a 0700 directory on a host). The env files and signing keys
# belong to the services' uid (owner) and no one else reads them: 0600.
_SECRET_FILE = 0o644


def init_secrets(directory: Path, owner: tuple[int, int] | None = None) -> list[str]:
    """Create whatever is missing in `directory`; returns the names created.

    Args:
        directory: where the secrets live.
        owner: uid and gid of the services (the volume case): they get the env
            files and the signing keys, and the directory becomes traversable
            (0711: files are read by name, never listed). None: a private 0700
            directory of whoever runs this.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700 if owner is None else 0o711)
    created: list[str] = []
    _write(directory / "postgres_password", _password, created, mode=_SECRET_FILE)
    redis_pw = _write(directory / "redis_password", _password, created, mode=_SECRET_FILE)
    for service, db in (("auth", "idp_auth"), ("user", "idp_user")):
        db_pw = _write(directory / f"{service}_db_password", _password, created, mode=_SECRET_FILE)
        _write(
            directory / f"{service}.env",
            lambda db=db, db_pw=db_pw: (
                f"DATABASE_URL=postgresql+asyncpg://{db}:{db_pw}@{POSTGRES}/{db}\n"
                f"REDIS_URL=redis://:{redis_pw}@{REDIS}/0"
            ),
            created,
        )
    _write(directory / "grafana_admin_password", _password, created, mode=_SECRET_FILE)

    keys = directory / "signing_keys"
    if not (keys / "manifest.json").exists():
        sys.path.insert(0, str(REPO))
        from auth_service.keys import rotate

        # Active at once: no replica is running yet that could miss it.
        # Later rotations publish first and sign later (docs/OPERATIONS.md).
        key = rotate(keys, activate_after_seconds=0)
        created.append(f"signing_keys/ (kid {key.kid})")
    if owner is not None:
        for path in (directory / "auth.env", directory / "user.env", keys, *keys.iterdir()):
            os.chown(path, *owner)
    return created


def _owner(value: str) -> tuple[int, int]:
    uid, _, gid = value.partition(":")
    return int(uid), int(gid or uid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    parser.add_argument(
        "--owner", type=_owner, default=None, help="UID:GID that gets the env files and keys"
    )
    args = parser.parse_args(argv)
    created = init_secrets(args.dir, args.owner)
    for name in created:
        print(f"created {args.dir / name}")
    if not created:
        print(f"{args.dir}: everything exists already; nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
