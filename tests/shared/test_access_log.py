"""uvicorn's access log never shows a query string (reset links carry tokens there)."""

from __future__ import annotations

import logging

from uvicorn.logging import AccessFormatter

from shared.http.access_log import ACCESS_LOGGER, QueryStringFilter, install_access_log_filter

TOKEN = "s3cr3t-reset-token-abcdefghijklmnopqrstuvw"


def _line(path: str) -> str:
    record = logging.LogRecord(
        ACCESS_LOGGER,
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 200),
        None,
    )
    assert QueryStringFilter().filter(record)
    formatter = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s')
    return formatter.format(record)


def test_the_query_string_is_replaced() -> None:
    line = _line(f"/?reset_token={TOKEN}")
    assert TOKEN not in line
    assert "GET /?[redacted] HTTP/1.1" in line


def test_a_path_without_query_is_untouched() -> None:
    assert "GET /users/me HTTP/1.1" in _line("/users/me")


def test_installing_twice_adds_one_filter() -> None:
    install_access_log_filter()
    install_access_log_filter()
    filters = logging.getLogger(ACCESS_LOGGER).filters
    assert sum(isinstance(f, QueryStringFilter) for f in filters) == 1
