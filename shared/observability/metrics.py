"""Prometheus metrics of one service: RED metrics, security counters, exposition.

Each app owns a `ServiceMetrics` (its own registry, built in `create_app`), so
two apps in one test process never share counters. With
`PROMETHEUS_MULTIPROC_DIR` set (several uvicorn/gunicorn workers),
prometheus_client writes every value to per-process files in that directory
and `/metrics` aggregates all of them, whichever worker answers the scrape.

Label values are bounded by code, never taken from the request: the route
label is the route *template*, unknown methods are `OTHER`, reasons and
results come from a fixed vocabulary (`_label`), and there is no user id,
session id or IP label anywhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

_LABEL = re.compile(r"^[a-z0-9_.:-]{1,48}$")


def _label(value: object, default: str = "other") -> str:
    """A label value from a code-chosen string; anything else becomes `default`."""
    return value if isinstance(value, str) and _LABEL.match(value) else default


# Label values that exist from the first scrape, so dashboards and alert
# rules see 0 instead of "no data" before the first occurrence.
_KNOWN: Mapping[str, tuple[str, ...]] = {
    "login_results": (
        "success",
        "invalid_credentials",
        "rate_limited",
        "mfa_required",
        # REQUIRE_VERIFIED_EMAIL refused a right password (auth_service errors).
        "email_not_verified",
    ),
    "mfa_results": ("success", "failure"),
    "token_kinds": ("access", "refresh", "service"),
    # shared.tokens.verify.TokenRejected reasons, plus the bearer's own.
    "rejections": (
        "missing",
        "malformed",
        "expired",
        "bad_signature",
        "unknown_kid",
        "revoked",
        "bad_audience",
        "bad_issuer",
        "unsupported_alg",
        # Another application's user token at the auth service's account endpoints.
        "other_client",
    ),
    "denials": ("not_owner", "not_admin", "service_token", "not_a_service", "missing_scope"),
    "jwks": ("ok", "error"),
    # POST /revoke (RFC 7009): a session ended, nothing to revoke, refused.
    "revocations": ("revoked", "unknown_token", "wrong_client"),
    # user.register failure reasons (auth_service/api/auditing.py), plus
    # sign-ups refused by a rate limit.
    "registrations": (
        "success",
        "duplicate",
        "password_policy",
        "validation",
        "unavailable",
        "error",
        "rate_limited",
    ),
    # Every outcome an audit event can have (shared.audit.events.audit_event).
    "outcomes": ("success", "failure", "denied"),
    # The `Limit` scopes the auth service builds (auth_service/main.py,
    # auth_service/wiring.py); a test keeps this list whole.
    "limits": (
        "login-ip",
        "login-account",
        "login-account-net",
        "register-ip",
        "register-email",
        "refresh-ip",
        "revoke-ip",
        "passkey-options-ip",
        "forgot-ip",
        "forgot-email",
        "verify-resend-ip",
        "verify-resend-account",
        "email-change-ip",
        "email-change-account",
        "totp-account",
        "totp-account-day",
    ),
    # Mails handed to SMTP (auth_service/mail/outbox.py, `mail.sent` events).
    "mail_results": ("success", "failure"),
}

RATE_LIMITS = _KNOWN["limits"]

# The audit events each kind of service emits over HTTP (docs/SECURITY_TEAM.md,
# catalogue; the operator CLIs' events come from other processes). Created at
# 0 for every outcome: Prometheus's first sample of a series created by its
# first event already holds that event, and `increase()` never shows it.
AUDIT_EVENTS_ANY: tuple[str, ...] = ("token.rejected", "access.denied", "audit.read")
AUDIT_EVENTS_ISSUER: tuple[str, ...] = (
    "user.register",
    "login",
    "mfa.challenge",
    "mfa.verify",
    "recovery_code.used",
    "passkey.login",
    "passkey.added",
    "passkey.removed",
    "mfa.enabled",
    "mfa.disabled",
    "totp.enrol",
    "totp.added",
    "totp.removed",
    "reauthentication",
    "recovery_codes.generated",
    "step_up",
    "token.refresh",
    "token.revoke",
    "client.token",
    "token.introspect",
    "oauth.authorize",
    "oauth.approve",
    "oauth.code",
    "userinfo",
    "refresh.reuse_detected",
    "logout",
    "session.revoked",
    "rate_limited",
    "password.change",
    "password.forgot",
    "password.reset",
    "email.verify",
    "email.verify_resend",
    "email.change",
    "mail.sent",
    "account.delete",
    "account.export",
    # Scheduled key rotation inside the service (auth_service/keys/rotation.py).
    "key.rotated",
    "key.pruned",
)
# Events only the resource server (the user service) emits.
AUDIT_EVENTS_RESOURCE: tuple[str, ...] = ("profile.update",)


class _CallbackGauge(Collector):
    """A gauge computed at scrape time (e.g. the signing key's age).

    Works in multi-process mode too: the worker answering the scrape computes
    it, and every worker reads the same source (the key directory).
    """

    def __init__(self, name: str, documentation: str, service: str, fn: Callable[[], float]):
        self._name, self._doc, self._service, self._fn = name, documentation, service, fn

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._doc, labels=["service"])
        try:
            family.add_metric([self._service], float(self._fn()))
        except Exception:  # a broken source yields no sample, never a failed scrape
            return []
        return [family]


class ServiceMetrics:
    """The metrics of one service instance.

    Args:
        service: the `service` label on every sample (e.g. `auth-service`).

    Multi-process mode is `$PROMETHEUS_MULTIPROC_DIR`, read from the
    environment only: prometheus_client picks its value store when it is
    first imported, so the variable must be set before the process starts.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self._multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if self._multiproc_dir:
            # Workers write their values there from the first metric on. Emptying
            # it before the first worker starts is the deployment's job (a fresh
            # tmpfs / emptyDir is): stale files would add old counts.
            os.makedirs(self._multiproc_dir, exist_ok=True)
        self.registry = CollectorRegistry(auto_describe=True)
        self._extra: dict[str, Collector] = {}
        reg = self.registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, ["service", *labels], registry=reg)

        self.requests = counter(
            "idp_http_requests",
            "HTTP requests by route template and status.",
            "method",
            "route",
            "status",
        )
        self.latency = Histogram(
            "idp_http_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["service", "method", "route"],
            registry=reg,
        )
        self.logins = counter("idp_logins", "Login attempts by result.", "result")
        self.mfa = counter("idp_mfa", "Second-factor verifications by result.", "result")
        self.tokens_issued = counter("idp_tokens_issued", "Tokens issued by kind.", "kind")
        self.registrations = counter(
            "idp_registrations", "Sign-ups by result (success or why refused).", "result"
        )
        self.refresh_reuse = counter(
            "idp_refresh_reuse", "Rotated refresh tokens presented again (sessions revoked)."
        )
        self.revocations = counter(
            "idp_token_revocations",
            "Token revocation requests (RFC 7009) by result.",
            "result",
        )
        self.rate_limited = counter(
            "idp_rate_limited", "Requests refused by a rate limit.", "limit"
        )
        self.token_rejections = counter(
            "idp_token_rejections", "Bearer tokens rejected (401) by reason.", "reason"
        )
        self.access_denied = counter(
            "idp_access_denied", "Authenticated requests refused (403) by reason.", "reason"
        )
        self.jwks_refreshes = counter(
            "idp_jwks_refresh", "JWKS fetch attempts by outcome.", "outcome"
        )
        self.mail = counter(
            "idp_mail", "Mails handed to the SMTP server, by result (success, failure).", "result"
        )
        self.audit_events = counter(
            "idp_audit_events", "Audit events emitted, by event and outcome.", "event", "outcome"
        )
        self.audit_dropped = counter(
            "idp_audit_events_dropped", "Audit events that could not be written to the audit table."
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        if not self._multiproc_dir:
            ProcessCollector(registry=reg)  # per-process numbers mean nothing aggregated

    def initialise(self, *, issuer: bool) -> None:
        """Create the known label values at 0, so queries see 0 rather than no data.

        Args:
            issuer: the auth service (logins, MFA, tokens); else a resource
                server (JWKS refreshes). Rejections and denials: both.
        """
        s = self.service
        families: list[tuple[Counter, tuple[str, ...]]] = [
            (self.token_rejections, _KNOWN["rejections"]),
            (self.access_denied, _KNOWN["denials"]),
        ]
        if issuer:
            families += [
                (self.logins, _KNOWN["login_results"]),
                (self.mfa, _KNOWN["mfa_results"]),
                (self.tokens_issued, _KNOWN["token_kinds"]),
                (self.registrations, _KNOWN["registrations"]),
                (self.revocations, _KNOWN["revocations"]),
                (self.mail, _KNOWN["mail_results"]),
            ]
            self.refresh_reuse.labels(s)
        else:
            families.append((self.jwks_refreshes, _KNOWN["jwks"]))
        for family, values in families:
            for value in values:
                family.labels(s, value)
        self.audit_dropped.labels(s)
        events = AUDIT_EVENTS_ANY + (AUDIT_EVENTS_ISSUER if issuer else AUDIT_EVENTS_RESOURCE)
        for event in events:
            for outcome in _KNOWN["outcomes"]:
                self.audit_events.labels(s, event, outcome)
        if issuer:
            for limit in _KNOWN["limits"]:
                self.rate_limited.labels(s, limit)

    def initialise_requests(self, routes: Iterable[tuple[str, str, Iterable[int]]]) -> None:
        """Create the request counters and latency histograms at 0.

        Args:
            routes: (method, route template, the statuses it can answer), from
                `shared.observability.http_metrics.known_requests`.
        """
        for method, route, statuses in routes:
            for status in statuses:
                self._bind(method, route, status)

    # --- the hot path --------------------------------------------------------

    def _bind(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        # labels() validates and locks: resolve the children once per label
        # tuple and keep them (pre-bound children are the public API).
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(self.service, method, route, str(status)),
                self.latency.labels(self.service, method, route),
            )
            self._children[key] = children
        return children

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route, status)) or self._bind(method, route, status)
        children[0].inc()
        children[1].observe(seconds)

    # --- security counters -----------------------------------------------------

    def observe_audit(self, record: Mapping[str, Any]) -> None:
        """Count one audit event into the security counters it stands for.

        Deriving the counters from the audit stream keeps the two in step:
        every counted login is an audited login and the other way round.
        """
        event, outcome = str(record.get("event")), _label(record.get("outcome"))
        raw_reason = record.get("reason")
        reason = "unspecified" if raw_reason is None else _label(raw_reason)
        s = self.service
        self.audit_events.labels(s, _label(event), outcome).inc()
        if event in ("login", "passkey.login"):
            # A password login or a passwordless passkey login; either ends
            # in a new session (a refresh token) when it succeeds.
            if outcome == "success":
                self.logins.labels(s, "success").inc()
                self.tokens_issued.labels(s, "refresh").inc()
            else:
                self.logins.labels(s, reason if event == "login" else "passkey_failure").inc()
        elif event == "mfa.challenge":
            # The password was right; the login waits for its second factor.
            self.logins.labels(s, "mfa_required").inc()
        elif event == "mfa.verify":
            self.mfa.labels(s, "success" if outcome == "success" else "failure").inc()
            if outcome == "success":
                self.tokens_issued.labels(s, "refresh").inc()
        elif event == "user.register":
            # Duplicates in bulk: someone testing which emails have accounts.
            self.registrations.labels(s, "success" if outcome == "success" else reason).inc()
        elif event == "token.refresh" and outcome == "success":
            self.tokens_issued.labels(s, "refresh").inc()
        elif event == "refresh.reuse_detected":
            self.refresh_reuse.labels(s).inc()
        elif event == "token.revoke" and outcome in ("success", "denied"):
            self.revocations.labels(s, "revoked" if raw_reason is None else reason).inc()
        elif event == "rate_limited":
            self.rate_limited.labels(s, reason).inc()
            if record.get("action") == "login":
                self.logins.labels(s, "rate_limited").inc()
            elif record.get("action") == "register":
                self.registrations.labels(s, "rate_limited").inc()
        elif event == "mail.sent":
            self.mail.labels(s, "success" if outcome == "success" else "failure").inc()
        elif event == "token.rejected":
            self.token_rejections.labels(s, reason).inc()
        elif event == "access.denied":
            self.access_denied.labels(s, reason).inc()

    def jwks_fetch(self, outcome: str) -> None:
        """`JWKSClient(on_fetch=...)`: one call per fetch attempt, "ok" or "error"."""
        self.jwks_refreshes.labels(self.service, _label(outcome)).inc()

    def token_signed(self, claims: Mapping[str, Any]) -> None:
        """Count one signed JWT: a user access token carries `sid`, a service token not."""
        if "sid" in claims:
            kind = "access"
        elif claims.get("sub") is not None and claims.get("sub") == claims.get("client_id"):
            kind = "service"
        else:
            kind = "other"
        self.tokens_issued.labels(self.service, kind).inc()

    def audit_write_failed(self, count: int) -> None:
        self.audit_dropped.labels(self.service).inc(count)

    # --- exposition -------------------------------------------------------------

    def add_gauge(self, name: str, documentation: str, fn: Callable[[], float]) -> None:
        """A gauge read at scrape time (no background task, correct with many workers)."""
        collector = _CallbackGauge(name, documentation, self.service, fn)
        old = self._extra.pop(name, None)  # a second lifespan replaces its source
        if old is not None and not self._multiproc_dir:
            self.registry.unregister(old)
        self._extra[name] = collector
        if not self._multiproc_dir:
            self.registry.register(collector)

    def render(self) -> bytes:
        """The text exposition for `/metrics` (blocking file reads in multi-process mode)."""
        if not self._multiproc_dir:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._multiproc_dir)  # type: ignore[no-untyped-call]
        for collector in self._extra.values():
            registry.register(collector)
        return generate_latest(registry)
