"""The HTTP edge: ASGI middleware, RFC 9457 problems, OpenAPI, CORS, health."""
