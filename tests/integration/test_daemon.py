"""The daemon in-process against a real PostgreSQL and real photos: galleries end to end, bad input,
tenant isolation, resume without double work, retry with backoff, cancel, NOTIFY wake-up."""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import jpeg_bytes, make_gallery
from worker.errors import TransientStorageError
from worker.jobs.runtime import Runtime
from worker.models.bundle import ModelBundle
from worker.queue.database import Database, Queue
from worker.service.config import Settings
from worker.service.daemon import Daemon
from worker.storage.local import LocalStorage


class SpyStorage:
    """Local storage that records every call, and can be slowed down or made to fail."""

    def __init__(self, inner: LocalStorage, *, get_delay_s: float = 0.0, fail_gets: bool = False) -> None:
        self.inner = inner
        self.gets: list[str] = []
        self.puts: list[tuple[str, str]] = []
        self.get_delay_s = get_delay_s
        self.fail_gets = fail_gets
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes:
        with self._lock:
            self.gets.append(key)
        if self.fail_gets:
            raise TransientStorageError(f"storage download of {key} kept failing (ReadTimeout)")
        time.sleep(self.get_delay_s)
        return self.inner.get(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self.puts.append((key, content_type))
        self.inner.put(key, data, content_type)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)

    def describe(self) -> str:
        return "spy"


def make_daemon(database: str | Database, storage: Any, settings: Settings, **kw: Any) -> Daemon:
    runtime = Runtime(settings=settings, storage=storage, models=ModelBundle(device="cpu"))
    return Daemon(runtime, database, **kw)


def drain(database: str | Database, storage: Any, settings: Settings) -> Daemon:
    daemon = make_daemon(database, storage, settings, drain=True)
    assert daemon.run() == 0
    return daemon


def photo_rows(queue: Queue, gallery_id: str) -> dict[str, dict[str, Any]]:
    rows = queue.conn.execute("SELECT * FROM photos WHERE gallery_id = %s", (gallery_id,)).fetchall()
    return {r["filename"]: r for r in rows}


@pytest.mark.parametrize("lanes", [1, 3])
def test_a_gallery_is_processed_end_to_end(queue, db_url, storage, settings, real_photos, lanes: int) -> None:
    gallery = make_gallery(queue, storage, real_photos)
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    drain(db_url, storage, dataclasses.replace(settings, phase_lanes=lanes))

    job = queue.app.get_job(job_id)
    assert job is not None
    assert job["status"] == "completed" and job["current_phase"] == "complete"
    assert job["processed_images"] == job["total_images"] == len(real_photos)
    assert job["locked_by"] is None and job["completed_at"] and job["error_log"] is None
    assert job["progress"]["phases"]["output"]["done"] == len(real_photos)
    assert {"decode", "analysis", "style", "output", "upload"} <= set(job["phase_timings"])

    for name, data in real_photos:
        row = photo_rows(queue, gallery.gallery_id)[name]
        original = Image.open(io.BytesIO(data))
        assert row["status"] == "edited" and not row["needs_review"]
        assert row["edited_key"] == f"{gallery.photographer_id}/{gallery.gallery_id}/edited/{name[:-4]}.jpg"
        assert row["web_key"].endswith(f"/web/{name[:-4]}.jpg") and row["thumb_key"].endswith(
            f"/thumbs/{name[:-4]}.jpg"
        )
        edited = Image.open(io.BytesIO(storage.get(row["edited_key"])))
        thumb = Image.open(io.BytesIO(storage.get(row["thumb_key"])))
        assert edited.format == "JPEG" and edited.size == original.size == (row["width"], row["height"])
        assert max(thumb.size) == min(400, max(original.size))
        assert 0 <= row["quality_score"] <= 100
        assert row["ai_edits"]["job_id"] == job_id
        assert row["ai_edits"]["style"]["applied"] is False
    assert queue.app.images_edited_count(gallery.photographer_id) == len(real_photos)


