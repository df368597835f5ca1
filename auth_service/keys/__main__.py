"""Operator CLI for signing keys. Prints kids and times, never key material.

    python -m auth_service.keys rotate [--activate-after SECONDS] [--bits 2048|3072|4096]
    python -m auth_service.keys list
    python -m auth_service.keys prune --older-than SECONDS
    python -m auth_service.keys revoke KID      # emergency: a compromised key

Every command takes `--key-dir PATH` (default: $KEY_DIR, else ./.data/keys).
`revoke` also writes to the Redis at $REDIS_URL under $REDIS_PREFIX, the
services' own settings (docs/OPERATIONS.md, "Emergency revocation of a
signing key").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from redis.exceptions import RedisError

from auth_service.cli_audit import record_cli_event
from auth_service.keys.directory import NoSigningKeys, manifest_entries, prune, remove, rotate
from shared.access.key_revocation import revoked_kids_key
from shared.runtime.redis_topology import close_client
from shared.runtime.settings import CommonSettings
from shared.service.backends import make_redis

_DEFAULT_KEY_DIR = Path(".data/keys")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _parser() -> argparse.ArgumentParser:
    # --key-dir is accepted before or after the command; SUPPRESS keeps the
    # subcommand's absent option from overwriting one given before it.
    key_dir = argparse.ArgumentParser(add_help=False)
    key_dir.add_argument("--key-dir", type=Path, default=argparse.SUPPRESS, metavar="PATH")
    parser = argparse.ArgumentParser(
        prog="python -m auth_service.keys", description="Manage the auth service's signing keys."
    )
    parser.add_argument("--key-dir", type=Path, default=None, metavar="PATH")
    commands = parser.add_subparsers(dest="command", required=True)
    rot = commands.add_parser(
        "rotate", parents=[key_dir], help="add a key: published now, signs later"
    )
    rot.add_argument(
        "--activate-after",
        type=int,
        default=60,
        metavar="SECONDS",
        help="delay before the new key signs (default 60; longer than replicas' reload interval)",
    )
    rot.add_argument("--bits", type=int, choices=(2048, 3072, 4096), default=2048)
    commands.add_parser("list", parents=[key_dir], help="list keys and their state")
    pr = commands.add_parser("prune", parents=[key_dir], help="remove keys whose tokens expired")
    pr.add_argument(
        "--older-than",
        type=int,
        required=True,
        metavar="SECONDS",
        help="remove a retired key once its successor has signed for this long "
        "(at least the longest token lifetime plus leeway)",
    )
    rev = commands.add_parser(
        "revoke",
        parents=[key_dir],
        help="emergency: unpublish a key now and refuse every token it signed",
    )
    rev.add_argument("kid", help="the key id (`list` shows them)")
    rev.add_argument("--bits", type=int, choices=(2048, 3072, 4096), default=2048)
    return parser


async def _publish_revocation(kid: str, now: float) -> None:
    # The services' own settings name the Redis (one server, Sentinel or
    # Cluster) and the prefix; the defaults are theirs too.
    settings = CommonSettings()
    prefix = settings.redis_prefix
    redis = make_redis(settings)
    try:
        # Kept, not expired: a handful of kids over a platform's life, and a
        # verifier that still caches the key must go on refusing it.
        await redis.hset(revoked_kids_key(prefix), kid, str(int(now)))
    finally:
        await close_client(redis)


def _revoke(key_dir: Path, kid: str, bits: int) -> int:
    now = time.time()
    # Directory first, Redis second: a replica that reads the revocation
    # reloads at once and must find the replacement already there.
    try:
        replacement = remove(key_dir, kid, replacement_bits=bits)
    except NoSigningKeys:
        print(f"{kid} is not in {key_dir}; revoking it everywhere anyway", file=sys.stderr)
        replacement = None
    asyncio.run(_publish_revocation(kid, now))
    print(f"revoked {kid}: unpublished, and its tokens are refused within a second")
    if replacement is not None:
        print(f"added {replacement.kid}: published and signing now (no other key was active)")
    record_cli_event(
        "key.revoked",
        outcome="success",
        kid=kid,
        replacement=replacement.kid if replacement else None,
    )
    return 0


def _list(key_dir: Path, now: float) -> int:
    entries = sorted(manifest_entries(key_dir), key=lambda e: (e.activates_at, e.created_at))
    if not entries:
        print(f"no signing keys in {key_dir}", file=sys.stderr)
        return 1
    active = [e for e in entries if e.activates_at <= now]
    current = active[-1] if active else None
    print(f"{'KID':<44}  {'STATE':<8}  {'CREATED':<25}  ACTIVATES")
    for e in reversed(entries):
        state = "current" if e is current else "pending" if e.activates_at > now else "retired"
        print(f"{e.kid:<44}  {state:<8}  {_when(e.created_at):<25}  {_when(e.activates_at)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    key_dir: Path = args.key_dir or Path(os.environ.get("KEY_DIR") or _DEFAULT_KEY_DIR)
    try:
        if args.command == "rotate":
            key = rotate(key_dir, activate_after_seconds=args.activate_after, bits=args.bits)
            print(f"added {key.kid}: published now, signs from {_when(key.activates_at)}")
            # Audit trail: stderr, and the audit table when DATABASE_URL is set.
            record_cli_event(
                "key.rotated",
                outcome="success",
                kid=key.kid,
                activates_at=_when(key.activates_at),
                bits=args.bits,
            )
            return 0
        if args.command == "prune":
            removed = prune(key_dir, older_than_seconds=args.older_than)
            for kid in removed:
                print(f"removed {kid}")
            if not removed:
                print("nothing to prune")
            record_cli_event(
                "key.pruned", outcome="success", removed=len(removed), kids=",".join(removed)
            )
            return 0
        if args.command == "revoke":
            return _revoke(key_dir, args.kid, args.bits)
        return _list(key_dir, time.time())
    except (NoSigningKeys, ValueError, OSError, RedisError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if args.command in ("rotate", "prune", "revoke"):
            event = {"rotate": "key.rotated", "prune": "key.pruned"}.get(
                args.command, "key.revoked"
            )
            record_cli_event(event, outcome="failure", reason=type(exc).__name__[:64])
        return 1


if __name__ == "__main__":
    sys.exit(main())
