"""`@service`: a service class whose constructor is its dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

__all__ = ["service"]

_T = TypeVar("_T")


@dataclass_transform(kw_only_default=True, eq_default=False)
def service(cls: type[_T]) -> type[_T]:
    """Make `cls` a dataclass of its collaborators, passed by keyword.

    No `repr`: a service holds keys and clients that must stay out of logs
    and tracebacks. No `==`: a service is one object, compared by identity.
    """
    return dataclass(kw_only=True, repr=False, eq=False)(cls)
