"""The account lifecycle after registration: password change and reset
(passwords.py); email verification, deletion and export will join it."""

from auth_service.services.lifecycle.passwords import PasswordLifecycle, ResetLimits

__all__ = ["PasswordLifecycle", "ResetLimits"]
