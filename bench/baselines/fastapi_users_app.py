"""Baseline: the same authenticated profile read, built the way most FastAPI teams
would build it, on fastapi-users (installed only in the bench environment).

Documented set-up (fastapi-users "full example", SQLAlchemy flavour): a JWT
strategy behind a bearer transport, the SQLAlchemy user database on PostgreSQL
(asyncpg, the production configuration ours is measured on), and `GET /users/me`
from `get_users_router`. The user table
carries the same profile fields ours returns (name, date of birth, job title).

The strategy signs and verifies RS256 by default here, like our platform (a
split issuer and resource server cannot share an HMAC secret); set
`BENCH_FU_ALG=HS256` for fastapi-users' own default, reported as information.

Environment:
    BENCH_FU_DB_URL: a `postgresql+asyncpg://` URL of a database of its own
        (the bench creates and drops it; the start-up recreates the table).
    BENCH_FU_TOKEN_FILE: where the start-up writes a valid access token.
    BENCH_FU_ALG: RS256 (default) or HS256.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.db import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from sqlalchemy import Date, String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    name: Mapped[str] = mapped_column(String(200), default="")
    date_of_birth: Mapped[dt.date] = mapped_column(Date, default=dt.date(1980, 4, 14))
    job_title: Mapped[str] = mapped_column(String(200), default="")


class UserRead(schemas.BaseUser[uuid.UUID]):
    name: str
    date_of_birth: dt.date
    job_title: str


class UserUpdate(schemas.BaseUserUpdate):
    pass


def _keys(alg: str) -> tuple[str, str | None]:
    """(signing secret, verification key) in the form fastapi-users takes: PEM strings."""
    if alg == "HS256":
        return os.urandom(32).hex(), None
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def create_app() -> FastAPI:
    db_url = os.environ["BENCH_FU_DB_URL"]
    token_file = Path(os.environ.get("BENCH_FU_TOKEN_FILE", "./fastapi_users.token"))
    alg = os.environ.get("BENCH_FU_ALG", "RS256")
    secret, public_key = _keys(alg)

    # The same pool size as the services' engine (shared/db/engine.py).
    engine = create_async_engine(db_url, pool_size=10, max_overflow=10)
    session_maker = async_sessionmaker(engine, expire_on_commit=False)

    async def get_async_session() -> AsyncIterator[AsyncSession]:
        async with session_maker() as session:
            yield session

    async def get_user_db(
        session: AsyncSession = Depends(get_async_session),  # noqa: B008 - FastAPI idiom
    ) -> AsyncIterator[SQLAlchemyUserDatabase[User, uuid.UUID]]:
        yield SQLAlchemyUserDatabase(session, User)

    class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
        reset_password_token_secret = secret
        verification_token_secret = secret

    async def get_user_manager(
        user_db: SQLAlchemyUserDatabase[User, uuid.UUID] = Depends(get_user_db),  # noqa: B008
    ) -> AsyncIterator[UserManager]:
        yield UserManager(user_db)

    def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
        return JWTStrategy(
            secret=secret, lifetime_seconds=3600, algorithm=alg, public_key=public_key
        )

    backend = AuthenticationBackend(
        name="jwt",
        transport=BearerTransport(tokenUrl="auth/jwt/login"),
        get_strategy=get_jwt_strategy,
    )
    fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        async with session_maker() as session:
            user = User(
                email="john@example.com",
                hashed_password="not-used-by-this-benchmark",  # noqa: S106
                is_active=True,
                name="John Doe",
                date_of_birth=dt.date(1980, 4, 14),
                job_title="Engineer",
            )
            session.add(user)
            await session.commit()
            token = await get_jwt_strategy().write_token(user)
        token_file.write_text(token)  # noqa: ASYNC240 - once, at start-up
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(fastapi_users.get_users_router(UserRead, UserUpdate), prefix="/users")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    return app
