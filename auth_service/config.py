"""Settings of the auth service (environment variables, see docs/CONTRACTS.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from auth_service.keys.secret_box import decode_key
from auth_service.mail.smtp import SmtpConfig
from auth_service.services.webauthn.relying_party import (
    RelyingParty,
    check_relying_party,
    parse_origins,
)
from shared.access.revocation import MARKER_OUTLIVES_TOKEN_SECONDS
from shared.runtime.settings import CommonSettings, ProductionConfigError


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one.

    `os.cpu_count()` counts the machine's CPUs, also when the process is
    pinned to fewer (taskset, cpusets); a hash per CPU it cannot use would
    only add memory and contention.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class AuthSettings(CommonSettings):
    service_name: str = "auth-service"
    database_url: str = "sqlite+aiosqlite:///./.data/auth.db"
    # Where the signing keys live (docs/OPERATIONS.md, "Where the keys live"):
    # `directory`, KEY_DIR shared by every replica; `database`, the
    # signing_keys table, private keys sealed under KEY_ENCRYPTION_KEY.
    key_store: Literal["directory", "database"] = "directory"
    key_dir: Path = Path(".data/keys")
    # KEY_STORE=database: the AES-256 key-encryption key (32 bytes, base64url)
    # sealing the private keys in the database. Production refuses to start
    # without it; elsewhere an empty value means a key made in KEY_DIR.
    key_encryption_key: SecretStr = SecretStr("")
    access_token_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    refresh_token_ttl_seconds: int = Field(default=14 * 24 * 3600, ge=300)
    # A session nobody refreshed for this long ends (ASVS 7.3.1), well before
    # the absolute lifetime above. docs/ASVS.md has the reasoning.
    refresh_idle_timeout_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    # A rotated refresh token whose successor was never used gets that same
    # successor back for this long: the retry of a refresh whose answer was
    # lost. 0 makes every second presentation a reuse. docs/ASVS.md, 7.2.
    refresh_retry_grace_seconds: int = Field(default=30, ge=0, le=300)
    service_token_ttl_seconds: int = Field(default=120, ge=30, le=600)
    user_service_url: str = "http://127.0.0.1:8002"
    user_service_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    # argon2id cost: OWASP's m=12 MiB, t=3, p=1. The hasher refuses anything
    # below all of OWASP's equal-defence rows (services/passwords.py).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 12288
    argon2_parallelism: int = 1
    # Concurrent hashes: one per core. More only queues memory, not throughput.
    hash_concurrency: int = Field(default_factory=usable_cpus, ge=1)
    # Rate limits (count per window seconds). Disable only explicitly, for tests.
    rate_limit_enabled: bool = True
    # Numbers and reasoning: docs/RATE_LIMITS.md. Login counts attempts per
    # IP, per (account, client network) -- the brake one attacker trips --
    # and per account across all networks, a higher ceiling (NIST 800-63B's
    # 100) that a single network cannot reach on its own.
    login_ip_limit: int = 30
    login_ip_window_seconds: int = 60
    login_account_network_limit: int = 10
    login_account_network_window_seconds: int = 900
    login_account_limit: int = 100
    login_account_window_seconds: int = 3600
    # Client networks for the limit above: IPv4 per address, IPv6 per /64.
    login_network_ipv4_prefix: int = Field(default=32, ge=8, le=32)
    login_network_ipv6_prefix: int = Field(default=64, ge=16, le=128)
    register_ip_limit: int = 10
    register_ip_window_seconds: int = 3600
    register_email_limit: int = 5
    register_email_window_seconds: int = 3600
    refresh_ip_limit: int = 120
    refresh_ip_window_seconds: int = 60
    key_reload_seconds: float = Field(default=5.0, gt=0)
    # Scheduled rotation (auth_service/keys/rotation.py; docs/OPERATIONS.md,
    # "Scheduled rotation"). 0: off, keys change only through the CLI.
    key_rotation_interval_seconds: int = Field(default=0, ge=0)
    # From publication to first signature: longer than a replica's reload, an
    # HTTP cache's JWKS max-age and resource servers' unknown-kid refetch gap.
    key_activation_delay_seconds: int = Field(default=600, ge=1)
    jwks_max_age_seconds: int = Field(default=30, ge=0, le=3600)
    # WebAuthn (docs/PASSKEYS.md). Origins are exact scheme://host[:port]
    # values, comma-separated: the gateway and the auth service's own port.
    webauthn_rp_id: str = "localhost"
    webauthn_rp_name: str = "Identity Platform"
    webauthn_origins: str = "http://localhost:8000,http://localhost:8001"
    # L3 §15.1 recommends 300 s when user verification is required.
    webauthn_timeout_seconds: int = Field(default=300, ge=30, le=600)
    mfa_token_ttl_seconds: int = Field(default=300, ge=60, le=900)
    # Removing a passkey or minting recovery codes needs a second factor
    # (amr hwk/otp) at most this old.
    step_up_max_age_seconds: int = Field(default=600, ge=60, le=3600)
    # Enrolling the first passkey (which turns MFA on and hands out recovery
    # codes) needs a login (`auth_time`) at most this old, or the password
    # again; 0 asks for the password every time. docs/PASSKEYS.md.
    enrol_reauth_max_age_seconds: int = Field(default=300, ge=0, le=3600)
    recovery_code_count: int = Field(default=10, ge=4, le=20)
    # TOTP (docs/PASSKEYS.md, "TOTP"). The secrets are sealed at rest with this
    # AES-256 key (32 bytes, base64url). Production refuses to start without
    # it; elsewhere an empty value means a key made in KEY_DIR on first start.
    totp_encryption_key: SecretStr = SecretStr("")
    # Wrong codes per account: a right password resets the login counters, so
    # without these an attacker holding the password would get one code guess
    # per login, forever (docs/RATE_LIMITS.md, "TOTP codes").
    totp_account_limit: int = Field(default=5, ge=1)
    totp_account_window_seconds: int = Field(default=900, ge=1)
    totp_account_daily_limit: int = Field(default=20, ge=1)
    totp_account_daily_window_seconds: int = Field(default=86400, ge=1)
    passkey_options_ip_limit: int = 60
    passkey_options_ip_window_seconds: int = 60
    # Forgot-password requests (each may send a mail): per client IP and per
    # email as typed, known or not (docs/RATE_LIMITS.md).
    forgot_ip_limit: int = 10
    forgot_ip_window_seconds: int = 3600
    forgot_email_limit: int = 3
    forgot_email_window_seconds: int = 3600
    # Mail (docs/OPERATIONS.md, "Mail"): smtp://[user:pass@]host[:port]
    # (STARTTLS, required in production) or smtps:// (implicit TLS). Empty:
    # no mail, and forgot-password answers 503 rather than pretending.
    smtp_url: str = ""
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    mail_from: str = "Identity Platform <no-reply@localhost>"
    # A reset link lives this long and works once.
    password_reset_ttl_seconds: int = Field(default=1800, ge=300, le=86400)
    # Email verification and email change links (README.md, "Email
    # verification and email change"): a day, since a first mail may be
    # read late; single use either way.
    email_verify_ttl_seconds: int = Field(default=86400, ge=300, le=7 * 86400)
    # Login (password, passkey) of an account whose address is not verified
    # is refused with 403 `email-not-verified`. Off by default: the first
    # client's walk (register, log in) has no mailbox.
    require_verified_email: bool = False
    # Verification mails asked for (resend, refused logins) and email change
    # requests: each mails an address (docs/RATE_LIMITS.md).
    verify_resend_ip_limit: int = 10
    verify_resend_ip_window_seconds: int = 3600
    verify_resend_account_limit: int = 3
    verify_resend_account_window_seconds: int = 3600
    email_change_ip_limit: int = 10
    email_change_ip_window_seconds: int = 3600
    email_change_account_limit: int = 3
    email_change_account_window_seconds: int = 3600

    @property
    def smtp(self) -> SmtpConfig | None:
        if not self.smtp_url:
            return None
        return SmtpConfig.from_url(
            self.smtp_url, production=self.is_production, timeout_seconds=self.smtp_timeout_seconds
        )

    @property
    def key_retire_after_seconds(self) -> float:
        """How long a successor signs before the key it replaced leaves the JWKS.

        The longest token lifetime, plus the largest leeway a verifier may
        allow (the user service refuses more than MARKER_OUTLIVES_TOKEN_SECONDS),
        plus one reload: a replica that had not yet seen the successor signed
        with the old key for up to that long.
        """
        longest = max(self.access_token_ttl_seconds, self.service_token_ttl_seconds)
        return longest + MARKER_OUTLIVES_TOKEN_SECONDS + self.key_reload_seconds

    @model_validator(mode="after")
    def _rotation_guard(self) -> AuthSettings:
        if not self.key_rotation_interval_seconds:
            return self
        problems = []
        if self.key_activation_delay_seconds < self.key_reload_seconds + self.jwks_max_age_seconds:
            problems.append(
                f"KEY_ACTIVATION_DELAY_SECONDS={self.key_activation_delay_seconds} is shorter "
                f"than KEY_RELOAD_SECONDS + JWKS_MAX_AGE_SECONDS: a key would sign before "
                "every replica and every JWKS cache could know it"
            )
        if self.key_rotation_interval_seconds <= self.key_activation_delay_seconds:
            problems.append(
                f"KEY_ROTATION_INTERVAL_SECONDS={self.key_rotation_interval_seconds} must be "
                "longer than KEY_ACTIVATION_DELAY_SECONDS"
            )
        if problems:
            raise ValueError("key rotation settings: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _smtp_guard(self) -> AuthSettings:
        self.smtp  # noqa: B018 - parse now: a bad SMTP_URL fails the start, not the first mail
        return self

    @property
    def relying_party(self) -> RelyingParty:
        return RelyingParty(
            rp_id=self.webauthn_rp_id,
            rp_name=self.webauthn_rp_name,
            origins=parse_origins(self.webauthn_origins),
            timeout_ms=self.webauthn_timeout_seconds * 1000,
        )

    @model_validator(mode="after")
    def _webauthn_guard(self) -> AuthSettings:
        rp = self.relying_party
        problems = check_relying_party(rp.rp_id, rp.origins, production=self.is_production)
        if problems:
            # Fail at start: a wrong RP ID or origin would otherwise surface
            # only as every passkey ceremony failing in the browser.
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _valid_totp_key(self) -> AuthSettings:
        # After the model is built, not a field validator: pydantic's error
        # would then quote the input, and the input is the key.
        for name, secret in (
            ("TOTP_ENCRYPTION_KEY", self.totp_encryption_key),
            ("KEY_ENCRYPTION_KEY", self.key_encryption_key),
        ):
            key = secret.get_secret_value()
            if key:
                try:
                    decode_key(key)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _auth_production_guard(self) -> AuthSettings:
        if self.is_production and not self.rate_limit_enabled:
            raise ProductionConfigError("RATE_LIMIT_ENABLED must stay true in production")
        if self.is_production and not self.totp_encryption_key.get_secret_value():
            # A generated key would sit beside the data it protects, or differ
            # per replica: production names its key.
            raise ProductionConfigError(
                "TOTP_ENCRYPTION_KEY must be set in production (32 random bytes, base64url: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if (
            self.is_production
            and self.key_store == "database"
            and not self.key_encryption_key.get_secret_value()
        ):
            # A generated KEK would sit in a pod's file system, differ per
            # replica, and seal keys that no other replica could open.
            raise ProductionConfigError(
                "KEY_ENCRYPTION_KEY must be set in production with KEY_STORE=database "
                "(32 random bytes, base64url: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return self
