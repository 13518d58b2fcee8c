"""The daemon and its job runners over the in-memory double (worker/queue/memory.py): behaviour of the
worker, not of SQL (that is tests/integration; tests/integration/test_queue_contract.py keeps the
double honest). Real photos, real storage, the real pipeline on the CPU; no PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import replace

import psycopg
import pytest

from tests.conftest import make_gallery
from tests.integration.test_daemon import SpyStorage, drain, make_daemon
from tests.integration.test_style_job import training_photos, upload_pairs
from worker.errors import ConfigError
from worker.queue.database import Queue
from worker.queue.memory import MemoryDatabase
from worker.queue.migrations import MIN_SCHEMA_VERSION, latest_version


@pytest.fixture
def db() -> MemoryDatabase:
    return MemoryDatabase()


@pytest.fixture
def queue(db: MemoryDatabase) -> Queue:
    return db.queue("test-app")


def test_a_photo_keyed_outside_its_photographers_folder_is_refused_unread(
    queue, db, storage, settings, real_photos
) -> None:
    victim = make_gallery(queue, storage, real_photos[:1])
    attacker = make_gallery(queue, storage, real_photos[1:2])
    # A row of the attacker's gallery pointing at the victim's original.
    queue.admin.insert_photo(
        photographer_id=attacker.photographer_id,
        gallery_id=attacker.gallery_id,
        key=victim.keys[0],
        filename="stolen.jpg",
    )
    spy = SpyStorage(storage)
    job_id = queue.admin.enqueue(photographer_id=attacker.photographer_id, gallery_id=attacker.gallery_id)
    drain(db, spy, settings)

    assert victim.keys[0] not in spy.gets
    row = {r["filename"]: r for r in queue.app.gallery_photo_rows(attacker.gallery_id)}["stolen.jpg"]
    assert row["needs_review"] and "outside photographer" in row["error"]
    assert all(key.startswith(f"{attacker.photographer_id}/") for key, _ in spy.puts)
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed"


def test_a_job_for_another_photographers_gallery_fails_without_retry(queue, db, storage, settings, real_photos):
    victim = make_gallery(queue, storage, real_photos[:1])
    attacker = make_gallery(queue, storage, real_photos[1:2])
    job_id = queue.admin.enqueue(photographer_id=attacker.photographer_id, gallery_id=victim.gallery_id)
    spy = SpyStorage(storage)
    drain(db, spy, settings)
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "failed" and job["attempts"] == 1
    assert "belongs to another photographer" in job["error_log"]
    assert spy.gets == [] and spy.puts == []


def test_a_database_blip_while_draining_is_retried_not_fatal(db, storage, settings, monkeypatch) -> None:
    """The drain check (`pending`) loses the connection once: the loop waits and tries again."""
    daemon = make_daemon(db, storage, replace(settings, poll_interval_s=0.05), drain=True)
    real = daemon.queue.jobs.pending
    calls = []

    def flaky(job_types):
        calls.append(job_types)
        if len(calls) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real(job_types)

    monkeypatch.setattr(daemon.queue.jobs, "pending", flaky)
    events = []
    daemon.on_event = lambda name, fields: events.append(name)
    assert daemon.run() == 0
    assert len(calls) == 2 and "database_unavailable" in events


def test_too_few_usable_pairs_end_with_a_training_error_that_says_why(queue, db, storage, settings) -> None:
    photographer = queue.admin.upsert_photographer(str(uuid.uuid4()), "Studio")
    profile = queue.admin.insert_style_profile(photographer, "Warm")
    pairs = upload_pairs(storage, photographer, training_photos()[:3])
    pairs.append({"original_key": f"{photographer}/missing/a.jpg", "edited_key": f"{photographer}/missing/b.jpg"})
    pairs.append({"original_key": f"{uuid.uuid4()}/theirs.jpg", "edited_key": pairs[0]["edited_key"]})
    job_id = queue.admin.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"pairs": pairs}
    )
    drain(db, storage, settings)
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "failed" and job["attempts"] == 1  # not retried
    row = queue.app.style_profile(profile)
    assert row is not None and row["training_status"] == "error"
    assert row["training_error"].startswith("only 3 of 5 before/after pairs are usable; at least 5 are needed")
    assert "not in storage" in row["training_error"] and "outside photographer" in row["training_error"]
    assert job["error_log"] == row["training_error"]


def test_a_worker_refuses_an_older_schema_and_works_on_a_newer_one(storage, settings, real_photos) -> None:
    """A rolling upgrade: a box of a newer release migrated first; this one keeps working."""
    older = MemoryDatabase(schema_version=MIN_SCHEMA_VERSION - 1)
    with pytest.raises(ConfigError, match=f"schema version {MIN_SCHEMA_VERSION - 1}; this worker needs version"):
        make_daemon(older, storage, settings, drain=True).run()

    newer = MemoryDatabase(schema_version=latest_version() + 2)
    queue = newer.queue("app")
    gallery = make_gallery(queue, storage, real_photos[:1])
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    assert drain(newer, storage, settings).stats.jobs_completed == 1
    assert (queue.app.get_job(job_id) or {})["status"] == "completed"
    assert queue.app.images_edited_count(gallery.photographer_id) == 1


def test_a_split_gallery_runs_over_the_double_as_over_postgresql(queue, db, storage, settings, real_photos) -> None:
    """Chunks through the daemon over the double: one worker splits the gallery, runs every chunk, and
    finishes the gallery once, after the last."""
    gallery = make_gallery(queue, storage, real_photos[:4] + real_photos[:1])
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    drain(db, storage, replace(settings, chunk_photos=2))
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed" and job["processed_images"] == 5
    assert [c["status"] for c in queue.jobs.chunks(job_id)] == ["done"] * 3
    assert job["progress"]["workers"] == {"test-worker": 5} and job["progress"]["chunks"]["total"] == 3
    assert queue.app.images_edited_count(gallery.photographer_id) == 5
    assert all(r["error"] is None for r in queue.app.gallery_photo_rows(gallery.gallery_id))
