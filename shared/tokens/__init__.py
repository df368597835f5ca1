"""Access tokens: claim models, JWK helpers, the JWKS client, verification."""
