"""An in-memory double of the queue's database, for tests of the daemon and the jobs that do not test SQL.

:class:`MemoryDatabase` holds the app's tables and the worker's in dicts and answers the named
statements of ``sql/queries.sql`` that the job lifecycle (``store.py``), the reads of the app's
tables (``app_data.py``) and the app's inserts (``admin.py``) run, with the semantics of their SQL
functions and triggers: leases checked on every write, attempts counted at claim, billing once per
photo, the re-queue reset, a failed or canceled training ending its profile's training, a NOTIFY
when a job becomes claimable, runs and photos in flight (attempts given back, photos that kill
their worker failed alone), a word on every photo a failed or canceled job did not edit, outputs
not yet recorded, chunks of a split job (claimed, leased, requeued, the last one out finishing the
job, a cancel reaching each). It plugs in at the connection seam (``connection.py``), so the
stores' own Python is the same as in production::

    db = MemoryDatabase()
    queue = db.queue("test-worker")          # .jobs, .app, .admin, as over PostgreSQL
    Daemon(runtime, db, drain=True).run()    # the daemon takes it where it takes a URL

It runs no SQL (no ``migrate``, no status report; ``schema_version`` is what it was built with),
and every statement holds one lock: concurrency is serialised, not tested. Real PostgreSQL stays
the reference: ``tests/integration/test_queue_contract.py`` runs the same scenario on both.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg.errors

from worker.queue.connection import Row
from worker.queue.database import Queue
from worker.queue.migrations import latest_version

ENDED = ("completed", "failed", "canceled", "delivered")
# apelier.end_attempt and requeue_stale: attempts given back in a row without a photo edited before
# they count anyway. (A photo is failed alone at its max_attempts + 1-th death.)
FREE_STREAK = 10
JOB_TYPES_ALLOWED = ("gallery", "restyle", "train_style")
CHUNKS = "apelier:chunks"  # locked_by of a split job (sql/migrations/0008_job_chunks.sql)
EDITED = ("edited", "approved", "delivered")
Handler = Callable[..., list[Row]]
_HANDLERS: dict[str, Handler] = {}


def _query(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _HANDLERS[name] = fn
        return fn

    return register


def implemented_queries() -> frozenset[str]:
    """The named statements the double answers."""
    return frozenset(_HANDLERS)


def _json(value: Any) -> Any:
    """What a jsonb column gives back: a fresh copy, through JSON."""
    return json.loads(json.dumps(value))


def _text(value: Any) -> str | None:
    """``->>``: a JSON string as it is, anything else as its JSON text, null as NULL."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise psycopg.errors.InvalidTextRepresentation(f'invalid input syntax for type uuid: "{value}"') from None


def _find(table: dict[uuid.UUID, Row], key: Any) -> Row | None:
    """The row with this id (a ``WHERE id = %s``; NULL finds nothing)."""
    found = _uuid(key)
    return None if found is None else table.get(found)


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


