"""Code both services share: access-token verification, the JWKS client, claim models."""

from shared.claims import AccessClaims
from shared.jwk import rfc7638_thumbprint, rsa_public_jwk
from shared.jwks import JWKSClient
from shared.verify import KeySource, KeysUnavailable, TokenRejected, TokenVerifier

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
