"""Code both services share: access-token verification, the JWKS client, claim models."""

from shared.tokens.claims import AccessClaims
from shared.tokens.jwk import rfc7638_thumbprint, rsa_public_jwk
from shared.tokens.jwks import JWKSClient
from shared.tokens.verify import KeySource, KeysUnavailable, TokenRejected, TokenVerifier

__all__ = [
    "AccessClaims",
    "JWKSClient",
    "KeySource",
    "KeysUnavailable",
    "TokenRejected",
    "TokenVerifier",
    "rfc7638_thumbprint",
    "rsa_public_jwk",
]
