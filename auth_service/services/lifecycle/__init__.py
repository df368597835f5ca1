"""The account lifecycle after registration: password change and reset
(passwords.py), account deletion (deletion.py) and the data export
(export.py); email verification will join them."""

from auth_service.services.lifecycle.deletion import AccountDeletion, Deleted
from auth_service.services.lifecycle.export import AccountData, AccountExport
from auth_service.services.lifecycle.passwords import PasswordLifecycle, ResetLimits

__all__ = [
    "AccountData",
    "AccountDeletion",
    "AccountExport",
    "Deleted",
    "PasswordLifecycle",
    "ResetLimits",
]