@pytest.mark.parametrize("lanes", [1, 3])
def test_bad_photos_fail_alone_with_a_reason_and_the_gallery_completes(
    queue, db_url, storage, settings, real_photos, astronaut, lanes: int
) -> None:
    good = real_photos[:2]
    truncated = jpeg_bytes(astronaut)[:3000]
    tiny = io.BytesIO()
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny, "PNG")
    files: list[tuple[str, bytes | None]] = [
        *good,
        ("empty.jpg", b""),
        ("truncated.jpg", truncated),
        ("notes.jpg", b"this is a text file, not a photo\n" * 20),
        ("pixel.png", tiny.getvalue()),
        ("missing.jpg", None),
    ]
    gallery = make_gallery(queue, storage, files)
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    drain(db_url, storage, dataclasses.replace(settings, phase_lanes=lanes))

    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed"
    rows = photo_rows(queue, gallery.gallery_id)
    for name, _ in good:
        assert rows[name]["status"] == "edited"
    expected = {
        "empty.jpg": "empty",
        "truncated.jpg": "truncated",
        "notes.jpg": "not an image",
        "pixel.png": "too small",
        "missing.jpg": "not in storage",
    }
    for name, words in expected.items():
        row = rows[name]
        assert row["status"] == "uploaded" and row["needs_review"] and row["edited_key"] is None
        assert words in row["ai_edits"]["error"]["reason"], row["ai_edits"]["error"]
    assert job["progress"]["failed"] == len(expected)
    assert {f["filename"] for f in job["progress"]["failures"]} == set(expected)
    assert job["error_log"].startswith(f"{len(expected)} of {len(files)} photos could not be processed")
    assert queue.app.images_edited_count(gallery.photographer_id) == len(good)


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def test_a_watermark_from_the_photographers_logo_and_clear_failures_for_bad_logos(
    queue, db_url, storage, settings, real_photos
) -> None:
    gallery = make_gallery(queue, storage, real_photos[:1])
    pid = gallery.photographer_id
    logo = np.zeros((60, 180, 4), np.uint8)
    logo[10:50, 10:170] = (255, 255, 255, 255)  # an opaque white bar on a transparent logo
    storage.put(f"{pid}/branding/logo.png", _png(logo), "image/png")
    storage.put(f"{pid}/branding/broken.png", b"not a png", "image/png")
    other = make_gallery(queue, storage, real_photos[1:2])
    storage.put(f"{other.photographer_id}/branding/logo.png", _png(logo), "image/png")
    runs = {
        "ok": f"{pid}/branding/logo.png",
        "broken": f"{pid}/branding/broken.png",
        "someone else's": f"{other.photographer_id}/branding/logo.png",
    }
    jobs = {}
    for name, key in runs.items():
        jobs[name] = queue.admin.enqueue(
            photographer_id=pid,
            gallery_id=gallery.gallery_id,
            settings_override={"watermark": True, "watermark_key": key},
        )
        drain(db_url, storage, settings)
    done = queue.app.get_job(jobs["ok"]) or {}
    assert done["status"] == "completed"
    (row,) = photo_rows(queue, gallery.gallery_id).values()
    marked = np.asarray(Image.open(io.BytesIO(storage.get(row["watermarked_key"]))).convert("RGB"), np.int16)
    web = np.asarray(Image.open(io.BytesIO(storage.get(row["web_key"]))).convert("RGB"), np.int16)
    assert marked.shape == web.shape and np.abs(marked - web).max() > 50  # the white bar is on it
    for name, reason in (("broken", "is not an image; upload a PNG"), ("someone else's", "outside photographer")):
        job = queue.app.get_job(jobs[name]) or {}
        assert job["status"] == "failed" and job["attempts"] == 1 and reason in job["error_log"], (name, job)


