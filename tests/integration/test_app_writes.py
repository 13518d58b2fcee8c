"""The app's own writes to processing_jobs, as its code makes them, against a real PostgreSQL.

* Its cancel (``handleCancelJob``): ``status='failed', error_log='Cancelled by user'``, locked_by
  untouched. It must end like the worker's own cancel (``apelier.cancel_job``): lock let go,
  nothing recorded or billed after it, no outputs left in storage that no photo row points at.
* Its queue view fails a job whose ``processed_images`` has not moved for 5 minutes; the worker keeps
  ``heartbeat_at`` moving instead, which the app's one-line change reads (docs/app.md): also while a
  training downloads its photos for longer than the watchdog's window.
* ``total_images`` is the app's: set when it creates a job (``createProcessingJob``), never changed.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import make_gallery
from tests.integration.test_daemon import SpyStorage, drain, make_daemon, photo_rows
from tests.integration.test_style_job import (
    assert_cancel_outcome,
    store_histogram_style,
    studio_with_profile,
    training_photos,
    upload_pairs,
)
from worker.jobs.runtime import JobControl, Runtime
from worker.jobs.style import run_style_job
from worker.models.bundle import ModelBundle
from worker.queue.database import Queue
from worker.service import notify
from worker.service.config import Settings
from worker.storage.local import LocalStorage

APP_CANCEL = (
    "UPDATE processing_jobs SET status = 'failed', error_log = 'Cancelled by user', completed_at = now() WHERE id = %s"
)


def app_cancel(db_url: str, job_id: str) -> int:
    """The app's cancel, in one transaction; returns the photographer's billed count as it commits
    (a photo finishing meanwhile waits on the job row: it is either counted here or never billed)."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        conn.execute(APP_CANCEL, (job_id,))
        row = conn.execute(
            "SELECT p.images_edited_count AS n FROM photographers p JOIN processing_jobs j "
            "ON j.photographer_id = p.id WHERE j.id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None
        return int(row["n"] or 0)


def worker_cancel(db_url: str, job_id: str) -> int:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        assert conn.execute("SELECT apelier.cancel_job(%s) AS s", (job_id,)).fetchone() == {"s": "canceled"}
        row = conn.execute(
            "SELECT p.images_edited_count AS n FROM photographers p JOIN processing_jobs j "
            "ON j.photographer_id = p.id WHERE j.id = %s",
            (job_id,),
        ).fetchone()
        assert row is not None
        return int(row["n"] or 0)


class CancelMidUpload(SpyStorage):
    """Cancels the job (once) as the second photo's outputs start uploading, once ``ready()`` (the
    first photo recorded): that photo's outputs land in storage after the cancel, so its row can no
    longer be written."""

    def __init__(self, inner: LocalStorage, cancel: Callable[[], int], ready: Callable[[], bool]) -> None:
        super().__init__(inner, get_delay_s=0.05)
        self.cancel = cancel
        self.ready = ready
        self.billed_at_cancel: int | None = None
        self._edited = 0
        self._once = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        if "/edited/" in key:
            with self._once:
                self._edited += 1
                if self._edited == 2 and self.billed_at_cancel is None:
                    wait_for(self.ready, 30)
                    self.billed_at_cancel = self.cancel()
        super().put(key, data, content_type)


def recorded_by(queue: Queue, job_id: str) -> Callable[[], bool]:
    def ready() -> bool:
        row = queue.conn.execute(
            "SELECT count(*) AS n FROM photos WHERE ai_edits->>'job_id' = %s", (job_id,)
        ).fetchone()
        return bool(row and row["n"])

    return ready


def wait_for(check: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


@pytest.mark.parametrize("form", ["app", "worker"])
def test_a_cancel_of_either_form_lets_go_bills_nothing_after_it_and_leaves_no_orphans(
    queue: Queue, db_url: str, storage: LocalStorage, settings: Settings, real_photos: Any, form: str
) -> None:
    files = [(f"p{i:02d}.jpg", real_photos[i % len(real_photos)][1]) for i in range(8)]
    gallery = make_gallery(queue, storage, files)
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    cancel = app_cancel if form == "app" else worker_cancel
    spy = CancelMidUpload(storage, lambda: cancel(db_url, job_id), recorded_by(queue, job_id))
    # A lease far longer than the test: the daemon's periodic sweep cannot be what deletes the outputs.
    daemon = make_daemon(db_url, spy, dataclasses.replace(settings, lease_s=600.0))
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        wait_for(lambda: spy.billed_at_cancel is not None)
        wait_for(lambda: queue.app.get_job(job_id)["locked_by"] is None)  # type: ignore[index]
    finally:
        daemon.shutdown.set()
        thread.join(timeout=30)
    assert not thread.is_alive()

    job = queue.app.get_job(job_id)
    assert job is not None
    if form == "app":  # the row stays as the app wrote it
        assert (job["status"], job["error_log"]) == ("failed", "Cancelled by user")
    else:
        assert job["status"] == "canceled"
    assert job["locked_by"] is None and job["heartbeat_at"] is None and job["current_phase"] == "canceled"
    assert job["completed_at"] is not None

    # Nothing recorded or billed after the cancel committed.
    edited = [r for r in photo_rows(queue, gallery.gallery_id).values() if r["status"] == "edited"]
    assert queue.app.images_edited_count(gallery.photographer_id) == spy.billed_at_cancel == len(edited) >= 1
    assert len(edited) < len(files)
    assert job["processed_images"] == len(edited)

    # Every output in storage is a recorded photo's; the second photo's were uploaded, then deleted.
    referenced = {r[k] for r in edited for k in ("edited_key", "web_key", "thumb_key")}
    outputs = {k for k in storage.list(f"{gallery.photographer_id}/{gallery.gallery_id}") if "/uploads/" not in k}
    assert outputs == referenced
    uploaded = {key for key, _ in spy.puts}
    assert uploaded - referenced, "some outputs were uploaded after the cancel (the case under test)"
    # Deleted by the run as it let go, and forgotten: nothing left for the sweep.
    pending = queue.conn.execute("SELECT count(*) AS n FROM apelier.pending_outputs WHERE job_id = %s", (job_id,))
    assert pending.fetchone() == {"n": 0}


def test_a_cancel_never_deletes_outputs_a_photo_row_points_at(
    queue: Queue, db_url: str, storage: LocalStorage, settings: Settings, real_photos: Any
) -> None:
    """A restyle writes a photo's outputs in place: when the app cancels it before the photo is
    recorded again, the photo keeps the outputs its row points at."""
    gallery = make_gallery(queue, storage, real_photos[:2])
    queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    drain(db_url, storage, settings)
    before = photo_rows(queue, gallery.gallery_id)
    assert all(r["status"] == "edited" for r in before.values())
    restyle = queue.admin.enqueue(
        photographer_id=gallery.photographer_id,
        gallery_id=gallery.gallery_id,
        job_type="restyle",
        payload={"photo_ids": gallery.photo_ids},
    )
    spy = CancelMidUpload(storage, lambda: app_cancel(db_url, restyle), lambda: True)
    make_daemon(db_url, spy, dataclasses.replace(settings, lease_s=600.0), drain=True).run()

    job = queue.app.get_job(restyle)
    assert job is not None and job["locked_by"] is None and job["error_log"] == "Cancelled by user"
    for name, row in photo_rows(queue, gallery.gallery_id).items():
        for variant in ("edited_key", "web_key", "thumb_key"):
            assert row[variant] == before[name][variant] and storage.exists(row[variant])
    pending = queue.conn.execute("SELECT count(*) AS n FROM apelier.pending_outputs WHERE job_id = %s", (restyle,))
    assert pending.fetchone() == {"n": 0}  # forgotten by the run, never deleted


@pytest.mark.parametrize("had_model", [True, False])
def test_the_apps_cancel_of_a_training_ends_it_as_a_cancel(
    queue: Queue, storage: LocalStorage, settings: Settings, astronaut: np.ndarray, had_model: bool, db_url: str
) -> None:
    """Running: the profile goes back to 'ready' with the model it had (else 'error', "training
    canceled"), and the worker lets go of the job, whose row keeps the app's status and reason."""
    photographer, profile = studio_with_profile(queue)
    if had_model:
        store_histogram_style(queue, storage, photographer, profile, astronaut)
    before = queue.app.style_profile(profile)
    assert before is not None
    pairs = upload_pairs(storage, photographer, training_photos()[:5])
    job_id = queue.admin.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"pairs": pairs}
    )
    job = queue.jobs.claim()
    assert job is not None and job.id == job_id
    start = queue.jobs.start_style_training

    def start_then_app_cancels(job_id: str) -> str:
        state = start(job_id)
        assert queue.app.style_profile(profile)["training_status"] == "training"  # type: ignore[index]
        app_cancel(db_url, job_id)
        return state

    queue.jobs.start_style_training = start_then_app_cancels  # type: ignore[method-assign]
    runtime = Runtime(settings=settings, storage=storage, models=ModelBundle(device="cpu"))
    assert run_style_job(job, queue, runtime, JobControl()).status == "canceled"

    row = queue.app.style_profile(profile)
    assert row is not None
    assert_cancel_outcome(row, before, had_model)
    ended = queue.app.get_job(job_id)
    assert ended is not None
    assert (ended["status"], ended["error_log"], ended["locked_by"]) == ("failed", "Cancelled by user", None)


