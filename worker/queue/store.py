"""The queue: the only Python that speaks SQL. Statements are loaded by name from ``sql/``.

``sql/schema.sql``, ``migrate.sql``, ``functions.sql``, ``realtime.sql`` and
``policies.sql`` build or upgrade the database (``apelier-worker migrate``);
``sql/queries.sql`` holds the named statements this module runs. Connections
are autocommit and never use server-side prepared statements, so the worker
also runs behind a transaction pooler (where only LISTEN is lost: it polls).
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

# Bumped whenever the worker starts relying on SQL an older migration lacks, so a worker refuses a
# database that was not migrated for it. 2: the trigger that ends a failed style training
# (sql/migrate.sql, apelier_fail_style_training). 3: apelier.start_style_training (sql/functions.sql).
SCHEMA_VERSION = 3
MIGRATION_FILES = ("schema.sql", "migrate.sql", "functions.sql", "realtime.sql", "policies.sql")
JOB_TYPES = ("gallery", "restyle", "train_style")
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """``sql/`` beside the package (a source checkout) or installed inside it (a wheel)."""
    beside = Path(__file__).resolve().parents[2] / "sql"
    if beside.is_dir():
        return beside
    return Path(str(resources.files("worker") / "sql"))


@cache
def queries() -> dict[str, str]:
    """Every ``-- name: x`` block of ``sql/queries.sql``, by name."""
    text = (sql_dir() / "queries.sql").read_text()
    parts = _NAME.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise ValueError(f"sql/queries.sql defines {name!r} twice")
        found[name] = body.strip()
    return found


def q(name: str) -> str:
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries.sql") from None


@dataclass(frozen=True)
class Job:
    """A claimed ``processing_jobs`` row."""

    id: str
    job_type: str
    photographer_id: str
    gallery_id: str | None
    style_profile_id: str | None
    payload: dict[str, Any]
    settings_override: dict[str, Any]
    attempts: int
    max_attempts: int
    progress: dict[str, Any]
    created_at: Any = None
    started_at: Any = None  # set by the first claim, on the database's clock
    # This claim is the job's first (its wait in the queue ends now). Not ``attempts == 1``: a release
    # on shutdown gives the attempt back, and the app's re-queue resets the count to 0.
    first_claim: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(
            id=str(row["id"]),
            job_type=row.get("job_type") or "gallery",
            photographer_id=str(row["photographer_id"]),
            gallery_id=str(row["gallery_id"]) if row.get("gallery_id") else None,
            style_profile_id=str(row["style_profile_id"]) if row.get("style_profile_id") else None,
            payload=row.get("payload") or {},
            settings_override=row.get("settings_override") or {},
            attempts=int(row.get("attempts") or 0),
            max_attempts=int(row.get("max_attempts") or 3),
            progress=row.get("progress") or {},
            created_at=row.get("created_at"),
            started_at=row.get("started_at"),
            # The claim sets heartbeat_at to now(), and started_at too on the first claim only.
            first_claim=row.get("started_at") is not None and row.get("started_at") == row.get("heartbeat_at"),
        )


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    """An autocommit connection with dict rows and no server-side prepared statements."""
    conn = psycopg.connect(url, autocommit=True, row_factory=dict_row, prepare_threshold=None, connect_timeout=10)
    return conn


class Queue:
    """Queue operations for one worker over one connection (use one ``Queue`` per thread)."""

    def __init__(self, url: str, worker_id: str) -> None:
        self.url = url
        self.worker_id = worker_id
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    # -- connection ---------------------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _one(self, query: str, /, **params: Any) -> dict[str, Any] | None:
        try:
            cur = self.conn.execute(q(query), _adapt(params))
            return cur.fetchone()
        except psycopg.OperationalError:
            self.close()  # reconnect next time
            raise

    def _all(self, query: str, /, **params: Any) -> list[dict[str, Any]]:
        try:
            return self.conn.execute(q(query), _adapt(params)).fetchall()
        except psycopg.OperationalError:
            self.close()
            raise

    # -- schema -------------------------------------------------------------------------------
    def migrate(self) -> tuple[int | None, int]:
        """Create or upgrade every table and function, in one transaction. Idempotent."""
        before = self.schema_version()
        with self.conn.transaction():
            self.conn.execute(q("migration_lock"))
            for name in MIGRATION_FILES:
                self.conn.execute((sql_dir() / name).read_text().encode())
            self.conn.execute(q("set_schema_version"), {"version": SCHEMA_VERSION})
        return before, SCHEMA_VERSION

    def schema_version(self) -> int | None:
        row = self._one("schema_exists")
        if not row or not row["present"]:
            return None
        row = self._one("schema_version")
        return int(row["version"]) if row else None

    # -- the job lifecycle --------------------------------------------------------------------
    def claim(self, job_types: Sequence[str] = JOB_TYPES) -> Job | None:
        row = self._one("claim_job", worker=self.worker_id, job_types=list(job_types))
        return Job.from_row(row) if row else None

    def heartbeat(self, job_id: str) -> str:
        row = self._one("heartbeat", job=job_id, worker=self.worker_id)
        return str(row["state"]) if row else "deleted"

    def update_progress(
        self,
        job_id: str,
        *,
        phase: str,
        processed: int,
        total: int,
        progress: dict[str, Any],
        phase_timings: dict[str, Any],
    ) -> str:
        row = self._one(
            "update_progress",
            job=job_id,
            worker=self.worker_id,
            phase=phase,
            processed=processed,
            total=total,
            progress=Jsonb(progress),
            phase_timings=Jsonb(phase_timings),
        )
        return str(row["state"]) if row else "deleted"

    def finish_photo(self, job_id: str, photo_id: str, fields: dict[str, Any], *, bill: bool = True) -> str:
        row = self._one(
            "finish_photo", job=job_id, worker=self.worker_id, photo=photo_id, fields=Jsonb(fields), bill=bill
        )
        return str(row["state"]) if row else "deleted"

    def fail_photo(self, job_id: str, photo_id: str, error: dict[str, Any]) -> str:
        row = self._one("fail_photo", job=job_id, worker=self.worker_id, photo=photo_id, error=Jsonb(error))
        return str(row["state"]) if row else "deleted"

    def merge_photo_suggestions(self, job_id: str, suggestions: dict[str, dict[str, Any]]) -> int:
        row = self._one("merge_photo_suggestions", job=job_id, worker=self.worker_id, suggestions=Jsonb(suggestions))
        return int(row["updated"]) if row else 0

    def complete(
        self,
        job_id: str,
        *,
        processed: int,
        total: int,
        progress: dict[str, Any],
        phase_timings: dict[str, Any],
        summary: str | None,
    ) -> bool:
        row = self._one(
            "complete_job",
            job=job_id,
            worker=self.worker_id,
            processed=processed,
            total=total,
            progress=Jsonb(progress),
            phase_timings=Jsonb(phase_timings),
            summary=summary,
        )
        return bool(row and row["ok"])

    def fail(self, job_id: str, error: str, retry_in_s: float | None) -> str:
        row = self._one("fail_job", job=job_id, worker=self.worker_id, error=error, retry_in_s=retry_in_s)
        return str(row["state"]) if row else "deleted"

    def release(self, job_id: str) -> bool:
        row = self._one("release_job", job=job_id, worker=self.worker_id)
        return bool(row and row["ok"])

    def ack_cancel(self, job_id: str, processed: int, progress: dict[str, Any]) -> bool:
        row = self._one("ack_cancel", job=job_id, worker=self.worker_id, processed=processed, progress=Jsonb(progress))
        return bool(row and row["ok"])

    def cancel(self, job_id: str) -> str | None:
        row = self._one("cancel_job", job=job_id)
        return str(row["status"]) if row and row["status"] else None

    def requeue_stale(self, lease_s: float) -> list[dict[str, Any]]:
        return self._all("requeue_stale", lease_s=lease_s)

    def pending(self, job_types: Sequence[str] = JOB_TYPES) -> tuple[int, int]:
        row = self._one("queue_pending", job_types=list(job_types))
        return (int(row["queued"]), int(row["processing"])) if row else (0, 0)

    def worker_seen(
        self,
        *,
        hostname: str,
        pid: int,
        version: str,
        device: str,
        state: str,
        job_id: str | None,
        info: dict[str, Any],
    ) -> None:
        self._one(
            "worker_seen",
            worker=self.worker_id,
            hostname=hostname,
            pid=pid,
            version=version,
            device=device,
            state=state,
            job=job_id,
            info=Jsonb(info),
        )

    # -- reads the runners need ---------------------------------------------------------------
    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self._one("get_job", job=job_id)

    def gallery(self, gallery_id: str) -> dict[str, Any] | None:
        return self._one("get_gallery", gallery=gallery_id)

    def gallery_photos(self, gallery_id: str) -> list[dict[str, Any]]:
        return self._all("gallery_photos", gallery=gallery_id)

    def gallery_filenames(self, gallery_id: str) -> list[dict[str, Any]]:
        return self._all("gallery_filenames", gallery=gallery_id)

    def gallery_analysis(self, gallery_id: str) -> list[dict[str, Any]]:
        return self._all("gallery_analysis", gallery=gallery_id)

    def style_profile(self, profile_id: str) -> dict[str, Any] | None:
        return self._one("get_style_profile", profile=profile_id)

    def start_style_training(self, job_id: str) -> str:
        """Move a ``train_style`` job's profile to 'training' if the job is still ours and processing.

        Returns the job's state for this worker ('processing' when the profile was moved), as
        :meth:`heartbeat` does: a cancel that came first leaves the profile as it was.
        """
        row = self._one("start_style_training", job=job_id, worker=self.worker_id)
        return str(row["state"]) if row else "deleted"

    def update_style_training(
        self,
        profile_id: str,
        *,
        training_status: str,
        training_method: str | None = None,
        model_key: str | None = None,
        model_filename: str | None = None,
        training_time_s: float | None = None,
        pairs_used: int | None = None,
        training_error: str | None = None,
    ) -> None:
        self._one(
            "update_style_training",
            profile=profile_id,
            training_status=training_status,
            training_method=training_method,
            model_key=model_key,
            model_filename=model_filename,
            training_time_s=training_time_s,
            pairs_used=pairs_used,
            training_error=training_error,
        )

    # -- what the app does (for `enqueue`, the demo and tests) --------------------------------
    def enqueue(
        self,
        *,
        photographer_id: str,
        gallery_id: str | None = None,
        style_profile_id: str | None = None,
        job_type: str = "gallery",
        payload: dict[str, Any] | None = None,
        priority: int = 100,
        settings_override: dict[str, Any] | None = None,
    ) -> str:
        total = 0
        if gallery_id is not None:
            row = self._one("count_gallery_photos", gallery=gallery_id)
            total = int(row["n"]) if row else 0
            if payload and payload.get("photo_ids"):
                total = len(payload["photo_ids"])
        row = self._one(
            "insert_job",
            gallery=gallery_id,
            photographer=photographer_id,
            style=style_profile_id,
            total=total,
            job_type=job_type,
            payload=Jsonb(payload or {}),
            priority=priority,
            settings_override=Jsonb(settings_override) if settings_override is not None else None,
        )
        assert row is not None
        return str(row["id"])

    def upsert_photographer(self, photographer_id: str, name: str, email: str | None = None) -> str:
        row = self._one("upsert_photographer", id=photographer_id, name=name, email=email)
        assert row is not None
        return str(row["id"])

    def insert_gallery(self, photographer_id: str, title: str) -> str:
        row = self._one("insert_gallery", photographer=photographer_id, title=title)
        assert row is not None
        return str(row["id"])

    def insert_photo(
        self,
        *,
        photographer_id: str,
        gallery_id: str,
        key: str,
        filename: str,
        size: int | None = None,
        mime: str | None = None,
        sort_order: int = 0,
    ) -> str:
        row = self._one(
            "insert_photo",
            gallery=gallery_id,
            photographer=photographer_id,
            key=key,
            filename=filename,
            size=size,
            mime=mime,
            sort_order=sort_order,
        )
        assert row is not None
        return str(row["id"])

    def insert_style_profile(self, photographer_id: str, name: str, settings: dict[str, Any] | None = None) -> str:
        row = self._one("insert_style_profile", photographer=photographer_id, name=name, settings=Jsonb(settings or {}))
        assert row is not None
        return str(row["id"])

    def gallery_photo_rows(self, gallery_id: str) -> list[dict[str, Any]]:
        return self._all("gallery_photo_rows", gallery=gallery_id)

    def images_edited_count(self, photographer_id: str) -> int:
        row = self._one("photographer_billing", photographer=photographer_id)
        return int(row["images_edited_count"] or 0) if row else 0

    # -- operator views -----------------------------------------------------------------------
    def status_report(self, *, workers_within_s: float = 300, failures: int = 5) -> dict[str, list[dict[str, Any]]]:
        return {
            "queue": self._all("queue_depth"),
            "in_flight": self._all("jobs_in_flight"),
            "workers": self._all("workers_recent", within_s=workers_within_s),
            "failures": self._all("recent_failures", limit=failures),
        }


class Listener:
    """A dedicated connection LISTENing on ``apelier_jobs``: wakes the daemon when a job is queued.

    Behind a transaction pooler LISTEN does not work; ``wait`` then just sleeps out its timeout
    and the daemon finds jobs by polling.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def start(self) -> bool:
        try:
            self._conn = connect(self.url)
            self._conn.execute(q("listen"))
            return True
        except psycopg.Error:
            self.close()
            return False

    def wait(self, timeout_s: float) -> bool:
        """Block until a job is queued (True) or ``timeout_s`` passes (False)."""
        if self._conn is None and not self.start():
            time.sleep(timeout_s)
            return False
        assert self._conn is not None
        try:
            got = False
            for _ in self._conn.notifies(timeout=timeout_s, stop_after=1):
                got = True
            # Swallow any further notifications that arrived meanwhile.
            while select.select([self._conn.fileno()], [], [], 0)[0]:
                if not list(self._conn.notifies(timeout=0, stop_after=8)):
                    break
            return got
        except psycopg.Error:
            self.close()
            return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _adapt(params: dict[str, Any]) -> dict[str, Any]:
    """dicts passed as plain values become JSON."""
    return {k: (Jsonb(v) if isinstance(v, dict) else v) for k, v in params.items()}
