"""Keep query strings out of uvicorn's access log.

uvicorn logs each request line with its query string. The page's links carry
one-time secrets there (`/?reset_token=...`, later `?verify_token=...`): the
mail's link is opened with the token in the URL, and until it is used the
token in a log line is a live password reset. The gateway logs the path only
(`$uri`), the spans only `http.target` without the query; this filter gives
uvicorn's access log the same rule. It rewrites the record's path argument
(uvicorn's `uvicorn.access` records carry `(client, method, path, version,
status)`), so every handler and formatter sees the redacted form.
"""

from __future__ import annotations

import logging

__all__ = ["QueryStringFilter", "install_access_log_filter"]

ACCESS_LOGGER = "uvicorn.access"


class QueryStringFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, sep, _query = args[2].partition("?")
            if sep:
                record.args = (args[0], args[1], f"{path}?[redacted]", args[3], args[4])
        return True


def install_access_log_filter() -> None:
    """Add the filter to uvicorn's access logger once (idempotent)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, QueryStringFilter) for f in logger.filters):
        logger.addFilter(QueryStringFilter())
