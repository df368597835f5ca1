"""Operator CLI: grant or take the admin role, revoke a user's sessions.

    python -m auth_service.admin promote EMAIL
    python -m auth_service.admin demote EMAIL
    python -m auth_service.admin revoke-sessions EMAIL

Reads the same environment as the service (DATABASE_URL, REDIS_URL, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from auth_service.cli_audit import CliAudit
from auth_service.config import AuthSettings
from auth_service.migrate import MIGRATIONS
from auth_service.repositories.identities import IdentityRepository
from auth_service.services.authentication import login_key
from auth_service.stores.sessions import SessionStore
from shared.access.revocation import MARKER_OUTLIVES_TOKEN_SECONDS
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrations import prepare_schema
from shared.db.reads import EngineReads
from shared.runtime.redis_topology import close_client
from shared.service.backends import make_durable_writes, make_redis

_AUDIT_EVENTS = {
    "promote": "admin.role_granted",
    "demote": "admin.role_revoked",
    "revoke-sessions": "admin.sessions_revoked",
}


async def _run(command: str, email: str, settings: AuthSettings) -> int:
    engine = make_engine(settings.database_url)
    redis = make_redis(settings)  # the same topology as the service
    durable = make_durable_writes(settings, redis)
    audit: CliAudit | None = None
    try:
        # Same rule as the service: upgrade in development, only check in production.
        await prepare_schema(engine, MIGRATIONS, production=settings.is_production)
        # Every admin action is on the audit trail (stderr + audit table).
        audit = CliAudit(engine)
        await audit.start()
        # A one-off command: the write engine serves its few reads.
        identities = IdentityRepository(make_sessionmaker(engine), EngineReads(engine))
        sessions = SessionStore(
            redis,
            prefix=settings.redis_prefix,
            session_ttl=settings.refresh_token_ttl_seconds,
            marker_ttl=settings.access_token_ttl_seconds + MARKER_OUTLIVES_TOKEN_SECONDS,
            durable=durable,
        )
        key = login_key(email)
        identity = await identities.active_by_email(key)
        if identity is None:
            audit.event(_AUDIT_EVENTS[command], outcome="failure", reason="no_account")
            print(f"no active account for {email}", file=sys.stderr)
            return 1
        uid = str(identity.id)
        if command == "promote":
            await identities.set_roles(key, (*identity.role_list, "admin"))
            audit.event("admin.role_granted", outcome="success", user_id=uid, role="admin")
            print(f"{email} is now an admin; the role is in tokens issued from now on")
        elif command == "demote":
            await identities.set_roles(key, tuple(r for r in identity.role_list if r != "admin"))
            # Existing access tokens still say "admin": end those sessions so
            # the role is gone now, not when the tokens expire.
            n = await sessions.revoke_all(str(identity.id))
            audit.event(
                "admin.role_revoked", outcome="success", user_id=uid, role="admin", sessions=n
            )
            print(f"{email} is no longer an admin; {n} session(s) revoked")
        else:
            n = await sessions.revoke_all(str(identity.id))
            audit.event("admin.sessions_revoked", outcome="success", user_id=uid, sessions=n)
            print(f"{n} session(s) of {email} revoked")
        return 0
    finally:
        if audit is not None:
            await audit.aclose()  # writes the row(s) before the engine goes
        await durable.aclose()
        await close_client(redis)
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auth_service.admin", description=__doc__)
    parser.add_argument("command", choices=["promote", "demote", "revoke-sessions"])
    parser.add_argument("email")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args.command, args.email, AuthSettings()))


if __name__ == "__main__":
    raise SystemExit(main())
