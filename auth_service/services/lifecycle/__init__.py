"""The account lifecycle after registration: password change and reset
(passwords.py), account deletion (deletion.py), the data export
(export.py), email verification links (verification_mail.py), and
verification and email change (email.py)."""

from auth_service.services.lifecycle.deletion import AccountDeletion, Deleted
from auth_service.services.lifecycle.email import ChangeLimits, EmailLifecycle, Verified
from auth_service.services.lifecycle.export import AccountData, AccountExport
from auth_service.services.lifecycle.passwords import PasswordLifecycle, ResetLimits
from auth_service.services.lifecycle.verification_mail import (
    VerificationLimits,
    VerificationMailer,
)

__all__ = [
    "AccountData",
    "AccountDeletion",
    "AccountExport",
    "ChangeLimits",
    "Deleted",
    "EmailLifecycle",
    "PasswordLifecycle",
    "ResetLimits",
    "VerificationLimits",
    "VerificationMailer",
    "Verified",
]