class MemoryDatabase:
    """The tables, one lock, a clock (``advance`` moves it on) and the NOTIFY count."""

    def __init__(self, *, schema_version: int | None = None) -> None:
        self.schema_version = latest_version() if schema_version is None else schema_version
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.notifications = 0
        self.offset = timedelta(0)
        self._seq = itertools.count()
        self.order: dict[uuid.UUID, int] = {}
        self.photographers: dict[uuid.UUID, Row] = {}
        self.galleries: dict[uuid.UUID, Row] = {}
        self.photos: dict[uuid.UUID, Row] = {}
        self.style_profiles: dict[uuid.UUID, Row] = {}
        self.jobs: dict[uuid.UUID, Row] = {}
        self.billed_photos: dict[uuid.UUID, Row] = {}
        self.workers: dict[str, Row] = {}
        self.job_runs: dict[uuid.UUID, Row] = {}
        self.photos_in_flight: dict[tuple[uuid.UUID, uuid.UUID], Row] = {}
        self.pending_outputs: dict[tuple[uuid.UUID, str], Row] = {}
        self.job_chunks: dict[tuple[uuid.UUID, int], Row] = {}

    # -- what tests hold ----------------------------------------------------------------------
    def queue(self, worker_id: str) -> Queue:
        return Queue(MemoryConnection(self), worker_id)

    def listener(self) -> MemoryListener:
        return MemoryListener(self)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        """Move the database's clock on (leases, backoff)."""
        with self.lock:
            self.offset += timedelta(seconds=seconds)

    def update_job(self, job_id: str, **changes: Any) -> None:
        """The app's own UPDATE of a job row (its re-queue, ``status='queued'``), triggers included."""
        with self.lock:
            job = _find(self.jobs, job_id)
            if job is None:
                raise KeyError(f"no job {job_id}")
            self._update_job(job, **changes)

    def delete_job(self, job_id: str) -> None:
        """The app deletes finished jobs (and sometimes running ones)."""
        with self.lock:
            row = _find(self.jobs, job_id)
            if row is not None:
                del self.jobs[row["id"]]
                self.job_runs.pop(row["id"], None)  # ON DELETE CASCADE
                for key in self._chunk_keys(row["id"]):
                    del self.job_chunks[key]
                self._drop_in_flight(row["id"], lambda f: True)

    def execute(self, name: str, params: dict[str, Any]) -> list[Row]:
        handler = _HANDLERS.get(name)
        if handler is None:
            raise NotImplementedError(f"the in-memory database does not answer {name!r}; use PostgreSQL")
        with self.lock:
            return copy.deepcopy(handler(self, **params))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            tables = (
                *("photographers", "galleries", "photos", "style_profiles", "jobs", "billed_photos", "workers"),
                *("job_runs", "photos_in_flight", "pending_outputs", "job_chunks"),
            )
            saved = {t: copy.deepcopy(getattr(self, t)) for t in tables}
            try:
                yield
            except BaseException:
                for t, rows in saved.items():
                    setattr(self, t, rows)
                raise

    # -- triggers -----------------------------------------------------------------------------
    def _notify(self) -> None:
        self.notifications += 1
        self.changed.notify_all()

    def _update_job(self, job: Row, **changes: Any) -> None:
        """An UPDATE of processing_jobs, with the triggers of sql/migrations/0002_queue.sql, 0006 and 0007."""
        old_status, old_worker = job["status"], job["locked_by"]
        job.update(changes)
        if "status" in changes:
            new_status = job["status"]
            if new_status == "queued" and old_status in ENDED:  # apelier_reset_requeued_job
                job.update(attempts=0, locked_by=None, heartbeat_at=None, run_after=min(job["run_after"], self.now()))
            if new_status == "queued" and old_status != "queued":  # apelier_notify_job_requeued
                self._notify()
            if new_status in ("failed", "canceled") and old_status != new_status and job["job_type"] == "train_style":
                self._fail_style_training(job, old_status)  # apelier_fail_style_training
            if new_status in ENDED and old_status != new_status:
                self._job_ended(job, old_status)  # apelier_job_ended
        worker = job["locked_by"]
        if "locked_by" in changes and job["status"] == "processing" and worker is not None and worker != old_worker:
            self._open_job_run(job)  # apelier_open_job_run

    def _drop_in_flight(self, job_id: uuid.UUID, which: Callable[[Row], bool]) -> None:
        for key in [k for k, f in self.photos_in_flight.items() if k[0] == job_id and which(f)]:
            del self.photos_in_flight[key]

    def _open_job_run(self, job: Row) -> None:
        """apelier.open_job_run: a claim opens a run; what an earlier run left in flight without dying is not."""
        run = self.job_runs.setdefault(job["id"], {"job_id": job["id"], "free_streak": 0})
        run.update(worker=job["locked_by"], claimed_at=self.now(), stage="setup", edited=0)
        self._drop_in_flight(job["id"], lambda f: f["deaths"] == 0)
        for key, f in self.photos_in_flight.items():
            if key[0] == job["id"]:
                f["worker"] = None

    def _job_ended(self, job: Row, old_status: str) -> None:
        """apelier.job_ended: every photo a failed or canceled gallery/restyle job did not edit says why."""
        status, kind = job["status"], job["job_type"]
        if status in ("failed", "canceled") and kind in ("gallery", "restyle") and job["gallery_id"] is not None:
            # The app's cancel: 'failed' while a worker holds the job, or while it waits in the queue.
            canceled = status == "canceled" or job["locked_by"] is not None or old_status == "queued"
            self._explain_unedited(job, canceled)
        if status in ("failed", "canceled"):
            canceled = status == "canceled" or job["locked_by"] is not None or old_status == "queued"
            now = self.now()
            for c in self._chunks_of(job["id"]):
                if c["status"] in ("queued", "processing"):
                    c.update(status="canceled", ended_at=now)
                    if not canceled:  # a failure takes every chunk from its worker
                        c.update(locked_by=None, heartbeat_at=None)
            if canceled and job["locked_by"] == CHUNKS and not self._chunk_held(job["id"]):
                job.update(
                    locked_by=None, heartbeat_at=None, completed_at=job["completed_at"] or now, current_phase="canceled"
                )
        self._drop_in_flight(job["id"], lambda f: f["isolated_at"] is None)
        self.job_runs.pop(job["id"], None)

    def _explain_unedited(self, job: Row, canceled: bool) -> None:
        restyle = job["job_type"] == "restyle"
        what, after = (
            ("restyled", "it keeps its previous edit") if restyle else ("edited", "queue the gallery again to edit it")
        )
        if canceled:
            reason = f"not {what}: the job was canceled before it got to this photo; {after}"
        else:
            cause = (job["error_log"] if job["error_log"] is not None else "see the worker logs")[:300]
            reason = f"not {what}: the job failed before it got to this photo ({cause}); {after}"
        ids = (job["payload"] or {}).get("photo_ids")
        ids = ids if isinstance(ids, list) else []
        kind = "JobCanceled" if canceled else "JobFailed"
        error = {"phase": "job", "reason": reason, "job_id": str(job["id"]), "kind": kind}
        for p in self._photos_of(job["gallery_id"]):
            ai_edits = p["ai_edits"] or {}
            if p["photographer_id"] != job["photographer_id"] or p["is_culled"]:
                continue
            if restyle:
                covered = str(p["id"]) in ids and _text(ai_edits.get("job_id")) != str(job["id"])
            else:
                covered = p["status"] not in ("edited", "approved", "delivered")
            own = ai_edits.get("error")
            own_kind = _text(own.get("kind")) if isinstance(own, dict) else None
            if covered and own_kind in (None, "", "JobFailed", "JobCanceled"):
                p.update(needs_review=True, ai_edits={**ai_edits, "error": error}, updated_at=self.now())

    def _fail_style_training(self, job: Row, old_status: str) -> None:
        profile = self.style_profiles.get(job["style_profile_id"])
        if profile is None or profile["photographer_id"] != job["photographer_id"]:
            return
        if profile["training_status"] != "training":
            return
        # The app's cancel: 'failed' while a worker still holds the job, or on a queued one (migration 10).
        canceled = job["status"] == "canceled" or (
            job["status"] == "failed" and (job["locked_by"] is not None or old_status == "queued")
        )
        keep = canceled and (profile["model_key"] is not None or profile["model_weights_key"] is not None)
        if not canceled:
            error = job["error_log"] if job["error_log"] is not None else "training failed; see the worker logs"
        else:
            error = None if keep else "training canceled"
        now = self.now()
        profile.update(
            training_status="ready" if keep else "error",
            status="ready" if keep else "error",
            training_error=error,
            training_completed_at=profile["training_completed_at"] if keep else now,
            updated_at=now,
        )

    def _state(self, job_id: Any, worker: str) -> str:
        """apelier.job_state: the status while leased to ``worker`` ('failed' by the app while leased is
        its cancel: 'canceled'), 'lost' if not leased to it, 'deleted' if gone."""
        job = _find(self.jobs, job_id)
        if job is None:
            return "deleted"
        if job["locked_by"] == CHUNKS and self._held_chunk(job["id"], worker, any_status=True) is not None:
            return "canceled" if job["status"] == "failed" else str(job["status"])
        if job["locked_by"] != worker:
            return "lost"
        return "canceled" if job["status"] == "failed" else str(job["status"])

    # -- chunks (sql/migrations/0008_job_chunks.sql) -------------------------------------------
    def _chunk_keys(self, job_id: uuid.UUID) -> list[tuple[uuid.UUID, int]]:
        return sorted(k for k in self.job_chunks if k[0] == job_id)

    def _chunks_of(self, job_id: uuid.UUID) -> list[Row]:
        return [self.job_chunks[k] for k in self._chunk_keys(job_id)]

    def _chunk_held(self, job_id: uuid.UUID) -> bool:
        return any(c["locked_by"] is not None for c in self._chunks_of(job_id))

    def _held_chunk(self, job_id: uuid.UUID, worker: str, *, any_status: bool = False) -> Row | None:
        """The chunk of the job ``worker`` holds (processing, or any status while it has not let go)."""
        for c in self._chunks_of(job_id):
            if c["locked_by"] == worker and (any_status or c["status"] == "processing"):
                return c
        return None

    def _split_holder(self, job_id: Any, worker: str) -> tuple[Row, Row] | None:
        """(job, chunk) when the job is split, processing, and ``worker`` holds one of its chunks processing."""
        job = _find(self.jobs, job_id)
        if job is None or job["locked_by"] != CHUNKS or job["status"] != "processing":
            return None
        chunk = self._held_chunk(job["id"], worker)
        return None if chunk is None else (job, chunk)

    def _chunk_counts(self, job_id: uuid.UUID) -> dict[str, int]:
        chunks = self._chunks_of(job_id)
        return {
            "total": len(chunks),
            "done": sum(c["status"] == "done" for c in chunks),
            "running": sum(c["status"] == "processing" for c in chunks),
        }

    def _requeue_chunk(self, chunk: Row, **changes: Any) -> None:
        chunk.update(status="queued", locked_by=None, heartbeat_at=None, stage="setup", edited=0, **changes)
        self._notify()

    @_query("split_job")
    def _split_job(
        self, *, job: str, worker: str, photos: list[str], chunk_size: int, processed: int, total: int
    ) -> list[Row]:
        row = self._leased(job, worker)
        if row is None or chunk_size < 1 or not photos:
            return [{"state": self._state(job, worker)}]
        for key in self._chunk_keys(row["id"]):
            del self.job_chunks[key]
        ids = [_uuid(p) for p in photos]
        for n, start in enumerate(range(0, len(ids), chunk_size)):
            self.job_chunks[(row["id"], n)] = {
                "job_id": row["id"],
                "chunk": n,
                "photo_ids": ids[start : start + chunk_size],
                "status": "queued",
                "attempts": 0,
                "run_after": self.now(),
                "locked_by": None,
                "heartbeat_at": None,
                "stage": "setup",
                "edited": 0,
                "free_streak": 0,
                "started_at": None,
                "ended_at": None,
            }
        self._update_job(
            row,
            locked_by=CHUNKS,
            heartbeat_at=self.now(),
            processed_images=processed,
            total_images=total,
            current_phase="split",
        )
        self._notify()
        return [{"state": "processing"}]

    @_query("claim_chunk")
    def _claim_chunk(self, *, worker: str, job_types: list[str]) -> list[Row]:
        now = self.now()
        if any(c["locked_by"] == worker for c in self.job_chunks.values()):
            return []
        ready = []
        for c in self.job_chunks.values():
            job = self.jobs.get(c["job_id"])
            if (
                job is not None
                and c["status"] == "queued"
                and c["run_after"] <= now
                and job["status"] == "processing"
                and job["locked_by"] == CHUNKS
                and job["job_type"] in job_types
            ):
                ready.append((job["priority"], job["created_at"], self.order[job["id"]], c["chunk"], c, job))
        if not ready:
            return []
        *_, chunk, job = min(ready, key=lambda r: r[:4])
        chunk.update(
            status="processing",
            attempts=chunk["attempts"] + 1,
            locked_by=worker,
            heartbeat_at=now,
            started_at=chunk["started_at"] or now,
            stage="setup",
            edited=0,
        )
        return [
            {
                "job": _json({k: str(v) if isinstance(v, uuid.UUID | datetime) else v for k, v in job.items()}),
                "chunk_no": chunk["chunk"],
                "chunk_count": len(self._chunk_keys(job["id"])),
                "chunk_attempts": chunk["attempts"],
                "chunk_photos": list(chunk["photo_ids"]),
            }
        ]

    @_query("end_chunk")
    def _end_chunk(self, *, job: str, worker: str) -> list[Row]:
        state = self._state(job, worker)
        if state != "processing":
            return [{"state": state}]
        held = self._split_holder(job, worker)
        if held is None:
            return [{"state": "lost"}]
        row, chunk = held
        chunk.update(status="done", locked_by=None, heartbeat_at=None, ended_at=self.now())
        if any(c["status"] != "done" for c in self._chunks_of(row["id"])):
            return [{"state": "done"}]
        self._update_job(row, locked_by=worker, heartbeat_at=self.now(), current_phase="finishing")
        return [{"state": "finalise"}]

    @_query("job_chunks")
    def _job_chunks(self, *, job: str) -> list[Row]:
        job_id = _uuid(job)
        assert job_id is not None
        names = ("chunk", "status", "attempts", "locked_by", "edited")
        return [{**{k: c[k] for k in names}, "photos": len(c["photo_ids"])} for c in self._chunks_of(job_id)]

    @_query("chunk_workers")
    def _chunk_workers(self, *, job: str) -> list[Row]:
        job_id = _uuid(job)
        assert job_id is not None
        ids = {p for c in self._chunks_of(job_id) for p in c["photo_ids"]}
        counts: dict[str | None, int] = {}
        for photo_id in ids:
            p = self.photos.get(photo_id)
            edits = (p or {}).get("ai_edits") or {}
            if p is not None and p["status"] in EDITED and _text(edits.get("job_id")) == str(job_id):
                who = _text(edits.get("worker"))
                counts[who] = counts.get(who, 0) + 1
        return [{"worker": w, "photos": n} for w, n in sorted(counts.items(), key=lambda i: (i[0] is None, i[0] or ""))]

    def _leased(self, job_id: Any, worker: str, *statuses: str) -> Row | None:
        job = _find(self.jobs, job_id)
        if job is None or job["locked_by"] != worker or job["status"] not in (statuses or ("processing",)):
            return None
        return job

    def _increment_images_edited(self, photographer_id: uuid.UUID, count: int) -> None:
        p = self.photographers.get(photographer_id)
        if p is None:
            return
        now = self.now()
        if p["billing_period_end"] <= now:
            start = _month_start(now)
            p.update(images_edited_count=count, billing_period_start=start, billing_period_end=_next_month(start))
        else:
            p["images_edited_count"] = (p["images_edited_count"] or 0) + count

    def _insert(self, table: dict[uuid.UUID, Row], row: Row) -> Row:
        now = self.now()
        row = {"id": uuid.uuid4(), "created_at": now, **row}
        if row["id"] in table:
            raise psycopg.errors.UniqueViolation(f"duplicate key value violates unique constraint: {row['id']}")
        table[row["id"]] = row
        self.order[row["id"]] = next(self._seq)
        return row

    def _require(self, table: dict[uuid.UUID, Row], key: uuid.UUID | None, what: str) -> None:
        if key is not None and key not in table:
            raise psycopg.errors.ForeignKeyViolation(f"{what} {key} is not present")

    def _photos_of(self, gallery: Any) -> list[Row]:
        gid = _uuid(gallery)
        return [p for p in self.photos.values() if p["gallery_id"] == gid]

    def _by_order(self, rows: list[Row], *fields: str) -> list[Row]:
        return sorted(rows, key=lambda r: (*(r[f] for f in fields), r["id"]))

    # -- the schema ---------------------------------------------------------------------------
    @_query("schema_tables")
    def _schema_tables(self) -> list[Row]:
        return [{"versioned": self.schema_version is not None, "legacy": self.schema_version is not None}]

    @_query("migrations_version")
    def _migrations_version(self) -> list[Row]:
        return [{"version": self.schema_version}]

    # -- the job lifecycle (sql/migrations/0003_functions.sql, 0006_app_cancel.sql) ------------
    @_query("claim_job")
    def _claim_job(self, *, worker: str, job_types: list[str]) -> list[Row]:
        now = self.now()
        ready = [
            j
            for j in self.jobs.values()
            if j["status"] == "queued" and j["run_after"] <= now and j["job_type"] in job_types
        ]
        if not ready:
            return []
        job = min(ready, key=lambda j: (j["priority"], j["created_at"], self.order[j["id"]]))
        self._update_job(
            job,
            status="processing",
            attempts=job["attempts"] + 1,
            locked_by=worker,
            heartbeat_at=now,
            started_at=job["started_at"] or now,
            completed_at=None,
            current_phase="starting",
        )
        return [job]

    @_query("heartbeat")
    def _heartbeat(self, *, job: str, worker: str) -> list[Row]:
        row = self._leased(job, worker)
        if row is not None:
            row["heartbeat_at"] = self.now()
        elif (held := self._split_holder(job, worker)) is not None:
            held[0]["heartbeat_at"] = held[1]["heartbeat_at"] = self.now()
        return [{"state": self._state(job, worker)}]

    @_query("start_style_training")
    def _start_style_training(self, *, job: str, worker: str) -> list[Row]:
        row = self._leased(job, worker)
        if row is None or row["job_type"] != "train_style":
            return [{"state": self._state(job, worker)}]
        now = self.now()
        row["heartbeat_at"] = now
        profile = self.style_profiles.get(row["style_profile_id"])
        if profile is not None and profile["photographer_id"] == row["photographer_id"]:
            profile.update(
                training_status="training",
                status="training",
                training_error=None,
                training_started_at=now,
                updated_at=now,
            )
        return [{"state": "processing"}]

    @_query("update_progress")
    def _update_progress(
        self,
        *,
        job: str,
        worker: str,
        phase: str,
        processed: int,
        total: int,
        progress: dict[str, Any],
        phase_timings: dict[str, Any],
    ) -> list[Row]:
        row = self._leased(job, worker)
        if row is not None:
            row.update(
                current_phase=phase,
                processed_images=processed,
                total_images=total,
                progress=_json(progress),
                phase_timings=_json(phase_timings),
                heartbeat_at=self.now(),
            )
        elif (held := self._split_holder(job, worker)) is not None:
            split = held[0]
            counts = {"processed": split["processed_images"], "total": split["total_images"]}
            split.update(
                current_phase=phase,
                progress={**_json(progress), **counts, "chunks": self._chunk_counts(split["id"])},
                phase_timings=_json(phase_timings),
                heartbeat_at=self.now(),
            )
        return [{"state": self._state(job, worker)}]

    @_query("finish_photo")
    def _finish_photo(self, *, job: str, worker: str, photo: str, fields: dict[str, Any], bill: bool) -> list[Row]:
        state = self._state(job, worker)
        if state != "processing":  # after a cancel nothing more is recorded or billed (migration 10)
            return [{"state": state}]
        fields = _json(fields)
        row = _find(self.photos, photo)
        if row is not None:

            def number(name: str, kind: Callable[[Any], Any]) -> Any:  # (p_fields->>'name')::kind
                value = fields.get(name)
                return None if value is None else kind(value)

            def given(name: str) -> Any:  # coalesce(p_fields->'name', name): a JSON null counts as given
                return fields[name] if name in fields else row[name]

            quality, scene = number("quality_score", int), _text(fields.get("scene_type"))
            row.update(
                edited_key=_text(fields.get("edited_key")),
                web_key=_text(fields.get("web_key")),
                thumb_key=_text(fields.get("thumb_key")),
                watermarked_key=_text(fields.get("watermarked_key")),
                width=number("width", int),
                height=number("height", int),
                exif_data=given("exif_data"),
                quality_score=row["quality_score"] if quality is None else quality,
                face_data=given("face_data"),
                scene_type=row["scene_type"] if scene is None else scene,
                ai_edits=fields.get("ai_edits", {}),
                edit_confidence=number("edit_confidence", float),
                needs_review=bool(fields.get("needs_review") or False),
                status="edited",
                updated_at=self.now(),
            )
            self._photo_recorded(_uuid(job), row, worker)
            split = self._split_holder(job, worker)
            if split is not None:  # a chunk's photo: the chunk's progress, and the job's count
                split[1].update(edited=split[1]["edited"] + 1, free_streak=0)
                total, done = split[0]["total_images"], split[0]["processed_images"] + 1
                split[0]["processed_images"] = min(total, done) if total > 0 else done
            if bill and row["id"] not in self.billed_photos:
                self.billed_photos[row["id"]] = {
                    "photo_id": row["id"],
                    "photographer_id": row["photographer_id"],
                    "job_id": _uuid(job),
                    "billed_at": self.now(),
                }
                self._increment_images_edited(row["photographer_id"], 1)
        return [{"state": state}]

    @_query("fail_photo")
    def _fail_photo(self, *, job: str, worker: str, photo: str, error: dict[str, Any]) -> list[Row]:
        state = self._state(job, worker)
        row = _find(self.photos, photo)
        if state in ("processing", "canceled") and row is not None:
            ai_edits = {**(row["ai_edits"] or {}), "error": _json(error)}
            row.update(needs_review=True, ai_edits=ai_edits, updated_at=self.now())
        if state in ("processing", "canceled"):
            mark = self.photos_in_flight.get((_uuid(job), _uuid(photo)))  # type: ignore[arg-type]
            if mark is not None and mark["isolated_at"] is None:
                del self.photos_in_flight[(mark["job_id"], mark["photo_id"])]
        return [{"state": state}]

    @_query("merge_photo_suggestions")
    def _merge_photo_suggestions(self, *, job: str, worker: str, suggestions: dict[str, Any]) -> list[Row]:
        if self._state(job, worker) != "processing":
            return [{"updated": 0}]
        gallery = (_find(self.jobs, job) or {}).get("gallery_id")
        updated = 0
        for key, value in _json(suggestions).items():
            row = _find(self.photos, key)
            if row is not None and row["gallery_id"] == gallery:
                row.update(ai_edits={**(row["ai_edits"] or {}), "culling": value}, updated_at=self.now())
                updated += 1
        return [{"updated": updated}]

    @_query("complete_job")
    def _complete_job(
        self,
        *,
        job: str,
        worker: str,
        processed: int,
        total: int,
        progress: dict[str, Any],
        phase_timings: dict[str, Any],
        summary: str | None,
    ) -> list[Row]:
        row = self._leased(job, worker)
        if row is not None:
            self._update_job(
                row,
                status="completed",
                completed_at=self.now(),
                current_phase="complete",
                processed_images=processed,
                total_images=total,
                progress=_json(progress),
                phase_timings=_json(phase_timings),
                error_log=summary,
                locked_by=None,
                heartbeat_at=None,
            )
        return [{"ok": row is not None}]

    @_query("fail_job")
    def _fail_job(self, *, job: str, worker: str, error: str, retry_in_s: float | None) -> list[Row]:
        row = self._leased(job, worker)
        if row is None:
            return [{"state": self._state(job, worker)}]
        now = self.now()
        final = retry_in_s is None
        self._update_job(
            row,
            status="failed" if final else "queued",
            run_after=row["run_after"] if final else now + timedelta(seconds=retry_in_s or 0),
            completed_at=now if final else None,
            current_phase="failed" if final else "retrying",
            error_log=error,
            locked_by=None,
            heartbeat_at=None,
        )
        return [{"state": row["status"]}]

    @_query("release_job")
    def _release_job(self, *, job: str, worker: str) -> list[Row]:
        row = self._leased(job, worker)
        if row is None and (held := self._split_holder(job, worker)) is not None:
            self._requeue_chunk(held[1], attempts=max(held[1]["attempts"] - 1, 0), run_after=self.now())
            return [{"ok": True}]
        if row is not None:
            self._update_job(
                row,
                status="queued",
                attempts=max(row["attempts"] - 1, 0),
                locked_by=None,
                heartbeat_at=None,
                run_after=self.now(),
                current_phase="queued",
            )
        return [{"ok": row is not None}]

    @_query("ack_cancel")
    def _ack_cancel(self, *, job: str, worker: str, processed: int, progress: dict[str, Any]) -> list[Row]:
        row = self._leased(job, worker, "canceled", "failed")
        split = _find(self.jobs, job)
        ended = split is not None and split["status"] in ("canceled", "failed")
        if row is None and split is not None and ended and split["locked_by"] == CHUNKS:
            chunk = self._held_chunk(split["id"], worker, any_status=True)
            if chunk is None:
                return [{"ok": False}]
            now = self.now()
            status = "done" if chunk["status"] == "done" else "canceled"
            chunk.update(locked_by=None, heartbeat_at=None, ended_at=now, status=status)
            if not self._chunk_held(split["id"]):
                split.update(
                    locked_by=None,
                    heartbeat_at=None,
                    completed_at=split["completed_at"] or now,
                    current_phase="canceled",
                )
            return [{"ok": True}]
        if row is not None:
            row.update(
                locked_by=None,
                heartbeat_at=None,
                processed_images=processed,
                progress=_json(progress),
                completed_at=row["completed_at"] or self.now(),
                current_phase="canceled",
            )
        return [{"ok": row is not None}]

    @_query("cancel_job")
    def _cancel_job(self, *, job: str) -> list[Row]:
        row = _find(self.jobs, job)
        if row is None or row["status"] not in ("queued", "processing"):
            return [{"status": None}]
        self._update_job(
            row,
            status="canceled",
            current_phase="canceled",
            completed_at=self.now() if row["locked_by"] is None else row["completed_at"],
        )
        return [{"status": "canceled"}]

    @_query("requeue_stale")
    def _requeue_stale(self, *, lease_s: float) -> list[Row]:
        now = self.now()
        out = []
        for row in list(self.jobs.values()):
            beat = row["heartbeat_at"]
            if row["status"] != "processing" or beat is None or beat >= now - timedelta(seconds=lease_s):
                continue
            if row["locked_by"] == CHUNKS:  # its chunks have the leases
                continue
            previous = row["locked_by"]
            run = self.job_runs.get(row["id"])
            run = run if run is not None and run["worker"] == previous else None
            repeat, isolated = self._deaths(row, previous)
            progress = (run is not None and run["edited"] > 0) or isolated > 0
            counted = not progress and (
                run is None or run["stage"] == "setup" or repeat or run["free_streak"] >= FREE_STREAK
            )
            self._count_streak(row["id"], progress=progress, counted=counted)
            used_up = counted and row["attempts"] >= row["max_attempts"]
            self._update_job(
                row,
                status="failed" if used_up else "queued",
                current_phase="failed" if used_up else "queued",
                attempts=row["attempts"] if counted else max(row["attempts"] - 1, 0),
                error_log=(
                    f"the worker running this job stopped responding (attempt {row['attempts']} of "
                    f"{row['max_attempts']}); check the worker logs"
                )
                if used_up
                else row["error_log"],
                completed_at=now if used_up else None,
                run_after=now,
                locked_by=None,
                heartbeat_at=None,
            )
            out.append({"job_id": row["id"], "new_status": row["status"], "previous_worker": previous})
        for key in sorted(self.job_chunks):
            chunk = self.job_chunks[key]
            beat = chunk["heartbeat_at"]
            if chunk["locked_by"] is None or beat is None or beat >= now - timedelta(seconds=lease_s):
                continue
            out.append(self._requeue_stale_chunk(self.jobs[key[0]], chunk))
        return out

    def _requeue_stale_chunk(self, row: Row, chunk: Row) -> Row:
        """requeue_stale for one chunk whose worker stopped heartbeating."""
        previous, now = chunk["locked_by"], self.now()
        if row["status"] != "processing" or row["locked_by"] != CHUNKS:  # ended (canceled): let go
            status = "done" if chunk["status"] == "done" else "canceled"
            chunk.update(locked_by=None, heartbeat_at=None, ended_at=now, status=status)
            if row["locked_by"] == CHUNKS and not self._chunk_held(row["id"]):
                row.update(
                    locked_by=None, heartbeat_at=None, completed_at=row["completed_at"] or now, current_phase="canceled"
                )
            return {"job_id": row["id"], "new_status": "canceled", "previous_worker": previous}
        repeat, isolated = self._deaths(row, previous)
        progress = chunk["edited"] > 0 or isolated > 0
        counted = not progress and (chunk["stage"] == "setup" or repeat or chunk["free_streak"] >= FREE_STREAK)
        if counted and chunk["attempts"] >= row["max_attempts"]:
            self._update_job(
                row,
                status="failed",
                current_phase="failed",
                error_log=(
                    f"the worker running part {chunk['chunk'] + 1} of this job stopped responding (attempt "
                    f"{chunk['attempts']} of {row['max_attempts']}); check the worker logs"
                ),
                completed_at=now,
                run_after=now,
                locked_by=None,
                heartbeat_at=None,
            )
            return {"job_id": row["id"], "new_status": "failed", "previous_worker": previous}
        self._requeue_chunk(
            chunk,
            attempts=chunk["attempts"] if counted else max(chunk["attempts"] - 1, 0),
            free_streak=0 if progress else chunk["free_streak"] if counted else chunk["free_streak"] + 1,
            run_after=now,
        )
        return {"job_id": row["id"], "new_status": "queued", "previous_worker": previous}

    def _deaths(self, job: Row, worker: str | None) -> tuple[bool, int]:
        """A run of ``job`` died: one more death for each photo it was processing; a photo at its
        max_attempts + 1-th is failed alone. Returns (a photo that had killed a worker alone before was
        in flight, photos isolated now)."""
        repeat, isolated = False, 0
        for mark in [f for k, f in self.photos_in_flight.items() if k[0] == job["id"] and f["worker"] == worker]:
            mark.update(deaths=mark["deaths"] + 1, worker=None)
            repeat = repeat or mark["deaths"] > 2  # it had already killed a worker alone
            if mark["deaths"] <= job["max_attempts"]:
                continue
            mark["isolated_at"] = self.now()
            photo = self.photos.get(mark["photo_id"])
            if photo is None:
                continue
            isolated += 1
            reason = (
                f"processing this photo stopped the worker {mark['deaths']} times (out of memory?), so it was "
                "skipped; export it with fewer megapixels and upload it again"
            )
            error = {"phase": "processing", "job_id": str(job["id"]), "kind": "WorkerCrash", "reason": reason}
            photo.update(
                needs_review=True, ai_edits={**(photo["ai_edits"] or {}), "error": error}, updated_at=self.now()
            )
        return repeat, isolated

    def _count_streak(self, job_id: uuid.UUID, *, progress: bool, counted: bool) -> None:
        run = self.job_runs.get(job_id)
        if run is not None:
            run["free_streak"] = 0 if progress else run["free_streak"] if counted else run["free_streak"] + 1

    @_query("end_attempt")
    def _end_attempt(self, *, job: str, worker: str, error: str, retry_in_s: float | None, outside: bool) -> list[Row]:
        held = self._split_holder(job, worker)
        if held is not None:
            return [{"state": self._end_chunk_attempt(held, worker, error, retry_in_s=retry_in_s, outside=outside)}]
        row = self._leased(job, worker)
        if row is None:
            return [{"state": self._state(job, worker)}]
        run = self.job_runs.get(row["id"])
        run = run if run is not None and run["worker"] == worker else None
        progress = run is not None and run["edited"] > 0
        counted = not progress and (not outside or (run is not None and run["free_streak"] >= FREE_STREAK))
        failed = retry_in_s is None or (counted and row["attempts"] >= row["max_attempts"])
        self._count_streak(row["id"], progress=progress, counted=counted)
        self._drop_in_flight(row["id"], lambda f: f["worker"] == worker and f["deaths"] == 0)
        for key, mark in self.photos_in_flight.items():
            if key[0] == row["id"] and mark["worker"] == worker:
                mark["worker"] = None
        now = self.now()
        self._update_job(
            row,
            status="failed" if failed else "queued",
            attempts=row["attempts"] if counted else max(row["attempts"] - 1, 0),
            run_after=row["run_after"] if failed else now + timedelta(seconds=retry_in_s or 0),
            completed_at=now if failed else None,
            current_phase="failed" if failed else "retrying",
            error_log=error,
            locked_by=None,
            heartbeat_at=None,
        )
        return [{"state": row["status"]}]

    def _end_chunk_attempt(
        self, held: tuple[Row, Row], worker: str, error: str, *, retry_in_s: float | None, outside: bool
    ) -> str:
        """end_attempt for a chunk's holder: the chunk back to the queue, or the job failed."""
        row, chunk = held
        progress = chunk["edited"] > 0
        counted = not progress and (not outside or chunk["free_streak"] >= FREE_STREAK)
        failed = retry_in_s is None or (counted and chunk["attempts"] >= row["max_attempts"])
        self._drop_in_flight(row["id"], lambda f: f["worker"] == worker and f["deaths"] == 0)
        for key, mark in self.photos_in_flight.items():
            if key[0] == row["id"] and mark["worker"] == worker:
                mark["worker"] = None
        now = self.now()
        if not failed:
            self._requeue_chunk(
                chunk,
                attempts=chunk["attempts"] if counted else max(chunk["attempts"] - 1, 0),
                free_streak=0 if progress else chunk["free_streak"] if counted else chunk["free_streak"] + 1,
                run_after=now + timedelta(seconds=retry_in_s or 0),
            )
            return "queued"
        self._update_job(
            row,
            status="failed",
            completed_at=now,
            current_phase="failed",
            error_log=error,
            locked_by=None,
            heartbeat_at=None,
        )
        return "failed"

    @_query("job_setup_done")
    def _job_setup_done(self, *, job: str, worker: str) -> list[Row]:
        state = self._state(job, worker)
        run = self.job_runs.get(_uuid(job))  # type: ignore[arg-type]
        if state == "processing" and run is not None and run["worker"] == worker:
            run["stage"] = "photos"
        if state == "processing" and (held := self._split_holder(job, worker)) is not None:
            held[1]["stage"] = "photos"
        return [{"state": state}]

    @_query("photo_started")
    def _photo_started(self, *, job: str, worker: str, photo: str) -> list[Row]:
        state = self._state(job, worker)
        if state == "processing":
            job_id, photo_id = _uuid(job), _uuid(photo)
            assert job_id is not None and photo_id is not None
            mark = self.photos_in_flight.setdefault(
                (job_id, photo_id),
                {"job_id": job_id, "photo_id": photo_id, "deaths": 0, "isolated_at": None},
            )
            mark.update(worker=worker, started_at=self.now())
        return [{"state": state}]

    @_query("photo_processed")
    def _photo_processed(self, *, job: str, worker: str, photo: str, keys: list[str]) -> list[Row]:
        state = self._state(job, worker)
        if state != "processing":  # after a cancel nothing more is recorded, nor uploaded
            return [{"state": state}]
        job_id, photo_id = _uuid(job), _uuid(photo)
        assert job_id is not None and photo_id is not None
        mark = self.photos_in_flight.get((job_id, photo_id))
        if mark is not None and mark["worker"] == worker:
            if mark["deaths"] == 0:
                del self.photos_in_flight[(job_id, photo_id)]
            else:
                mark["worker"] = None
        for key in keys:
            self.pending_outputs[(job_id, key)] = {
                "job_id": job_id,
                "photo_id": photo_id,
                "key": key,
                "worker": worker,
                "written_at": self.now(),
            }
        return [{"state": state}]

    def _photo_recorded(self, job_id: uuid.UUID | None, photo: Row, worker: str) -> None:
        """finish_photo's part from migration 7: out of flight, recorded keys no longer pending, progress."""
        assert job_id is not None
        self.photos_in_flight.pop((job_id, photo["id"]), None)
        recorded = {photo["edited_key"], photo["web_key"], photo["thumb_key"], photo["watermarked_key"]} - {None}
        for key in [k for k, o in self.pending_outputs.items() if k[0] == job_id and o["photo_id"] == photo["id"]]:
            if key[1] in recorded:
                del self.pending_outputs[key]
        run = self.job_runs.get(job_id)
        if run is not None and run["worker"] == worker:
            run.update(edited=run["edited"] + 1, free_streak=0)

    @_query("photos_in_flight")
    def _photos_in_flight(self, *, job: str) -> list[Row]:
        job_id = _uuid(job)
        return [
            {"photo_id": f["photo_id"], "deaths": f["deaths"], "isolated": f["isolated_at"] is not None}
            for k, f in self.photos_in_flight.items()
            if k[0] == job_id and f["deaths"] > 0
        ]

    @_query("unrecorded_outputs")
    def _unrecorded_outputs(self, *, lease_s: float, limit: int) -> list[Row]:
        cutoff = self.now() - timedelta(seconds=lease_s)
        out = []
        for o in sorted(self.pending_outputs.values(), key=lambda o: o["written_at"]):
            job = self.jobs.get(o["job_id"])
            if o["written_at"] >= cutoff:
                continue
            if job is not None and (
                job["status"] in ("queued", "processing")
                or (job["locked_by"] is not None and job["heartbeat_at"] is not None and job["heartbeat_at"] >= cutoff)
            ):
                continue
            photo = self.photos.get(o["photo_id"])
            names = {photo[k] for k in ("edited_key", "web_key", "thumb_key", "watermarked_key")} if photo else set()
            owner = photo["photographer_id"] if photo else job["photographer_id"] if job else None
            out.append(
                {"job_id": o["job_id"], "key": o["key"], "photographer_id": owner, "referenced": o["key"] in names}
            )
        return out[:limit]

    @_query("own_unrecorded_outputs")
    def _own_unrecorded_outputs(self, *, job: str, worker: str) -> list[Row]:
        if self._state(job, worker) not in ("canceled", "deleted"):
            return []
        job_id = _uuid(job)
        row = self.jobs.get(job_id)  # type: ignore[arg-type]
        out = []
        for o in sorted(self.pending_outputs.values(), key=lambda o: o["written_at"]):
            if o["job_id"] != job_id or o.get("worker") != worker:
                continue
            photo = self.photos.get(o["photo_id"])
            names = {photo[k] for k in ("edited_key", "web_key", "thumb_key", "watermarked_key")} if photo else set()
            owner = photo["photographer_id"] if photo else row["photographer_id"] if row else None
            out.append(
                {"job_id": o["job_id"], "key": o["key"], "photographer_id": owner, "referenced": o["key"] in names}
            )
        return out

    @_query("forget_output")
    def _forget_output(self, *, job: str, key: str) -> list[Row]:
        self.pending_outputs.pop((_uuid(job), key), None)  # type: ignore[arg-type]
        return [{"forget_output": None}]

    @_query("queue_pending")
    def _queue_pending(self, *, job_types: list[str]) -> list[Row]:
        rows = [j for j in self.jobs.values() if j["job_type"] in job_types]
        return [
            {
                "queued": sum(j["status"] == "queued" for j in rows),
                "processing": sum(j["status"] == "processing" for j in rows),
            }
        ]

    @_query("worker_seen")
    def _worker_seen(
        self,
        *,
        worker: str,
        hostname: str,
        pid: int,
        version: str,
        device: str,
        state: str,
        job: str | None,
        info: dict[str, Any],
    ) -> list[Row]:
        now = self.now()
        seen = {"state": state, "job_id": _uuid(job), "info": _json(info), "device": device, "version": version}
        if worker in self.workers:
            self.workers[worker].update(last_seen_at=now, **seen)
        else:
            self.workers[worker] = {
                "id": worker,
                "hostname": hostname,
                "pid": pid,
                "started_at": now,
                "last_seen_at": now,
                **seen,
            }
        return [{"worker_seen": None}]

    @_query("update_style_training")
    def _update_style_training(
        self,
        *,
        profile: str,
        training_status: str,
        training_method: str | None,
        model_key: str | None,
        model_filename: str | None,
        training_time_s: float | None,
        pairs_used: int | None,
        training_error: str | None,
    ) -> list[Row]:
        row = _find(self.style_profiles, profile)
        if row is None:
            return []
        now = self.now()

        def keep(name: str, value: Any) -> Any:
            return row[name] if value is None else value

        row.update(
            training_status=training_status,
            status=training_status,
            training_method=keep("training_method", training_method),
            model_key=keep("model_key", model_key),
            model_weights_key=keep("model_weights_key", model_key),
            model_filename=keep("model_filename", model_filename),
            training_time_s=keep("training_time_s", training_time_s),
            pairs_used=keep("pairs_used", pairs_used),
            training_error=training_error,
            training_started_at=now if training_status == "training" else row["training_started_at"],
            training_completed_at=now
            if training_status == "error" or model_key is not None
            else row["training_completed_at"],
            updated_at=now,
        )
        return [{"id": row["id"]}]

    # -- reads of the app's tables ------------------------------------------------------------
    @_query("get_job")
    def _get_job(self, *, job: str) -> list[Row]:
        row = _find(self.jobs, job)
        return [row] if row else []

    @_query("get_gallery")
    def _get_gallery(self, *, gallery: str) -> list[Row]:
        row = _find(self.galleries, gallery)
        return [{k: row[k] for k in ("id", "photographer_id", "title")}] if row else []

    @_query("gallery_photos")
    def _gallery_photos(self, *, gallery: str) -> list[Row]:
        names = ("id", "photographer_id", "gallery_id", "filename", "original_key", "status", "edited_key", "web_key")
        rows = [p for p in self._photos_of(gallery) if not p["is_culled"]]
        return [
            {
                **{k: p[k] for k in (*names, "thumb_key")},
                "edited_by_job": _text((p["ai_edits"] or {}).get("job_id")),
                "file_size": p["file_size"],
            }
            for p in self._by_order(rows, "sort_order", "created_at")
        ]

    @_query("gallery_output_keys")
    def _gallery_output_keys(self, *, gallery: str) -> list[Row]:
        variants = ("edited_key", "web_key", "thumb_key", "watermarked_key")
        keys = {p[v] for p in self._photos_of(gallery) for v in variants if p[v] is not None}
        return [{"key": key} for key in sorted(keys)]

    @_query("gallery_filenames")
    def _gallery_filenames(self, *, gallery: str) -> list[Row]:
        rows = self._by_order(self._photos_of(gallery), "created_at")
        return [{"id": p["id"], "filename": p["filename"]} for p in rows]

    @_query("gallery_analysis")
    def _gallery_analysis(self, *, gallery: str) -> list[Row]:
        return [
            {"id": p["id"], "analysis": p["ai_edits"]["analysis"], "exif_data": p["exif_data"]}
            for p in self._photos_of(gallery)
            if not p["is_culled"] and isinstance(p["ai_edits"], dict) and "analysis" in p["ai_edits"]
        ]

    @_query("get_style_profile")
    def _get_style_profile(self, *, profile: str) -> list[Row]:
        row = _find(self.style_profiles, profile)
        return [row] if row else []

    @_query("gallery_photo_rows")
    def _gallery_photo_rows(self, *, gallery: str) -> list[Row]:
        names = (
            *("id", "filename", "original_key", "edited_key", "web_key", "thumb_key", "status", "width", "height"),
            *("quality_score", "scene_type", "needs_review"),
        )
        out = []
        for p in self._by_order(self._photos_of(gallery), "sort_order", "created_at"):
            error = (p["ai_edits"] or {}).get("error")
            reason = _text(error.get("reason")) if isinstance(error, dict) else None
            out.append({**{k: p[k] for k in names}, "error": reason})
        return out

    @_query("photographer_billing")
    def _photographer_billing(self, *, photographer: str) -> list[Row]:
        row = _find(self.photographers, photographer)
        return [{"images_edited_count": row["images_edited_count"]}] if row else []

    # -- what the app inserts -----------------------------------------------------------------
    @_query("count_gallery_photos")
    def _count_gallery_photos(self, *, gallery: str) -> list[Row]:
        return [{"n": sum(not p["is_culled"] for p in self._photos_of(gallery))}]

    @_query("insert_job")
    def _insert_job(
        self,
        *,
        gallery: str | None,
        photographer: str,
        style: str | None,
        total: int,
        job_type: str,
        payload: dict[str, Any],
        priority: int,
        settings_override: dict[str, Any] | None,
    ) -> list[Row]:
        gallery_id, photographer_id, style_id = _uuid(gallery), _uuid(photographer), _uuid(style)
        self._require(self.photographers, photographer_id, "photographer")
        self._require(self.galleries, gallery_id, "gallery")
        self._require(self.style_profiles, style_id, "style profile")
        if job_type not in JOB_TYPES_ALLOWED:
            raise psycopg.errors.CheckViolation('violates check constraint "processing_jobs_job_type_check"')
        if (style_id if job_type == "train_style" else gallery_id) is None:
            raise psycopg.errors.CheckViolation('violates check constraint "processing_jobs_target_check"')
        now = self.now()
        row = self._insert(
            self.jobs,
            {
                "gallery_id": gallery_id,
                "photographer_id": photographer_id,
                "style_profile_id": style_id,
                "total_images": total,
                "processed_images": 0,
                "current_phase": "queued",
                "status": "queued",
                "started_at": None,
                "completed_at": None,
                "error_log": None,
                "settings_override": _json(settings_override),
                "job_type": job_type,
                "payload": _json(payload),
                "priority": priority,
                "run_after": now,
                "attempts": 0,
                "max_attempts": 3,
                "locked_by": None,
                "heartbeat_at": None,
                "progress": {},
                "phase_timings": {},
            },
        )
        self._notify()  # apelier_notify_job_inserted
        return [{"id": row["id"]}]

    @_query("upsert_photographer")
    def _upsert_photographer(self, *, id: str, name: str, email: str | None) -> list[Row]:
        key = _uuid(id)
        if key in self.photographers:
            self.photographers[key]["name"] = name
            return [{"id": key}]
        start = _month_start(self.now())
        row = self._insert(
            self.photographers,
            {
                "id": key,
                "auth_user_id": None,
                "email": email,
                "name": name,
                "images_edited_count": 0,
                "billing_period_start": start,
                "billing_period_end": _next_month(start),
                "updated_at": self.now(),
            },
        )
        return [{"id": row["id"]}]

    @_query("insert_gallery")
    def _insert_gallery(self, *, photographer: str, title: str) -> list[Row]:
        photographer_id = _uuid(photographer)
        self._require(self.photographers, photographer_id, "photographer")
        row = self._insert(self.galleries, {"photographer_id": photographer_id, "title": title, "status": "processing"})
        return [{"id": row["id"]}]

    @_query("insert_photo")
    def _insert_photo(
        self,
        *,
        gallery: str,
        photographer: str,
        key: str,
        filename: str,
        size: int | None,
        mime: str | None,
        sort_order: int,
    ) -> list[Row]:
        gallery_id, photographer_id = _uuid(gallery), _uuid(photographer)
        self._require(self.galleries, gallery_id, "gallery")
        self._require(self.photographers, photographer_id, "photographer")
        row = self._insert(
            self.photos,
            {
                "gallery_id": gallery_id,
                "photographer_id": photographer_id,
                "original_key": key,
                "edited_key": None,
                "web_key": None,
                "thumb_key": None,
                "watermarked_key": None,
                "filename": filename,
                "file_size": size,
                "mime_type": mime,
                "width": None,
                "height": None,
                "exif_data": {},
                "scene_type": None,
                "quality_score": None,
                "face_data": [],
                "ai_edits": {},
                "status": "uploaded",
                "star_rating": 0,
                "is_culled": False,
                "is_favorite": False,
                "is_sneak_peek": False,
                "sort_order": sort_order,
                "edit_confidence": None,
                "needs_review": False,
                "updated_at": self.now(),
            },
        )
        return [{"id": row["id"]}]

    @_query("insert_style_profile")
    def _insert_style_profile(self, *, photographer: str, name: str, settings: dict[str, Any]) -> list[Row]:
        photographer_id = _uuid(photographer)
        self._require(self.photographers, photographer_id, "photographer")
        row = self._insert(
            self.style_profiles,
            {
                "photographer_id": photographer_id,
                "name": name,
                "description": None,
                "reference_image_keys": [],
                "model_weights_key": None,
                "settings": _json(settings),
                "status": "pending",
                "training_started_at": None,
                "training_completed_at": None,
                "model_key": None,
                "model_filename": None,
                "training_method": "reference",
                "training_status": "pending",
                "training_error": None,
                "training_time_s": None,
                "pairs_used": None,
                "updated_at": self.now(),
            },
        )
        return [{"id": row["id"]}]


class MemoryConnection:
    """The :class:`~worker.queue.connection.Connection` seam over a :class:`MemoryDatabase`."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def one(self, query: str, /, **params: Any) -> Row | None:
        rows = self.db.execute(query, params)
        return rows[0] if rows else None

    def all(self, query: str, /, **params: Any) -> list[Row]:
        return self.db.execute(query, params)

    def script(self, sql: str) -> None:
        raise NotImplementedError("the in-memory database runs no SQL; migrate a real PostgreSQL")

    def transaction(self) -> AbstractContextManager[None]:
        return self.db.transaction()

    def close(self) -> None:
        pass


class MemoryListener:
    """The daemon's LISTEN, woken by the double's NOTIFYs (a job inserted or put back to 'queued')."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db
        self._seen: int | None = None

    def start(self) -> bool:
        with self.db.lock:
            self._seen = self.db.notifications
        return True

    def wait(self, timeout_s: float) -> bool:
        with self.db.changed:
            seen = self.db.notifications if self._seen is None else self._seen
            got = self.db.changed.wait_for(lambda: self.db.notifications > seen, timeout_s)
            self._seen = self.db.notifications
            return got

    def close(self) -> None:
        self._seen = None