def test_a_requeued_gallery_resumes_and_nothing_is_uploaded_or_billed_twice(
    queue, db_url, storage, settings, real_photos
) -> None:
    gallery = make_gallery(queue, storage, real_photos)
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    drain(db_url, storage, settings)
    assert queue.app.images_edited_count(gallery.photographer_id) == len(real_photos)

    # One photo is new (uploaded after the first run); the app re-queues the same job row.
    extra = make_gallery(queue, storage, [("late.jpg", real_photos[0][1])], photographer_id=gallery.photographer_id)
    queue.conn.execute("UPDATE photos SET gallery_id = %s WHERE id = %s", (gallery.gallery_id, extra.photo_ids[0]))
    queue.conn.execute("UPDATE processing_jobs SET status = 'queued' WHERE id = %s", (job_id,))
    spy = SpyStorage(storage)
    drain(db_url, spy, settings)

    assert spy.gets == [extra.keys[0]]
    assert len(spy.puts) == 3  # edited, web, thumb of the new photo only
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed"
    assert job["processed_images"] == len(real_photos) + 1 and job["progress"]["resumed_from"] == len(real_photos)
    assert queue.app.images_edited_count(gallery.photographer_id) == len(real_photos) + 1


def test_restyle_redoes_only_the_chosen_photos_and_bills_nothing_new(queue, db_url, storage, settings, real_photos):
    gallery = make_gallery(queue, storage, real_photos)
    queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    drain(db_url, storage, settings)
    chosen = gallery.photo_ids[1:3]
    job_id = queue.admin.enqueue(
        photographer_id=gallery.photographer_id,
        gallery_id=gallery.gallery_id,
        job_type="restyle",
        payload={"photo_ids": chosen},
    )
    spy = SpyStorage(storage)
    drain(db_url, spy, settings)
    assert sorted(spy.gets) == sorted(gallery.keys[1:3])
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed" and job["total_images"] == 2
    rows = queue.conn.execute("SELECT id, ai_edits->>'job_id' AS job FROM photos").fetchall()
    assert {str(r["id"]) for r in rows if r["job"] == job_id} == set(chosen)
    assert queue.app.images_edited_count(gallery.photographer_id) == len(real_photos)


def test_a_storage_outage_is_retried_without_using_attempts_until_ten_in_a_row_then_they_count(
    queue, db_url, storage, settings, real_photos
) -> None:
    gallery = make_gallery(queue, storage, real_photos[:1])
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    spy = SpyStorage(storage, fail_gets=True)
    started = time.monotonic()
    drain(db_url, spy, replace(settings, retry_base_delay_s=0.3))
    elapsed = time.monotonic() - started

    job = queue.app.get_job(job_id)
    assert job is not None
    assert job["status"] == "failed" and job["attempts"] == 3
    assert "kept failing" in job["error_log"]
    # Ten attempts given back (storage is outside the job; no photo edited), then the three that count.
    assert len(spy.gets) == 10 + 3
    assert elapsed >= 11 * 0.3 + 0.6  # the backoff of attempt 1 each time it was given back, then 0.6 s
    # The photo the job never edited says why.
    row = queue.app.gallery_photo_rows(gallery.gallery_id)[0]
    assert row["status"] == "uploaded" and row["needs_review"]
    assert row["error"].startswith("not edited: the job failed before it got to this photo (storage download of")


