"""Versioned migrations: ``sql/migrations/NNNN_name.sql``, applied in order, each once, recorded.

``apelier-worker migrate`` takes a transaction-scoped advisory lock (a second box migrating at the
same time waits, then finds nothing to do), creates ``apelier.migrations`` (version, name,
checksum, applied_at) if missing, checks that no applied migration's file changed, and runs every
pending file in one transaction, recording each. A database's schema version is its highest
applied migration.

Workers accept a range: a worker needs at least :data:`MIN_SCHEMA_VERSION` and keeps working on a
database a newer release migrated further (migrations only add), so a rolling upgrade never stops
the boxes not yet upgraded. Databases migrated before versioned migrations recorded one number
(1-3) in ``apelier.schema_version``; migrations 1-4 are that schema written idempotently, so
``migrate`` runs them there too and records them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache

import psycopg

from worker.errors import ConfigError
from worker.queue.connection import Connection
from worker.queue.sql import q, sql_dir

# The oldest schema this worker runs on: raised (never lowered) when the worker starts relying on
# SQL that a newer migration adds. 4: the schema of migrations 1-4 (what workers before versioned
# migrations called version 3: the queue, its functions, start_style_training, the triggers). 7: runs,
# photos in flight, pending outputs and end_attempt (0007), which the gallery job and the daemon call.
# 8: chunks of a split job (0008): every claim asks for a chunk first. 9: the HTTP API queues a gallery
# through apelier.enqueue_gallery (0009), the app's rpc's path; a canceled run deletes its own unrecorded
# outputs through apelier.own_unrecorded_outputs (0009).
MIN_SCHEMA_VERSION = 9
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file's name, e.g. "0002_queue.sql"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@cache
def migrations() -> tuple[Migration, ...]:
    """Every file of ``sql/migrations``, by version."""
    found: dict[int, Migration] = {}
    for path in sorted((sql_dir() / "migrations").iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE.match(path.name)
        if not match:
            raise ConfigError(f"sql/migrations/{path.name} is not named NNNN_name.sql; rename it")
        version = int(match.group(1))
        if version in found:
            raise ConfigError(f"sql/migrations has two migrations numbered {version}; renumber one")
        found[version] = Migration(version, path.name, path.read_text())
    return tuple(found[v] for v in sorted(found))


def latest_version() -> int:
    """The highest migration this release ships."""
    return migrations()[-1].version


def schema_version(connection: Connection) -> int | None:
    """The database's highest applied migration; an older worker's recorded version; None if unmigrated."""
    tables = connection.one("schema_tables")
    if tables and tables["versioned"]:
        row = connection.one("migrations_version")
        if row and row["version"] is not None:
            return int(row["version"])
    if tables and tables["legacy"]:
        row = connection.one("legacy_schema_version")
        return int(row["version"]) if row else None
    return None


def migrate(connection: Connection) -> tuple[int | None, int]:
    """Apply every pending migration in one transaction. Returns the schema version before and after."""
    try:
        return _migrate(connection)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ConfigError(
            f"migrate needs the database owner's connection (Supabase: postgres), not the worker's role "
            f"({exc.diag.message_primary}): run it with DATABASE_URL set to the owner's connection string"
        ) from None


def _migrate(connection: Connection) -> tuple[int | None, int]:
    with connection.transaction():
        connection.one("migration_lock")
        before = schema_version(connection)
        connection.script(q("create_migrations_table"))
        applied = {int(r["version"]): r for r in connection.all("applied_migrations")}
        newest_applied = max(applied, default=0)
        for migration in migrations():
            row = applied.get(migration.version)
            if row is None:
                if migration.version < newest_applied:
                    raise ConfigError(
                        f"sql/migrations/{migration.name} was never applied but the database is already at "
                        f"version {newest_applied}; give it a number above {newest_applied}"
                    )
                connection.script(migration.sql)
                connection.one(
                    "record_migration", version=migration.version, name=migration.name, checksum=migration.checksum
                )
            elif row["name"] != migration.name or row["checksum"] != migration.checksum:
                raise ConfigError(
                    f"sql/migrations/{migration.name} differs from migration {migration.version} as applied "
                    f"({row['name']}); restore it and put the change in a new migration"
                )
        after = schema_version(connection)
    assert after is not None
    return before, after


def check_worker_can_run(version: int | None) -> None:
    """Refuse a database older than this worker needs (a newer one is fine: a rolling upgrade)."""
    if version is not None and version >= MIN_SCHEMA_VERSION:
        return
    found = "no apelier schema" if version is None else f"schema version {version}"
    raise ConfigError(
        f"the database has {found}; this worker needs version {MIN_SCHEMA_VERSION} or newer: "
        "run `apelier-worker migrate`"
    )
