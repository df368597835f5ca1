"""Exception types that mean "a dependency is down" in both services (-> 503).

The one definition: the apps' exception handlers and the auth service's
problem map and audit reasons all read it.
"""

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
    # Sockets: ConnectionError and TimeoutError are OSErrors, and so is a
    # database host name that does not resolve (socket.gaierror).
    OSError,
)
