"""The migration on a fresh database and on the app's existing one: idempotent, no data lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from worker.queue.store import SCHEMA_VERSION, Queue

APP_SCHEMA = Path(__file__).parents[1] / "fixtures" / "app_schema.sql"
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


def test_fresh_database_migrates_and_a_second_run_changes_nothing(empty_db_url: str) -> None:
    queue = Queue(empty_db_url, "w")
    assert queue.schema_version() is None
    assert queue.migrate() == (None, SCHEMA_VERSION)
    first = snapshot(empty_db_url)
    assert queue.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
    assert snapshot(empty_db_url) == first
    queue.close()


def test_app_database_upgrades_idempotently_without_losing_data(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(APP_SCHEMA.read_text().encode())
    before = snapshot(empty_db_url)
    queue = Queue(empty_db_url, "w")
    queue.migrate()
    once = snapshot(empty_db_url)
    queue.migrate()
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
    assert queue.requeue_stale(0.001) == []
    queue.close()


def test_app_role_inserting_a_job_fires_the_notify_trigger(empty_db_url: str) -> None:
    """The app inserts jobs as its own role, which has no rights on schema apelier."""
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(APP_SCHEMA.read_text().encode())
    queue = Queue(empty_db_url, "w")
    queue.migrate()
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