def test_canceling_a_running_job_stops_its_worker(queue, db_url, storage, settings, real_photos) -> None:
    files = [(f"p{i:02d}.jpg", real_photos[i % len(real_photos)][1]) for i in range(24)]
    gallery = make_gallery(queue, storage, files)
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    daemon = make_daemon(db_url, SpyStorage(storage, get_delay_s=0.15), settings)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = queue.app.get_job(job_id)
            if job and job["processed_images"] >= 2:
                break
            time.sleep(0.02)
        assert queue.jobs.cancel(job_id) == "canceled"
        at_cancel = queue.app.get_job(job_id)["processed_images"]
        while time.monotonic() < deadline and queue.app.get_job(job_id)["locked_by"]:
            time.sleep(0.05)
        job = queue.app.get_job(job_id)
        assert job is not None
        assert job["status"] == "canceled" and job["locked_by"] is None and job["current_phase"] == "canceled"
        in_flight = settings.prefetch_photos + settings.io_threads + 2
        assert job["processed_images"] <= at_cancel + in_flight < len(files)
    finally:
        daemon.shutdown.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_new_job_wakes_an_idle_worker_through_notify(queue, db_url, storage, settings, real_photos) -> None:
    gallery = make_gallery(queue, storage, real_photos[:1])
    slow_poll = replace(settings, poll_interval_s=30.0)
    daemon = make_daemon(db_url, storage, slow_poll)
    idle = threading.Event()
    daemon.on_event = lambda name, fields: idle.set() if name == "idle" else None
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        assert idle.wait(30)
        time.sleep(0.3)  # the worker is now waiting on LISTEN
        job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            job = queue.app.get_job(job_id)
            if job and job["started_at"]:
                break
            time.sleep(0.01)
        job = queue.app.get_job(job_id)
        assert job is not None and job["started_at"] is not None
        latency = (job["started_at"] - job["created_at"]).total_seconds()
        print(f"NOTIFY wake-up latency: {latency * 1000:.1f} ms")
        assert latency < slow_poll.poll_interval_s  # it came from the NOTIFY, not from polling
    finally:
        daemon.shutdown.set()
        thread.join(timeout=30)


def test_worker_refuses_to_start_on_an_unmigrated_database(empty_db_url, storage, settings) -> None:
    from worker.errors import ConfigError

    daemon = make_daemon(empty_db_url, storage, settings, drain=True)
    with pytest.raises(ConfigError, match="apelier-worker migrate"):
        daemon.run()
    daemon.queue.close()


def test_a_gallery_through_supabase_storage_with_flaky_responses(queue, db_url, settings, real_photos) -> None:
    from tests.fake_supabase import FakeSupabase
    from worker.storage.supabase import SupabaseStorage

    with FakeSupabase() as fake:
        remote = SupabaseStorage(fake.url, fake.key, fake.bucket, backoff_s=0.01)
        gallery = make_gallery(queue, remote, real_photos[:2])  # type: ignore[arg-type]
        fake.state.faults = [None, "503", None, "500", "429"]
        job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
        drain(db_url, remote, settings)
        job = queue.app.get_job(job_id)
        assert job is not None and job["status"] == "completed" and job["processed_images"] == 2
        for row in photo_rows(queue, gallery.gallery_id).values():
            for key in (row["edited_key"], row["web_key"], row["thumb_key"]):
                assert fake.state.objects[key].content_type == "image/jpeg"
        remote.close()


def test_a_restyle_rewrites_large_outputs_through_supabase_storage(queue, db_url, settings, astronaut) -> None:
    """Outputs over 6 MB go up resumably; a restyle writes them again over the existing keys (Storage wants
    x-upsert on every resumable request, or it answers 409 and the job fails)."""
    from tests.fake_supabase import FakeSupabase
    from worker.storage.supabase import RESUMABLE_THRESHOLD, SupabaseStorage

    rng = np.random.default_rng(7)
    grainy = np.asarray(Image.fromarray(astronaut).resize((4000, 3000), Image.Resampling.BICUBIC), np.int16)
    grainy = np.clip(grainy + rng.normal(0, 40, grainy.shape), 0, 255).astype(np.uint8)  # ~15 MB as a JPEG
    with FakeSupabase() as fake:
        remote = SupabaseStorage(fake.url, fake.key, fake.bucket, backoff_s=0.01)
        gallery = make_gallery(queue, remote, [("grain.jpg", jpeg_bytes(grainy))])  # type: ignore[arg-type]
        queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
        drain(db_url, remote, settings)
        (row,) = photo_rows(queue, gallery.gallery_id).values()
        assert len(fake.state.objects[row["edited_key"]].data) > RESUMABLE_THRESHOLD

        fake.state.requests.clear()
        job_id = queue.admin.enqueue(
            photographer_id=gallery.photographer_id,
            gallery_id=gallery.gallery_id,
            job_type="restyle",
            payload={"photo_ids": gallery.photo_ids},
        )
        drain(db_url, remote, settings)
        job = queue.app.get_job(job_id)
        assert job is not None and job["status"] == "completed", job and job["error_log"]
        assert [m for m, _ in fake.state.requests].count("PATCH") >= 2  # the edited JPEG went up again, resumably
        (again,) = photo_rows(queue, gallery.gallery_id).values()
        assert again["ai_edits"]["job_id"] == job_id
        remote.close()