def test_the_apps_cancel_of_a_training_waiting_for_its_retry_keeps_the_model(
    queue: Queue, storage: LocalStorage, astronaut: np.ndarray, db_url: str
) -> None:
    photographer, profile = studio_with_profile(queue)
    store_histogram_style(queue, storage, photographer, profile, astronaut)
    before = queue.app.style_profile(profile)
    job_id = queue.admin.enqueue(photographer_id=photographer, style_profile_id=profile, job_type="train_style")
    assert queue.jobs.claim() is not None
    assert queue.jobs.start_style_training(job_id) == "processing"
    assert queue.jobs.fail(job_id, "storage down", 3600.0) == "queued"  # waits for its retry, still training
    app_cancel(db_url, job_id)
    row = queue.app.style_profile(profile)
    assert row is not None and before is not None
    assert_cancel_outcome(row, before, had_model=True)


def test_the_workers_own_failure_of_a_training_is_still_a_failure(
    queue: Queue, storage: LocalStorage, astronaut: np.ndarray
) -> None:
    """Told apart from the app's cancel by the lock: the worker lets go in the same statement."""
    photographer, profile = studio_with_profile(queue)
    store_histogram_style(queue, storage, photographer, profile, astronaut)
    job_id = queue.admin.enqueue(photographer_id=photographer, style_profile_id=profile, job_type="train_style")
    assert queue.jobs.claim() is not None
    assert queue.jobs.start_style_training(job_id) == "processing"
    assert queue.jobs.fail(job_id, "only 3 of 5 pairs are usable", None) == "failed"
    row = queue.app.style_profile(profile)
    assert row is not None
    assert (row["training_status"], row["training_error"]) == ("error", "only 3 of 5 pairs are usable")


