"""Passkeys (WebAuthn) by ceremony: relying party, options, response checks, passkeys."""
