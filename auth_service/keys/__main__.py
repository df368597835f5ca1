"""Operator CLI for signing keys. Prints kids and times, never key material.

    python -m auth_service.keys init            # a first key, only into an empty store
    python -m auth_service.keys rotate [--activate-after SECONDS] [--bits 2048|3072|4096]
    python -m auth_service.keys list
    python -m auth_service.keys prune --older-than SECONDS
    python -m auth_service.keys revoke KID      # emergency: a compromised key
    python -m auth_service.keys reseal          # KEY_STORE=database: a new KEK

The store is the service's own, chosen by the same settings: KEY_STORE,
KEY_DIR (or `--key-dir PATH`, before or after the command) for a directory,
DATABASE_URL and KEY_ENCRYPTION_KEY for the database. `revoke` also writes to
the Redis at $REDIS_URL under $REDIS_PREFIX (docs/OPERATIONS.md, "Emergency
revocation of a signing key"). `reseal` reads the new key-encryption key
from $NEW_KEY_ENCRYPTION_KEY, never from the command line (which `ps` shows).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from auth_service.cli_audit import record_cli_event
from auth_service.config import AuthSettings
from auth_service.keys.database import DatabaseKeyStore
from auth_service.keys.directory import NoSigningKeys, SigningKey
from auth_service.keys.secret_box import decode_key
from auth_service.keys.store import KeyStore
from auth_service.migrate import MIGRATIONS
from auth_service.wiring import key_store
from shared.access.key_revocation import revoked_kids_key
from shared.db.engine import make_engine
from shared.db.migrations import prepare_schema
from shared.runtime.redis_topology import close_client
from shared.service.backends import make_redis


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
    commands.add_parser(
        "init",
        parents=[key_dir],
        help="add a first key, signing at once, when the store has none (else do nothing)",
    )
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
    commands.add_parser(
        "reseal",
        parents=[key_dir],
        help="KEY_STORE=database: seal every key again under $NEW_KEY_ENCRYPTION_KEY",
    )
    return parser


@asynccontextmanager
async def _opened(settings: AuthSettings) -> AsyncIterator[KeyStore]:
    """The service's key store; for the database, on a schema at its head."""
    if settings.key_store == "directory":
        yield key_store(settings, None)
        return
    engine = make_engine(settings.database_url)
    try:
        # Development: upgrade, as the service does; production: only check.
        await prepare_schema(engine, MIGRATIONS, production=settings.is_production)
        yield key_store(settings, engine)
    finally:
        await engine.dispose()


async def _publish_revocation(settings: AuthSettings, kid: str, now: float) -> None:
    # The services' own settings name the Redis (one server, Sentinel or
    # Cluster) and the prefix; the defaults are theirs too.
    redis = make_redis(settings)
    try:
        # Kept, not expired: a handful of kids over a platform's life, and a
        # verifier that still caches the key must go on refusing it.
        await redis.hset(revoked_kids_key(settings.redis_prefix), kid, str(int(now)))
    finally:
        await close_client(redis)


async def _revoke(settings: AuthSettings, kid: str, bits: int) -> SigningKey | None:
    now = time.time()
    # Store first, Redis second: a replica that reads the revocation
    # reloads at once and must find the replacement already there.
    async with _opened(settings) as store:
        try:
            replacement = await store.remove(kid, replacement_bits=bits)
        except NoSigningKeys:
            print(f"{kid} is not in {store.where}; revoking it everywhere anyway", file=sys.stderr)
            replacement = None
    await _publish_revocation(settings, kid, now)
    return replacement


async def _list(settings: AuthSettings, now: float) -> int:
    async with _opened(settings) as store:
        listed = await store.entries()
        where = store.where
    entries = sorted(listed, key=lambda e: (e.activates_at, e.created_at))
    if not entries:
        print(f"no signing keys in {where}", file=sys.stderr)
        return 1
    active = [e for e in entries if e.activates_at <= now]
    current = active[-1] if active else None
    print(f"{'KID':<44}  {'STATE':<8}  {'CREATED':<25}  ACTIVATES")
    for e in reversed(entries):
        state = "current" if e is current else "pending" if e.activates_at > now else "retired"
        print(f"{e.kid:<44}  {state:<8}  {_when(e.created_at):<25}  {_when(e.activates_at)}")
    return 0


async def _rotate(settings: AuthSettings, activate_after: int, bits: int) -> SigningKey:
    async with _opened(settings) as store:
        return await store.rotate(activate_after_seconds=activate_after, bits=bits)


async def _prune(settings: AuthSettings, older_than: int) -> list[str]:
    async with _opened(settings) as store:
        return await store.prune(older_than_seconds=older_than)


async def _init(settings: AuthSettings) -> SigningKey | None:
    async with _opened(settings) as store:
        return await store.add_first_key(clock=time.time, dev=False)


async def _reseal(settings: AuthSettings, new_kek: bytes) -> int:
    async with _opened(settings) as store:
        if not isinstance(store, DatabaseKeyStore):
            raise ValueError("reseal needs KEY_STORE=database (a key directory is not sealed)")
        return await store.reseal(new_kek)


def _settings(key_dir: Path | None) -> AuthSettings:
    settings = AuthSettings()
    return settings.model_copy(update={"key_dir": key_dir}) if key_dir else settings


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args.key_dir)
        if args.command == "rotate":
            key = asyncio.run(_rotate(settings, args.activate_after, args.bits))
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
        if args.command == "init":
            # Idempotent: every rollout may run it (the Kubernetes key Job does).
            first = asyncio.run(_init(settings))
            if first is None:
                print("the store has keys already; nothing added")
                return 0
            print(f"added {first.kid}: published and signing now (the store had no key)")
            record_cli_event("key.rotated", outcome="success", kid=first.kid, first=True)
            return 0
        if args.command == "prune":
            removed = asyncio.run(_prune(settings, args.older_than))
            for kid in removed:
                print(f"removed {kid}")
            if not removed:
                print("nothing to prune")
            record_cli_event(
                "key.pruned", outcome="success", removed=len(removed), kids=",".join(removed)
            )
            return 0
        if args.command == "revoke":
            replacement = asyncio.run(_revoke(settings, args.kid, args.bits))
            print(f"revoked {args.kid}: unpublished, and its tokens are refused within a second")
            if replacement is not None:
                print(
                    f"added {replacement.kid}: published and signing now (no other key was active)"
                )
            record_cli_event(
                "key.revoked",
                outcome="success",
                kid=args.kid,
                replacement=replacement.kid if replacement else None,
            )
            return 0
        if args.command == "reseal":
            try:
                new_kek = decode_key(os.environ.get("NEW_KEY_ENCRYPTION_KEY", ""))
            except ValueError as exc:
                raise ValueError(f"NEW_KEY_ENCRYPTION_KEY: {exc}") from None
            count = asyncio.run(_reseal(settings, new_kek))
            print(f"sealed {count} keys under the new key-encryption key")
            record_cli_event("key.resealed", outcome="success", keys=count)
            return 0
        return asyncio.run(_list(settings, time.time()))
    except (NoSigningKeys, ValueError, OSError, RedisError, SQLAlchemyError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if args.command in ("init", "rotate", "prune", "revoke", "reseal"):
            event = {
                "init": "key.rotated",
                "rotate": "key.rotated",
                "prune": "key.pruned",
                "reseal": "key.resealed",
            }
            record_cli_event(
                event.get(args.command, "key.revoked"),
                outcome="failure",
                reason=type(exc).__name__[:64],
            )
        return 1


if __name__ == "__main__":
    sys.exit(main())