# -- the app's stall check: heartbeat_at moves while the job is healthy ---------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_training_whose_downloads_outlast_the_watchdog_window_keeps_its_lease(
    queue: Queue, storage: LocalStorage, settings: Settings
) -> None:
    """Each reference photo takes 200 s (fake clock) to download, 1,000 s in all, beyond the 300 s
    window after which the heartbeat thread stops renewing a job's lease (notify.stalled): the
    working thread, waiting on the downloads, says so, and the job never looks stalled."""
    photographer, profile = studio_with_profile(queue)
    keys = [p["original_key"] for p in upload_pairs(storage, photographer, training_photos()[:5])]
    job_id = queue.admin.enqueue(
        photographer_id=photographer,
        style_profile_id=profile,
        job_type="train_style",
        payload={"training_method": "histogram", "reference_keys": keys},
    )
    job = queue.jobs.claim()
    assert job is not None and job.id == job_id

    clock = FakeClock()
    notifier = notify.Notifier(clock=clock)  # on this thread, which runs the job: the daemon's working thread
    stalled: list[bool] = []

    class SlowDownloads(SpyStorage):
        def get(self, key: str) -> bytes:
            data = super().get(key)
            with self._lock:  # one download at a time, each 200 s long
                clock.now += 200
                notify.transferred()  # a storage request finished, as SupabaseStorage says
                stalled.append(notify.stalled())
                deadline = time.monotonic() + 2.0  # until the working thread shows a sign of life
                while not stalled[-1] and notifier._last_sign < clock.now and time.monotonic() < deadline:
                    time.sleep(0.01)
            return data

    notify.install(notifier)
    try:
        runtime = Runtime(settings=settings, storage=SlowDownloads(storage), models=ModelBundle(device="cpu"))
        assert run_style_job(job, queue, runtime, JobControl()).status == "completed"
    finally:
        notify.install(None)
    assert len(stalled) == len(keys) and not any(stalled)