def test_without_listen_a_worker_still_finds_jobs_by_polling(queue, db_url, storage, settings, real_photos) -> None:
    """Behind a transaction pooler LISTEN does not work: polling alone must pick the job up."""

    class DeafListener:
        def start(self) -> bool:
            return False

        def wait(self, timeout_s: float) -> bool:
            time.sleep(timeout_s)
            return False

        def close(self) -> None:
            pass

    gallery = make_gallery(queue, storage, real_photos[:1])
    daemon = make_daemon(db_url, storage, replace(settings, poll_interval_s=0.5))
    daemon.listener = DeafListener()
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        time.sleep(0.3)
        job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (queue.app.get_job(job_id) or {}).get("status") != "completed":
            time.sleep(0.05)
        job = queue.app.get_job(job_id)
        assert job is not None and job["status"] == "completed"
        assert (job["started_at"] - job["created_at"]).total_seconds() < 0.5 + 0.5
    finally:
        daemon.shutdown.set()
        thread.join(timeout=30)


def test_gallery_level_culling_groups_near_duplicates_without_touching_the_photographers_fields(
    queue, db_url, storage, settings, real_photos, astronaut
) -> None:
    twin = jpeg_bytes(astronaut, quality=70)  # the same frame, recompressed
    files = [*real_photos, ("astronaut_again.jpg", twin)]
    gallery = make_gallery(queue, storage, files)
    queue.conn.execute(
        "UPDATE photos SET star_rating = 4, is_sneak_peek = true WHERE gallery_id = %s", (gallery.gallery_id,)
    )
    queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    drain(db_url, storage, settings)
    rows = photo_rows(queue, gallery.gallery_id)
    culling = {name: row["ai_edits"]["culling"] for name, row in rows.items()}
    assert culling["astronaut.jpg"]["group"] is not None
    assert culling["astronaut.jpg"]["group"]["id"] == culling["astronaut_again.jpg"]["group"]["id"]
    assert culling["coffee.jpg"]["group"] is None
    assert any(c["highlight"] for c in culling.values())
    assert all(r["star_rating"] == 4 and r["is_sneak_peek"] and not r["is_culled"] for r in rows.values())


def test_deleting_a_running_jobs_row_stops_its_worker(queue, db_url, storage, settings, real_photos) -> None:
    """The app deletes processing_jobs rows (its send_to_gallery action): the worker must let go."""
    files = [(f"p{i:02d}.jpg", real_photos[i % len(real_photos)][1]) for i in range(24)]
    gallery = make_gallery(queue, storage, files)
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    daemon = make_daemon(db_url, SpyStorage(storage, get_delay_s=0.15), settings)
    finished = threading.Event()
    daemon.on_event = lambda name, fields: finished.set() if name == "job_finished" else None
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (queue.app.get_job(job_id) or {}).get("processed_images", 0) < 2:
            time.sleep(0.02)
        queue.conn.execute("DELETE FROM processing_jobs WHERE id = %s", (job_id,))
        assert finished.wait(60)
        edited = queue.conn.execute(
            "SELECT count(*) AS n FROM photos WHERE gallery_id = %s AND status = 'edited'", (gallery.gallery_id,)
        ).fetchone()
        assert edited is not None and 2 <= edited["n"] < len(files)
        assert daemon.stats.jobs_failed == 0
    finally:
        daemon.shutdown.set()
        thread.join(timeout=30)
