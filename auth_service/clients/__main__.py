"""Operator CLI: register, list and remove the applications that sign in through the platform.

    python -m auth_service.clients create --name NAME --grant authorization_code
        --redirect-uri https://app.example/callback [--grant refresh_token]
        [--scope openid --scope profile --scope email] [--public]
    python -m auth_service.clients create --name NAME --grant client_credentials
        --audience AUDIENCE [--scope SCOPE ...]
    python -m auth_service.clients list
    python -m auth_service.clients delete CLIENT_ID

Reads the same environment as the service (DATABASE_URL, ...); with none
set, the SQLite file `make run` uses (./.data/auth.db). `create` prints JSON
with `client_id` and, for a confidential client, `client_secret`: shown this
once, stored only as a hash. Every change is on the audit trail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from auth_service.cli_audit import CliAudit
from auth_service.config import AuthSettings
from auth_service.migrate import MIGRATIONS
from auth_service.models.client import OAuthClient
from auth_service.repositories.clients import ClientRepository
from auth_service.services.oauth.registry import GRANT_TYPES, ClientRegistry, InvalidRegistration
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrations import prepare_schema
from shared.db.reads import EngineReads


def _describe(client: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "type": "public" if client.is_public else "confidential",
        "redirect_uris": list(client.redirect_uri_list),
        "grant_types": client.grant_types.split(),
        "scope": client.scopes,
        "audience": client.audience,
        "created_at": client.created_at.isoformat(),
    }


def _scopes(values: list[str]) -> list[str]:
    # `--scope "openid profile"` and `--scope openid --scope profile` alike.
    return [s for value in values for s in value.split()]


async def _run(args: argparse.Namespace, settings: AuthSettings) -> int:
    engine = make_engine(settings.database_url)
    audit: CliAudit | None = None
    try:
        # Same rule as the service: upgrade in development, only check in production.
        await prepare_schema(engine, MIGRATIONS, production=settings.is_production)
        audit = CliAudit(engine)
        await audit.start()
        # A one-off command: the write engine serves its few reads.
        registry = ClientRegistry(
            clients=ClientRepository(make_sessionmaker(engine), EngineReads(engine))
        )
        if args.command == "create":
            try:
                made = await registry.register(
                    name=args.name,
                    redirect_uris=args.redirect_uri,
                    grant_types=args.grant,
                    scopes=_scopes(args.scope),
                    audience=args.audience,
                    public=args.public,
                )
            except InvalidRegistration as exc:
                audit.event("client.create", outcome="failure", reason="invalid")
                print(f"not registered: {exc}", file=sys.stderr)
                return 2
            audit.event(
                "client.create",
                outcome="success",
                client_id=made.client.client_id,
                grants=made.client.grant_types,
            )
            out = _describe(made.client)
            if made.client_secret is not None:
                out["client_secret"] = made.client_secret
            print(json.dumps(out, indent=2))
            if made.client_secret is not None:
                print("The client_secret is shown this once; store it now.", file=sys.stderr)
        elif args.command == "list":
            print(json.dumps([_describe(c) for c in await registry.list()], indent=2))
        else:
            removed = await registry.remove(args.client_id)
            audit.event(
                "client.delete",
                outcome="success" if removed else "failure",
                reason=None if removed else "no_client",
                client_id=args.client_id[:64],
            )
            if not removed:
                print(f"no client {args.client_id!r}", file=sys.stderr)
                return 1
            print(f"client {args.client_id} removed; its tokens expire on their own")
        return 0
    finally:
        if audit is not None:
            await audit.aclose()
        await engine.dispose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m auth_service.clients",
        description="Manage the OAuth clients (other applications) of the auth service.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="register a client; prints its id (and secret)")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--grant", action="append", required=True, choices=GRANT_TYPES, help="repeatable"
    )
    create.add_argument("--redirect-uri", action="append", default=[], help="repeatable; exact")
    create.add_argument("--scope", action="append", default=[], help="repeatable")
    create.add_argument("--audience", default=None, help="aud of client_credentials tokens")
    create.add_argument(
        "--public", action="store_true", help="no secret (browser or native app; PKCE only)"
    )
    commands.add_parser("list", help="list clients (never secrets)")
    delete = commands.add_parser("delete", help="remove a client")
    delete.add_argument("client_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return asyncio.run(_run(args, AuthSettings()))


if __name__ == "__main__":
    raise SystemExit(main())
