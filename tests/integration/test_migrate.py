"""Migrations on a fresh database, on the app's existing one, and on one an older worker migrated:
each applied once, recorded, safe when two boxes migrate at once; the range of versions a worker runs on."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from worker.errors import ConfigError
from worker.queue import migrations
from worker.queue.database import Queue
from worker.queue.migrations import MIN_SCHEMA_VERSION, Migration, check_worker_can_run, latest_version

FIXTURES = Path(__file__).parents[1] / "fixtures"
APP_SCHEMA = FIXTURES / "app_schema.sql"
# sql/ as workers before versioned migrations shipped it (main at schema version 3), run as they ran it.
LEGACY_FILES = ("schema.sql", "migrate.sql", "functions.sql", "realtime.sql", "policies.sql")
APP_TABLES = ("photographers", "galleries", "photos", "style_profiles", "processing_jobs")


def snapshot(url: str) -> dict[str, Any]:
    """Everything a migration could change: columns, constraints, indexes, triggers, functions, policies, rows."""
    with psycopg.connect(url) as conn:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(str(v) for v in r) for r in conn.execute(sql).fetchall()]

        out: dict[str, Any] = {
            "columns": rows(
                "SELECT table_schema, table_name, column_name, data_type, column_default, is_nullable "
                "FROM information_schema.columns WHERE table_schema IN ('public', 'apelier', 'auth') "
                "ORDER BY 1, 2, 3"
            ),
            "constraints": rows(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid), convalidated "
                "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                "WHERE n.nspname IN ('public', 'apelier') "
                "ORDER BY 1, 2"
            ),
            "indexes": rows(
                "SELECT schemaname, indexname, indexdef FROM pg_indexes "
                "WHERE schemaname IN ('public', 'apelier') ORDER BY 1, 2"
            ),
            "triggers": rows(
                "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE NOT tgisinternal ORDER BY 1, 2"
            ),
            "functions": rows(
                "SELECT n.nspname, p.proname, md5(p.prosrc), pg_get_function_identity_arguments(p.oid) "
                "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname IN ('public', 'apelier', 'auth') ORDER BY 1, 2, 4"
            ),
            "policies": rows("SELECT tablename, policyname, cmd, qual, with_check FROM pg_policies ORDER BY 1, 2"),
            "rls": rows(
                "SELECT relname, relrowsecurity FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                "AND relkind = 'r' ORDER BY 1"
            ),
        }
        for table in APP_TABLES:
            out[f"rows:{table}"] = [
                json.dumps(r[0], sort_keys=True, default=str)
                for r in conn.execute(f"SELECT to_jsonb(t) FROM {table} t ORDER BY id").fetchall()
            ]
    return out


def legacy_migrate(url: str) -> None:
    """What ``apelier-worker migrate`` did before versioned migrations: every file again, then version 3."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('apelier-worker migrate'))")
        for name in LEGACY_FILES:
            conn.execute((FIXTURES / "legacy_v3" / name).read_text().encode())
        conn.execute(
            "INSERT INTO apelier.schema_version (singleton, version) VALUES (true, 3) "
            "ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, applied_at = now() "
            "WHERE apelier.schema_version.version IS DISTINCT FROM excluded.version"
        )


def without_ledger(snap: dict[str, Any], *, rows: bool = True) -> dict[str, Any]:
    """A snapshot without apelier.migrations (the only object versioned migrations add), and without rows."""
    out = {k: v for k, v in snap.items() if rows or not k.startswith("rows:")}
    out["columns"] = [c for c in snap["columns"] if c[:2] != ("apelier", "migrations")]
    out["constraints"] = [c for c in snap["constraints"] if c[0] != "apelier.migrations"]
    out["indexes"] = [i for i in snap["indexes"] if i[:2] != ("apelier", "migrations_pkey")]
    return out


def ledger(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute("SELECT version, name, checksum FROM apelier.migrations ORDER BY 1")]


