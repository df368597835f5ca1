"""Create the secrets docker-compose.yml reads: passwords, env files, signing keys.

The stack's `secrets-init` service runs this inside the auth image on every
`up`, into the `idp-secrets` volume:

    python init_secrets.py --dir /run/secrets --in-stack

Writes, into the directory:

    postgres_password  auth_db_password  user_db_password  redis_password
    grafana_admin_password
    auth.env  user.env     DATABASE_URL and REDIS_URL of each service; auth.env
                           also TOTP_ENCRYPTION_KEY (the key sealing TOTP secrets)
    signing_keys/          the auth service's key directory (manifest + PEM),
                           made by `python -m auth_service.keys rotate`

Existing files are kept, never overwritten: PostgreSQL reads its passwords
only when its volume is first initialised, so a second run must not change
them. Delete a file (and the volume it belongs to) to make a new one. The one
exception is a line added, never changed: an auth.env from before TOTP gets
its TOTP_ENCRYPTION_KEY appended (nothing could have used one yet).
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


# On a host: one private 0700 directory, files 0644 inside it (compose used
# to mount them with their host owner and mode, and PostgreSQL read them as
# its own user).
_SECRET_FILE = 0o644

# In the stack (--in-stack): each file belongs to the one image user that
# reads it, mode 0600, so a container that mounts the volume reads only its
# own secrets. uids as the images define them: postgres 70 (the official
# image; the stand-in of `make images` uses the same), Grafana 472, the auth
# service 10001 and the user service 10002 (docker-compose.yml `user:`);
# Redis's start.sh and health check read as root.
IN_STACK_OWNERS: dict[str, int] = {
    "postgres_password": 70,
    "auth_db_password": 70,
    "user_db_password": 70,
    "redis_password": 0,
    "grafana_admin_password": 472,
    "auth.env": 10001,
    "user.env": 10002,
    "signing_keys": 10001,
}


def _add_totp_key(env_file: Path, created: list[str]) -> None:
    """Append TOTP_ENCRYPTION_KEY to the auth service's env file when it has none.

    32 random bytes, base64url: the AES-256 key sealing TOTP secrets at rest,
    which production refuses to start without (docs/ASVS.md).
    """
    text = env_file.read_text()
    if any(line.startswith("TOTP_ENCRYPTION_KEY=") for line in text.splitlines()):
        return
    with env_file.open("a") as f:
        f.write(("" if text.endswith("\n") else "\n") + f"TOTP_ENCRYPTION_KEY={_password()}\n")
    created.append(f"{env_file.name} (TOTP_ENCRYPTION_KEY)")


def init_secrets(directory: Path, owners: dict[str, int] | None = None) -> list[str]:
    """Create whatever is missing in `directory`; returns the names created.

    Args:
        directory: where the secrets live.
        owners: file name -> uid that owns it (0600; `signing_keys` covers the
            key directory and its files); the directory becomes traversable
            (0711: files are read by name, never listed). None: a private
            0700 directory of whoever runs this.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700 if owners is None else 0o711)
    created: list[str] = []
    _write(directory / "postgres_password", _password, created, mode=_SECRET_FILE)
    redis_pw = _write(directory / "redis_password", _password, created, mode=_SECRET_FILE)
    for service, db in (("auth", "idp_auth"), ("user", "idp_user")):
        db_pw = _write(directory / f"{service}_db_password", _password, created, mode=_SECRET_FILE)
        _write(
            directory / f"{service}.env",
            lambda db=db, db_pw=db_pw, service=service: (
                f"DATABASE_URL=postgresql+asyncpg://{db}:{db_pw}@{POSTGRES}/{db}\n"
                f"REDIS_URL=redis://:{redis_pw}@{REDIS}/0"
                + (f"\nTOTP_ENCRYPTION_KEY={_password()}" if service == "auth" else "")
            ),
            created,
        )
    _add_totp_key(directory / "auth.env", created)
    _write(directory / "grafana_admin_password", _password, created, mode=_SECRET_FILE)

    keys = directory / "signing_keys"
    if not (keys / "manifest.json").exists():
        sys.path.insert(0, str(REPO))
        from auth_service.keys import rotate

        # Active at once: no replica is running yet that could miss it.
        # Later rotations publish first and sign later (docs/OPERATIONS.md).
        key = rotate(keys, activate_after_seconds=0)
        created.append(f"signing_keys/ (kid {key.kid})")
    for name, uid in (owners or {}).items():
        path = directory / name
        for item in (path, *path.iterdir()) if path.is_dir() else (path,):
            os.chown(item, uid, uid)
            os.chmod(item, 0o700 if item.is_dir() else 0o600)
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    parser.add_argument(
        "--in-stack",
        action="store_true",
        help="give each file to the uid of the container that reads it (docker-compose.yml)",
    )
    args = parser.parse_args(argv)
    created = init_secrets(args.dir, IN_STACK_OWNERS if args.in_stack else None)
    for name in created:
        print(f"created {args.dir / name}")
    if not created:
        print(f"{args.dir}: everything exists already; nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