# -- total_images ---------------------------------------------------------------------------------
def log_count_writes(db_url: str) -> None:
    """Every value processed_images/total_images take, in order (a trigger of the test's own)."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            """
            CREATE TABLE count_writes (n serial, job_id uuid, processed integer, total integer);
            CREATE FUNCTION log_count_write() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              INSERT INTO count_writes (job_id, processed, total)
              VALUES (NEW.id, NEW.processed_images, NEW.total_images);
              RETURN NULL;
            END $$;
            CREATE TRIGGER log_count_write AFTER INSERT OR UPDATE ON processing_jobs
              FOR EACH ROW EXECUTE FUNCTION log_count_write();
            """
        )


def count_writes(queue: Queue, job_id: str) -> list[tuple[int, int]]:
    rows = queue.conn.execute(
        "SELECT processed, total FROM count_writes WHERE job_id = %s ORDER BY n", (job_id,)
    ).fetchall()
    return [(r["processed"], r["total"]) for r in rows]


def test_total_images_stays_as_the_app_set_it(
    queue: Queue, db_url: str, storage: LocalStorage, settings: Settings, real_photos: Any
) -> None:
    """The app's createProcessingJob sets total_images (here 1, the photo it asks for); the gallery
    also holds a photo the worker refuses (its key is another photographer's). The total never
    changes, and processed_images never passes it."""
    log_count_writes(db_url)
    gallery = make_gallery(queue, storage, real_photos[:1])
    stranger = f"{uuid.uuid4()}/elsewhere/x.jpg"
    storage.put(stranger, real_photos[1][1], "image/jpeg")
    queue.admin.insert_photo(
        photographer_id=gallery.photographer_id,
        gallery_id=gallery.gallery_id,
        key=stranger,
        filename="x.jpg",
        sort_order=5,
    )
    row = queue.conn.execute(  # as createProcessingJob inserts it
        "INSERT INTO processing_jobs (gallery_id, photographer_id, total_images, status, processed_images) "
        "VALUES (%s, %s, 1, 'queued', 0) RETURNING id",
        (gallery.gallery_id, gallery.photographer_id),
    ).fetchone()
    assert row is not None
    job_id = str(row["id"])
    drain(db_url, storage, settings)

    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed"
    assert "1 of 2 photos could not be processed" in job["error_log"]
    writes = count_writes(queue, job_id)
    assert len(writes) > 2 and {total for _, total in writes} == {1}
    assert all(processed <= total for processed, total in writes)
    assert (job["processed_images"], job["total_images"]) == (1, 1)


def test_a_total_the_worker_counted_is_counted_again_when_the_app_requeues(
    queue: Queue, db_url: str, storage: LocalStorage, settings: Settings, real_photos: Any
) -> None:
    gallery = make_gallery(queue, storage, real_photos[:2])
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    drain(db_url, storage, settings)
    assert queue.app.get_job(job_id)["total_images"] == 2  # type: ignore[index]

    key = f"{gallery.photographer_id}/{gallery.gallery_id}/uploads/new.jpg"  # a new upload, then the app re-queues
    storage.put(key, real_photos[2][1], "image/jpeg")
    queue.admin.insert_photo(
        photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id, key=key, filename="new.jpg"
    )
    queue.conn.execute("UPDATE processing_jobs SET status = 'queued' WHERE id = %s", (job_id,))
    drain(db_url, storage, settings)
    job = queue.app.get_job(job_id)
    assert job is not None and (job["status"], job["processed_images"], job["total_images"]) == ("completed", 3, 3)