def legacy_version(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM apelier.schema_version").fetchone()
    assert row is not None
    return int(row[0])


def test_fresh_database_migrates_and_a_second_run_changes_nothing(empty_db_url: str) -> None:
    queue = Queue(empty_db_url, "w")
    latest = latest_version()
    assert queue.admin.schema_version() is None
    assert queue.admin.migrate() == (None, latest)
    first = snapshot(empty_db_url)
    assert ledger(empty_db_url) == [(m.version, m.name, m.checksum) for m in migrations.migrations()]
    assert queue.admin.migrate() == (latest, latest)
    assert snapshot(empty_db_url) == first
    # Workers released before versioned migrations read this row: they start on this schema too.
    assert legacy_version(empty_db_url) == 3
    queue.close()


@pytest.fixture
def second_db_url(pg_admin_url: str, empty_db_url: str) -> Iterator[str]:
    """Another empty database beside ``empty_db_url``."""
    name = f"{psycopg.conninfo.conninfo_to_dict(empty_db_url)['dbname']}_b"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("app_schema", [False, True], ids=["fresh", "app"])
def test_a_database_migrated_before_versioned_migrations_upgrades_to_the_same_schema(
    empty_db_url: str, second_db_url: str, app_schema: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today's five files as they were at schema version 3, then the numbered migrations."""
    for url in (empty_db_url, second_db_url):
        if app_schema:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(APP_SCHEMA.read_text().encode())
    legacy_migrate(empty_db_url)
    old = snapshot(empty_db_url)
    queue = Queue(empty_db_url, "w")
    assert queue.admin.schema_version() == 3
    with pytest.raises(ConfigError, match=r"needs version \d+ or newer: run `apelier-worker migrate`"):
        check_worker_can_run(queue.admin.schema_version())

    latest = latest_version()
    shipped = migrations.migrations()
    with monkeypatch.context() as patch:  # migrations 1-4 alone: the legacy schema, recorded
        patch.setattr(migrations, "migrations", lambda: tuple(m for m in shipped if m.version <= 4))
        assert queue.admin.migrate() == (3, 4)
    assert without_ledger(snapshot(empty_db_url)) == old  # nothing changed but the ledger: rows, functions, policies…
    assert queue.admin.migrate() == (4, latest)  # then the later ones, on top
    upgraded = snapshot(empty_db_url)
    assert [v for v, _, _ in ledger(empty_db_url)] == [m.version for m in shipped]
    assert legacy_version(empty_db_url) == 3  # old workers not yet upgraded still start
    check_worker_can_run(queue.admin.schema_version())
    assert queue.admin.migrate() == (latest, latest)
    assert snapshot(empty_db_url) == upgraded
    queue.close()

    # The same schema as a database the numbered migrations built from the start.
    fresh = Queue(second_db_url, "w")
    fresh.admin.migrate()
    fresh.close()
    assert without_ledger(snapshot(second_db_url), rows=False) == without_ledger(upgraded, rows=False)


def test_two_boxes_migrating_at_once_apply_each_migration_once(empty_db_url: str) -> None:
    start = threading.Barrier(2)
    results: list[tuple[int | None, int]] = []
    errors: list[BaseException] = []

    def box() -> None:
        queue = Queue(empty_db_url, "w")
        try:
            start.wait()
            results.append(queue.admin.migrate())
        except BaseException as exc:
            errors.append(exc)
        finally:
            queue.close()

    threads = [threading.Thread(target=box) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    latest = latest_version()
    # The second waited on the first's lock, then found everything applied.
    assert sorted(results, key=str) == sorted([(None, latest), (latest, latest)], key=str)
    assert [v for v, _, _ in ledger(empty_db_url)] == [m.version for m in migrations.migrations()]


def test_a_new_migration_runs_once_and_a_failing_one_leaves_the_database_as_it_was(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    latest = latest_version()
    shipped = migrations.migrations()
    queue = Queue(db_url, "w")
    # Not idempotent on purpose: a second run would fail.
    added = Migration(latest + 1, f"{latest + 1:04d}_extra.sql", "CREATE TABLE apelier.extra (id integer);")
    monkeypatch.setattr(migrations, "migrations", lambda: (*shipped, added))
    assert queue.admin.migrate() == (latest, latest + 1)
    assert queue.admin.migrate() == (latest + 1, latest + 1)
    assert ledger(db_url)[-1] == (added.version, added.name, added.checksum)

    broken = Migration(
        latest + 2, f"{latest + 2:04d}_broken.sql", "CREATE TABLE apelier.half (id integer); SELECT 1/0;"
    )
    monkeypatch.setattr(migrations, "migrations", lambda: (*shipped, added, broken))
    with pytest.raises(psycopg.errors.DivisionByZero):
        queue.admin.migrate()
    assert queue.admin.schema_version() == latest + 1
    assert queue.conn.execute("SELECT to_regclass('apelier.half') IS NULL AS gone").fetchone() == {"gone": True}

    # A shipped migration renamed or edited after it was applied: refused, nothing run.
    renamed = Migration(latest, f"{latest:04d}_renamed.sql", shipped[-1].sql)
    monkeypatch.setattr(migrations, "migrations", lambda: (*shipped[:-1], renamed, added))
    with pytest.raises(ConfigError, match="differs from migration"):
        queue.admin.migrate()
    # One numbered below what the database already has that was never applied (two branches took
    # the same number): refused, not run out of order.
    queue.conn.execute("INSERT INTO apelier.migrations VALUES (%s, 'from_another_branch.sql', 'x')", (latest + 5,))
    monkeypatch.setattr(migrations, "migrations", lambda: (*shipped, added, broken))
    with pytest.raises(ConfigError, match="never applied but the database is already at version"):
        queue.admin.migrate()
    assert queue.admin.schema_version() == latest + 5
    queue.close()


def test_a_changed_migration_is_refused(db_url: str) -> None:
    queue = Queue(db_url, "w")
    queue.conn.execute("UPDATE apelier.migrations SET checksum = 'edited' WHERE version = 2")
    with pytest.raises(ConfigError, match=r"0002_queue\.sql differs from migration 2 as applied"):
        queue.admin.migrate()
    queue.close()


def test_workers_run_on_any_version_from_their_minimum_on(db_url: str) -> None:
    """A box that migrated first (a newer release) never stops the others; an older database is refused."""
    queue = Queue(db_url, "w")
    newer = latest_version() + 3
    queue.conn.execute("INSERT INTO apelier.migrations VALUES (%s, 'from_a_newer_release.sql', 'x')", (newer,))
    assert queue.admin.schema_version() == newer
    check_worker_can_run(newer)
    assert queue.admin.migrate() == (newer, newer)  # nothing of this release is pending; the newer one is kept
    with pytest.raises(ConfigError, match=f"schema version {MIN_SCHEMA_VERSION - 1}; this worker needs version"):
        check_worker_can_run(MIN_SCHEMA_VERSION - 1)
    with pytest.raises(ConfigError, match="no apelier schema"):
        check_worker_can_run(None)
    queue.close()


def test_app_database_upgrades_idempotently_without_losing_data(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(APP_SCHEMA.read_text().encode())
    before = snapshot(empty_db_url)
    queue = Queue(empty_db_url, "w")
    queue.admin.migrate()
    once = snapshot(empty_db_url)
    queue.admin.migrate()
    twice = snapshot(empty_db_url)
    assert twice == once

    # Data: every row of the app's tables is still there with its values.
    for table in APP_TABLES:
        old = [json.loads(r) for r in before[f"rows:{table}"]]
        new = [json.loads(r) for r in once[f"rows:{table}"]]
        assert len(new) == len(old)
        for o, n in zip(old, new, strict=True):
            assert {k: n[k] for k in o} == o  # old columns unchanged; new columns only added

    # The app's own billing function and RLS policy are kept as they were.
    app_fn = [f for f in before["functions"] if f[1] == "increment_images_edited"]
    assert [f for f in once["functions"] if f[1] == "increment_images_edited"] == app_fn
    assert ("processing_jobs", "processing_jobs_owner_select") in {(p[0], p[1]) for p in once["policies"]}

    # The queue columns arrived with their defaults on historic rows; gallery_id may now be NULL.
    with psycopg.connect(empty_db_url) as conn:
        row = conn.execute(
            "SELECT job_type, attempts, max_attempts, priority, payload FROM processing_jobs "
            "WHERE id = '66666666-6666-4666-8666-666666666666'"
        ).fetchone()
        assert row == ("gallery", 0, 3, 100, {})
        nullable = conn.execute(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'processing_jobs' AND column_name = 'gallery_id'"
        ).fetchone()
        assert nullable == ("YES",)
    # A historic 'processing' row the old engine abandoned is not picked up by requeue.
    assert queue.jobs.requeue_stale(0.001) == []
    queue.close()


def test_app_role_inserting_a_job_fires_the_notify_trigger(empty_db_url: str) -> None:
    """The app inserts jobs as its own role, which has no rights on schema apelier."""
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(APP_SCHEMA.read_text().encode())
    queue = Queue(empty_db_url, "w")
    queue.admin.migrate()
    queue.close()
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE app_user NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO app_user")
        conn.execute("GRANT USAGE ON SCHEMA auth TO app_user")
        conn.execute("LISTEN apelier_jobs")
        conn.execute("SET ROLE app_user")
        conn.execute("SET request.jwt.claim.sub = '11111111-1111-4111-8111-111111111111'")
        conn.execute(
            "INSERT INTO processing_jobs (gallery_id, photographer_id, total_images, status, current_phase) "
            "VALUES ('33333333-3333-4333-8333-333333333333', '22222222-2222-4222-8222-222222222222', 1, "
            "'queued', 'queued')"
        )
        conn.execute("RESET ROLE")
        notes = list(conn.notifies(timeout=2, stop_after=1))
        assert notes and notes[0].channel == "apelier_jobs"
