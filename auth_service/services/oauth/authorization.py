"""The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636, OpenID Connect Core §3.1).

`begin` validates `GET /authorize` and parks the request while the user signs
in on the page; `approve` turns it into a single-use code for that user;
`exchange` redeems the code at `POST /token` for access, refresh and ID
tokens. Only `response_type=code` with PKCE S256 (RFC 9700 §2.1.1: no
implicit or hybrid flow, no `plain` challenge).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from auth_service.models.client import OAuthClient
from auth_service.models.identity import Identity
from auth_service.services.oauth.errors import (
    CodeReused,
    InvalidRedirect,
    OAuthProtocolError,
    RedirectedError,
)
from auth_service.services.oauth.scopes import granted_scope
from auth_service.services.service import service
from auth_service.services.tokens import TokenIssuer
from auth_service.stores.authorization import AuthorizationStore
from auth_service.stores.sessions import SessionStore

# RFC 7636 §4.1/§4.2: 43..128 unreserved characters; S256 challenges are 43.
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")
_MAX_STATE = 512


class _Clients(Protocol):
    async def get(self, client_id: str) -> OAuthClient | None: ...


class _Identities(Protocol):
    async def active_roles_by_id(self, identity_id: uuid.UUID) -> tuple[str, ...] | None: ...

    async def active_by_id(self, identity_id: uuid.UUID) -> Identity | None: ...


class _Admission(Protocol):
    async def admit(self, identity: Identity, *, ip: str) -> None: ...


@dataclass(frozen=True)
class PendingRequest:
    client_name: str
    scope: str


@dataclass(frozen=True)
class CodeGrant:
    access_token: str
    expires_in: int
    refresh_token: str | None
    id_token: str | None
    scope: str
    user_id: str
    sid: str


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def with_query(uri: str, params: dict[str, str]) -> str:
    """`uri` with `params` appended to its query (RFC 6749 §4.1.2: keep what is there)."""
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


@service
class AuthorizationService:
    clients: _Clients
    store: AuthorizationStore
    sessions: SessionStore
    identities: _Identities
    # The page's login rule (Authenticator.admit: REQUIRE_VERIFIED_EMAIL),
    # checked again when the code is issued.
    admission: _Admission
    issuer: TokenIssuer
    # RFC 9207: the `iss` sent back with the code, against mix-up attacks.
    issuer_id: str

    async def begin(self, params: dict[str, str], *, repeated: frozenset[str] = frozenset()) -> str:
        """Validate an authorization request and park it; returns its id.

        The client and the redirect URI are checked first and never redirected
        to when wrong (RFC 6749 §4.1.2.1, §10.15: no open redirector); every
        later error goes back to that redirect URI with the request's `state`.

        Raises:
            InvalidRedirect: unknown client, or a redirect URI not registered
                for it (exact string match).
            RedirectedError: any other error in the request.
        """
        # RFC 6749 §3.1: no parameter may appear twice.
        if repeated & {"client_id", "redirect_uri"}:
            raise InvalidRedirect("client_id and redirect_uri must appear once.")
        client = await self.clients.get(params.get("client_id", ""))
        if client is None:
            raise InvalidRedirect("Unknown client_id.")
        redirect_uri = params.get("redirect_uri", "")
        # Exact comparison (RFC 9700 §4.1.3): no prefix, path, port or scheme slack.
        if redirect_uri not in client.redirect_uri_list:
            raise InvalidRedirect("The redirect_uri is not registered for this client.")
        state = params.get("state")

        def refuse(error: str, description: str) -> RedirectedError:
            return RedirectedError(error, description, redirect_uri=redirect_uri, state=state)

        if repeated:
            raise refuse("invalid_request", "A parameter appears more than once.")
        if state is not None and len(state) > _MAX_STATE:
            raise refuse("invalid_request", "state is too long.")
        if "request" in params or "request_uri" in params:
            raise refuse("request_not_supported", "Request objects are not supported.")
        if params.get("response_type") != "code":
            raise refuse("unsupported_response_type", "Only response_type=code is supported.")
        if "authorization_code" not in client.grant_type_set:
            raise refuse("unauthorized_client", "This client may not use the code flow.")
        method = params.get("code_challenge_method")
        challenge = params.get("code_challenge", "")
        if method != "S256" or not _CHALLENGE.fullmatch(challenge):
            raise refuse("invalid_request", "PKCE is required: code_challenge_method=S256.")
        try:
            scope = granted_scope(params.get("scope"), client.scopes.split())
        except OAuthProtocolError as exc:
            raise refuse(exc.error, exc.description) from None
        nonce = params.get("nonce")
        if nonce is not None and len(nonce) > _MAX_STATE:
            raise refuse("invalid_request", "nonce is too long.")
        if params.get("prompt") == "none":
            # The page holds no session to reuse: someone must sign in.
            raise refuse("login_required", "The user must sign in.")
        return await self.store.save_request(
            {
                "client_id": client.client_id,
                "client_name": client.name,
                "redirect_uri": redirect_uri,
                "state": state,
                "nonce": nonce,
                "scope": scope,
                "code_challenge": challenge,
            }
        )

    async def pending(self, request_id: str) -> PendingRequest | None:
        """What the page shows while the user signs in: which application asks."""
        request = await self.store.peek_request(request_id) if request_id else None
        if request is None:
            return None
        return PendingRequest(request["client_name"], request["scope"])

    async def approve(
        self, request_id: str, *, user_id: str, auth_time: int, amr: tuple[str, ...], ip: str
    ) -> str:
        """The signed-in user's answer: the redirect URI with a fresh code and `state`.

        Raises:
            EmailNotVerified: REQUIRE_VERIFIED_EMAIL is on and the account's
                address is unverified. The page's login refuses such an
                account already; this catches a page session older than the
                setting (a refresh does not re-check it). The request stays
                pending, so the user can verify and continue.
            OAuthProtocolError: `invalid_request`, no such pending request
                (expired, or answered already).
        """
        identity = await self.identities.active_by_id(uuid.UUID(user_id))
        if identity is not None:
            await self.admission.admit(identity, ip=ip)
        request = await self.store.take_request(request_id) if request_id else None
        if request is None:
            raise OAuthProtocolError(
                "invalid_request", "The sign-in request expired; start again from the application."
            )
        code = await self.store.issue_code(
            {
                "client_id": request["client_id"],
                "redirect_uri": request["redirect_uri"],
                "code_challenge": request["code_challenge"],
                "nonce": request["nonce"],
                "scope": request["scope"],
                "user_id": user_id,
                "auth_time": auth_time,
                "amr": list(amr),
            }
        )
        return self._back(request, {"code": code})

    async def deny(self, request_id: str) -> str:
        """The user declined: `access_denied` back to the client (RFC 6749 §4.1.2.1)."""
        request = await self.store.take_request(request_id) if request_id else None
        if request is None:
            raise OAuthProtocolError("invalid_request", "The sign-in request expired.")
        return self._back(
            request, {"error": "access_denied", "error_description": "The user declined."}
        )

    def _back(self, request: dict[str, Any], params: dict[str, str]) -> str:
        out = dict(params)
        if request.get("state") is not None:
            out["state"] = request["state"]
        out["iss"] = self.issuer_id
        return with_query(request["redirect_uri"], out)

    async def exchange(
        self,
        client: OAuthClient,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        ip: str,
        user_agent: str,
    ) -> CodeGrant:
        """Redeem a code (RFC 6749 §4.1.3, RFC 7636 §4.6) for tokens.

        Any presentation spends the code, right or wrong: a stolen code tried
        with a guessed verifier is gone for its thief too. A code presented
        again revokes the session it issued.

        Raises:
            OAuthProtocolError: `invalid_grant` (unknown, expired or spent
                code, another client's, other redirect URI, wrong verifier,
                account gone), `unauthorized_client`.
            CodeReused: the code was already redeemed; its session is revoked.
        """
        if "authorization_code" not in client.grant_type_set:
            raise OAuthProtocolError(
                "unauthorized_client", "This client may not use the code flow."
            )
        invalid = OAuthProtocolError("invalid_grant", "The authorization code is not valid.")
        if not code or len(code) > 128:
            raise invalid
        redemption = await self.store.redeem(code)
        if redemption.outcome == "reused":
            if redemption.sid is not None:
                await self.sessions.revoke(redemption.sid)
            raise CodeReused(sid=redemption.sid, user_id=redemption.user_id)
        record = redemption.record
        if record is None:
            raise invalid
        if record["client_id"] != client.client_id:
            raise OAuthProtocolError("invalid_grant", "The code was issued to another client.")
        if redirect_uri != record["redirect_uri"]:
            raise OAuthProtocolError("invalid_grant", "redirect_uri differs from the request's.")
        if not _VERIFIER.fullmatch(code_verifier) or not hmac.compare_digest(
            s256(code_verifier), record["code_challenge"]
        ):
            raise OAuthProtocolError("invalid_grant", "The code_verifier does not match.")
        user_id = str(record["user_id"])
        if await self.identities.active_roles_by_id(uuid.UUID(user_id)) is None:
            raise invalid  # the account went away while the code was in flight
        amr = tuple(record["amr"])
        auth_time = int(record["auth_time"])
        scope = str(record["scope"])
        sid, refresh = await self.sessions.create(
            user_id=user_id,
            amr=amr,
            auth_time=auth_time,
            ip=ip,
            user_agent=user_agent,
            client_id=client.client_id,
            scope=scope,
        )
        if not await self.store.bind_session(code, sid):
            # Replayed while we were issuing: this session must not survive.
            await self.sessions.revoke(sid)
            raise CodeReused(sid=sid, user_id=user_id)
        access = self.issuer.access_token(
            user_id=user_id,
            sid=sid,
            roles=(),  # another application never carries the account's roles
            amr=amr,
            auth_time=auth_time,
            client_id=client.client_id,
            scope=scope,
        )
        id_token = None
        if "openid" in scope.split():
            id_token = self.issuer.id_token(
                user_id=user_id,
                client_id=client.client_id,
                sid=sid,
                auth_time=auth_time,
                amr=amr,
                nonce=record.get("nonce"),
                access_token=access.token,
            )
        return CodeGrant(
            access_token=access.token,
            expires_in=access.expires_in,
            refresh_token=refresh if "refresh_token" in client.grant_type_set else None,
            id_token=id_token,
            scope=scope,
            user_id=user_id,
            sid=sid,
        )
