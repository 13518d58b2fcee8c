"""Before a command does its work: can it reach the database, with the schema it needs, and storage?

Every command that uses the database asks here first, so a wrong ``DATABASE_URL`` is one line
within seconds (a connect timeout of :data:`CONNECT_TIMEOUT_S`), not a traceback; ``run`` asks
before it loads its models (half a minute), so a worker that cannot work says so at once.
What a psycopg error means is decided in :func:`worker.errors.database_error`; the CLI prints it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import psycopg

from worker.errors import (
    DatabaseError,
    DatabaseSchemaError,
    StorageError,
    WorkerError,
    database_error,
    first_line,
)
from worker.queue.database import Queue
from worker.queue.migrations import MIN_SCHEMA_VERSION
from worker.service import embedded
from worker.service.config import Settings, redact_url
from worker.storage.base import Storage
from worker.storage.factory import from_settings

# Long enough for a pooler across an ocean, short enough that a firewalled host is reported at once.
CONNECT_TIMEOUT_S = 5.0
# "current": one this worker runs on, MIN_SCHEMA_VERSION or newer (the daemon); "any": some worker
# schema (the operator's commands read and write its tables); None: none needed (migrate creates it).
SchemaNeed = Literal["current", "any"] | None
STORAGE_PROBE_KEY = ".apelier-worker/preflight"


def database(settings: Settings, *, schema: SchemaNeed = "current", timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """The database URL (``DATABASE_URL``, or the embedded server's), once it answers and has ``schema``.

    Raises a :class:`~worker.errors.DatabaseError` whose message says what to do.
    """
    shown = settings.database_url  # None: the embedded server, whose URL needs no showing
    try:
        url = embedded.database_url(settings)
        psycopg.connect(url, connect_timeout=max(1, round(timeout_s))).close()
        if schema is None:
            return url
        queue = Queue(url, settings.worker_id)
        try:
            version = queue.admin.schema_version()
        finally:
            queue.close()
    except psycopg.Error as exc:
        raise database_error(exc, shown) or DatabaseError(f"database error {type(exc).__name__}") from None
    where = f"the database at {redact_url(shown)}" if shown else "the embedded database"
    if version is None:
        raise DatabaseSchemaError(f"{where} has no worker schema: run `apelier-worker migrate`")
    if schema == "current" and version < MIN_SCHEMA_VERSION:  # a newer one is fine: a rolling upgrade
        raise DatabaseSchemaError(
            f"{where} has worker schema version {version}, this worker needs {MIN_SCHEMA_VERSION} or newer: "
            "run `apelier-worker migrate`"
        )
    return url


def storage(settings: Settings) -> Storage:
    """The storage the settings describe, once one read-only request has gone through (no retries:
    the answer is what counts). Raises :class:`~worker.errors.StorageError` saying what to check."""
    probe = from_settings(replace(settings, storage_retries=0))
    try:
        probe.exists(STORAGE_PROBE_KEY)
    except WorkerError as exc:
        why = first_line(exc.__cause__, 160) if exc.__cause__ is not None else exc.message
        raise StorageError(
            f"cannot use {probe.describe()} ({why}): check SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY and STORAGE_BUCKET"
        ) from None
    except OSError as exc:  # a local folder that cannot be read
        raise StorageError(f"cannot use {probe.describe()} ({exc.strerror or exc}); check WORKER_DATA_DIR") from None
    finally:
        close = getattr(probe, "close", None)
        if callable(close):
            close()
    return from_settings(settings)
