"""OAuth 2.0 and OpenID Connect for other applications: the client registry,
client authentication, the grants, introspection and user info."""
