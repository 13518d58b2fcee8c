"""The daemon and the gallery job over the in-memory double: suspected photos run alone first, a photo
that killed its workers is skipped with its reason, a database outage mid-job costs nothing, a failure
the database could not take is recorded once it is back, outputs never recorded are deleted, and stale
jobs are requeued while the worker is busy (tests/integration/test_attempts.py tests the SQL)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.conftest import make_gallery
from tests.integration.test_daemon import SpyStorage, drain, make_daemon
from worker.errors import StorageError
from worker.queue.database import Queue
from worker.queue.memory import MemoryDatabase
from worker.service.reaper import Reaper


@pytest.fixture
def db() -> MemoryDatabase:
    return MemoryDatabase()


@pytest.fixture
def queue(db: MemoryDatabase) -> Queue:
    return db.queue("test-app")


def die(db: MemoryDatabase, job_id: str, *photos: str) -> None:
    """A worker claims the job, starts processing ``photos`` and is killed; a reaper requeues it."""
    ghost = db.queue("ghost")
    claimed = ghost.jobs.claim()
    assert claimed is not None and claimed.id == job_id
    ghost.jobs.setup_done(job_id)
    for photo in photos:
        ghost.jobs.photo_started(job_id, photo)
    db.update_job(job_id, heartbeat_at=db.now() - timedelta(hours=1))
    assert [str(r["job_id"]) for r in ghost.jobs.requeue_stale(60)] == [job_id]


def test_suspects_run_alone_first_and_a_photo_that_killed_its_workers_is_skipped_with_its_reason(
    queue, db, storage, settings, real_photos
) -> None:
    gallery = make_gallery(queue, storage, real_photos)
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    poison, suspect = gallery.photo_ids[1], gallery.photo_ids[3]
    die(db, job_id, poison, suspect)  # both suspected
    for _ in range(3):  # run alone, it killed the worker again, three times (max_attempts): failed alone
        die(db, job_id, poison)
    assert queue.jobs.photos_in_flight(job_id) == {poison: (4, True), suspect: (1, False)}

    spy = SpyStorage(storage)
    drain(db, spy, settings)
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed" and job["attempts"] == 2
    assert job["error_log"] == "1 of 4 photos could not be processed; see each photo's ai_edits.error"
    assert spy.gets[0] == gallery.keys[3]  # the suspect first, alone
    assert gallery.keys[1] not in spy.gets  # the isolated photo is never read again
    rows = {str(r["id"]): r for r in queue.app.gallery_photo_rows(gallery.gallery_id)}
    assert rows.pop(poison)["error"].startswith("processing this photo stopped the worker 4 times")
    assert [r["status"] for r in rows.values()] == ["edited"] * 3
    failures = job["progress"]["failures"]
    assert [f["photo_id"] for f in failures] == [poison] and failures[0]["phase"] == "processing"
    assert queue.jobs.photos_in_flight(job_id) == {poison: (4, True)}  # the suspect is cleared by its edit


def test_a_database_outage_mid_job_costs_neither_the_job_nor_an_attempt(
    queue, db, storage, settings, real_photos, monkeypatch
) -> None:
    gallery = make_gallery(queue, storage, real_photos[:2])
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    real = db.execute
    lost: list[str] = []

    def flaky(name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        if name == "finish_photo" and len(lost) < 2:  # the first photo's row meets a restarting server, twice
            lost.append(name)
            raise psycopg.OperationalError("terminating connection due to administrator command")
        return real(name, params)

    monkeypatch.setattr(db, "execute", flaky)
    daemon = drain(db, storage, settings)
    job = queue.app.get_job(job_id)
    assert len(lost) == 2
    assert job is not None and job["status"] == "completed" and job["attempts"] == 1 and job["error_log"] is None
    assert daemon.stats.jobs_failed == 0 and queue.app.images_edited_count(gallery.photographer_id) == 2


def test_a_failure_the_database_could_not_take_is_recorded_as_soon_as_it_is_back(
    queue, db, storage, settings, real_photos, monkeypatch
) -> None:
    gallery = make_gallery(queue, storage, real_photos[:1])
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    spy = SpyStorage(storage, fail_gets=True)  # storage down: the attempt fails, outside the job
    daemon = make_daemon(db, spy, settings, drain=True)
    real = daemon.queue.jobs.end_attempt
    tries: list[str] = []

    def end_attempt(*args: Any, **kwargs: Any) -> str:
        tries.append(args[0])
        if len(tries) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        daemon.shutdown.set()  # one attempt is enough to see
        return real(*args, **kwargs)

    monkeypatch.setattr(daemon.queue.jobs, "end_attempt", end_attempt)
    assert daemon.run() == 0
    job = queue.app.get_job(job_id)
    assert tries == [job_id, job_id]
    assert job is not None and job["status"] == "queued" and job["locked_by"] is None
    assert job["attempts"] == 0  # storage down is not the job's doing: the attempt was given back
    assert "kept failing" in job["error_log"]


class FailingSecondPut(SpyStorage):
    """Storage that refuses a photo's second output (a 4xx: not retryable), after taking the first."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if len(self.puts) == 1:
            self.puts.append((key, content_type))
            raise StorageError(f"storage upload of {key} failed: 413 Payload too large")
        super().put(key, data, content_type)


