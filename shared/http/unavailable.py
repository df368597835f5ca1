"""Exception types that mean "a dependency is down" in both services (-> 503)."""

from __future__ import annotations

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

__all__ = ["DEPENDENCY_ERRORS"]

DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    OperationalError,
    DBAPIError,
    PoolTimeout,
    ConnectionError,
    TimeoutError,
)
