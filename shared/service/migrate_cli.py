"""`python -m <service>.migrate`: the migration CLI, run on the service's own settings.

The commands themselves are `shared/db/migrations.py`'s `main`; this adds
what both services' entry points otherwise repeated: reading DATABASE_URL
(and the rest) from the service's settings, as the service itself would,
and exiting with the CLI's status.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from shared.db.migrations import ServiceMigrations, main
from shared.runtime.settings import CommonSettings

__all__ = ["run"]


def run(
    migrations: ServiceMigrations,
    settings: Callable[[], CommonSettings],
    argv: Sequence[str] | None = None,
) -> NoReturn:
    """Run the migration CLI for one service and exit with its status.

    Args:
        migrations: the service's migrations.
        settings: the service's settings class; built only when a command
            needs the database, so `--help` works without a valid environment.
        argv: the arguments after the program name (default: the command line).
    """
    sys.exit(
        main(migrations, lambda: settings().database_url, sys.argv[1:] if argv is None else argv)
    )