def test_outputs_uploaded_for_a_photo_never_recorded_are_deleted_once_its_job_has_ended(
    queue, db, storage, settings, real_photos
) -> None:
    gallery = make_gallery(queue, storage, real_photos[:1])
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    spy = FailingSecondPut(storage)
    daemon = drain(db, spy, settings)
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "failed" and "413" in job["error_log"]
    uploaded = spy.puts[0][0]
    assert storage.exists(uploaded)
    row = queue.app.gallery_photo_rows(gallery.gallery_id)[0]
    assert row["edited_key"] is None and row["needs_review"] and row["error"].startswith("not edited: the job failed")

    daemon._next_sweep = 0.0
    daemon._maybe_sweep_outputs()  # not yet: the job ended less than a lease ago
    assert storage.exists(uploaded)
    db.advance(settings.lease_s + 1)
    daemon._next_sweep = 0.0
    daemon._maybe_sweep_outputs()
    assert not storage.exists(uploaded)
    assert db.pending_outputs == {}
    assert storage.exists(gallery.keys[0])  # the original, of course, stays


def test_a_stale_job_is_requeued_while_this_worker_is_busy_with_another(
    queue, db, storage, settings, real_photos
) -> None:
    files = [(f"p{i}.jpg", real_photos[i % len(real_photos)][1]) for i in range(6)]
    busy = make_gallery(queue, storage, files)
    orphan = make_gallery(queue, storage, real_photos[:1])
    orphaned = queue.admin.enqueue(photographer_id=orphan.photographer_id, gallery_id=orphan.gallery_id)
    assert db.queue("ghost").jobs.claim() is not None
    running = queue.admin.enqueue(photographer_id=busy.photographer_id, gallery_id=busy.gallery_id)
    daemon = make_daemon(db, SpyStorage(storage, get_delay_s=0.3), settings, drain=True)
    seen: dict[str, Any] = {}

    def watch() -> None:
        while (queue.app.get_job(running) or {}).get("status") != "processing":
            time.sleep(0.02)
        db.update_job(orphaned, heartbeat_at=db.now() - timedelta(hours=1))  # its worker died
        while "running" not in seen:
            row = queue.app.get_job(orphaned)
            if row is not None and row["locked_by"] != "ghost":
                seen["running"] = (queue.app.get_job(running) or {}).get("status")
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert daemon.run() == 0
    watcher.join(timeout=10)
    assert seen["running"] == "processing"  # requeued by the reaper, not between jobs
    assert (queue.app.get_job(orphaned) or {}).get("status") == "completed"


class Jobs:
    """A JobStore's two calls the reaper makes, on a database that goes away and comes back."""

    def __init__(self) -> None:
        self.down = False
        self.requeues = 0

    def pending(self) -> tuple[int, int]:
        if self.down:
            raise psycopg.OperationalError("connection refused")
        return (0, 0)

    def requeue_stale(self, lease_s: float) -> list[dict[str, Any]]:
        if self.down:
            raise psycopg.OperationalError("connection refused")
        self.requeues += 1
        return []


def test_after_a_long_database_outage_the_reaper_waits_a_lease_before_requeuing(db) -> None:
    now = [0.0]
    reaper = Reaper(db, "w", lease_s=60.0, heartbeat_interval_s=10.0, clock=lambda: now[0])
    jobs = Jobs()
    reaper.tick(jobs)
    assert jobs.requeues == 1
    jobs.down = True
    for t in (5.0, 10.0):  # a short outage: heartbeats can miss that much, requeue at once
        now[0] = t
        reaper.tick(jobs)
    jobs.down = False
    now[0] = 15.0
    reaper.tick(jobs)  # back
    reaper.tick(jobs)
    assert jobs.requeues == 2
    jobs.down = True
    now[0] = 20.0
    reaper.tick(jobs)
    jobs.down = False
    now[0] = 70.0  # down 50 s: longer than the lease less two heartbeats
    reaper.tick(jobs)
    now[0] = 125.0
    reaper.tick(jobs)
    assert jobs.requeues == 2  # live workers get a lease to beat again first
    now[0] = 131.0
    reaper.tick(jobs)
    assert jobs.requeues == 3
