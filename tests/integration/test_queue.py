"""The queue functions against a real PostgreSQL: claim, lease, heartbeat, finish, fail, requeue, cancel."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import psycopg
import pytest

from tests.conftest import make_gallery
from worker.queue.database import Queue
from worker.queue.sql import queries
from worker.storage.local import LocalStorage


def _photographer_and_gallery(queue: Queue) -> tuple[str, str]:
    pid = str(uuid.uuid4())
    queue.admin.upsert_photographer(pid, "P")
    return pid, queue.admin.insert_gallery(pid, "G")


def test_every_named_query_exists_once() -> None:
    names = queries()
    for needed in ("claim_job", "heartbeat", "finish_photo", "fail_job", "requeue_stale", "cancel_job"):
        assert needed in names


def test_eight_concurrent_workers_claim_each_of_200_jobs_exactly_once(db_url: str) -> None:
    setup = Queue(db_url, "setup")
    pid, gid = _photographer_and_gallery(setup)
    job_ids = {setup.admin.enqueue(photographer_id=pid, gallery_id=gid) for _ in range(200)}
    setup.close()

    claims: list[tuple[str, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        q = Queue(db_url, f"worker-{n}")
        start.wait()
        while (job := q.jobs.claim()) is not None:
            with lock:
                claims.append((job.id, q.worker_id))
        q.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    counts = Counter(job_id for job_id, _ in claims)
    assert set(counts) == job_ids
    assert max(counts.values()) == 1
    assert len({w for _, w in claims}) > 1  # the work was actually shared
    check = Queue(db_url, "check")
    rows = check.conn.execute("SELECT locked_by, attempts, status FROM processing_jobs").fetchall()
    check.close()
    assert all(r["status"] == "processing" and r["attempts"] == 1 for r in rows)
    owner = dict(claims)
    assert all(r["locked_by"] in set(owner.values()) for r in rows)


def test_claim_takes_priority_then_age_and_skips_future_run_after(queue: Queue) -> None:
    pid, gid = _photographer_and_gallery(queue)
    low = queue.admin.enqueue(photographer_id=pid, gallery_id=gid, priority=200)
    first = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    second = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    urgent = queue.admin.enqueue(photographer_id=pid, gallery_id=gid, priority=1)
    later = queue.admin.enqueue(photographer_id=pid, gallery_id=gid, priority=0)
    queue.conn.execute("UPDATE processing_jobs SET run_after = now() + interval '1 hour' WHERE id = %s", (later,))
    order = [j.id for j in iter(queue.jobs.claim, None)]
    assert order == [urgent, first, second, low]


def test_claim_filters_by_job_type(queue: Queue) -> None:
    pid, gid = _photographer_and_gallery(queue)
    queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    assert queue.jobs.claim(["train_style"]) is None
    assert queue.jobs.claim(["gallery"]) is not None


def test_lease_checks_stop_a_worker_that_lost_its_job(queue: Queue, db_url: str) -> None:
    pid, gid = _photographer_and_gallery(queue)
    job_id = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    job = queue.jobs.claim()
    assert job is not None and job.id == job_id
    assert queue.jobs.heartbeat(job_id) == "processing"
    other = Queue(db_url, "other")
    assert other.jobs.heartbeat(job_id) == "lost"
    assert other.jobs.fail(job_id, "nope", None) == "lost"
    assert not other.jobs.complete(job_id, processed=0, total=0, progress={}, phase_timings={}, summary=None)
    other.close()
    queue.conn.execute("DELETE FROM processing_jobs WHERE id = %s", (job_id,))
    assert queue.jobs.heartbeat(job_id) == "deleted"


def test_fail_with_retry_sets_backoff_then_failed_when_attempts_are_used_up(queue: Queue) -> None:
    pid, gid = _photographer_and_gallery(queue)
    job_id = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    job = queue.jobs.claim()
    assert job is not None
    assert queue.jobs.fail(job_id, "storage timed out", 30.0) == "queued"
    row = queue.app.get_job(job_id)
    assert row is not None
    assert row["status"] == "queued" and row["locked_by"] is None and row["attempts"] == 1
    delay = queue.conn.execute("SELECT extract(epoch FROM run_after - now()) AS s FROM processing_jobs").fetchone()
    assert delay is not None and 25 < float(delay["s"]) <= 30
    assert queue.jobs.claim() is None  # not before run_after
    queue.conn.execute("UPDATE processing_jobs SET run_after = now()")
    assert queue.jobs.claim() is not None
    assert queue.jobs.fail(job_id, "storage timed out again", None) == "failed"
    row = queue.app.get_job(job_id)
    assert row is not None
    assert row["status"] == "failed" and row["error_log"] == "storage timed out again" and row["completed_at"]


def test_stale_jobs_are_requeued_then_failed_after_max_attempts(queue: Queue) -> None:
    pid, gid = _photographer_and_gallery(queue)
    job_id = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    queue.conn.execute("UPDATE processing_jobs SET max_attempts = 2")
    for attempt in (1, 2):
        job = queue.jobs.claim()
        assert job is not None and job.attempts == attempt
        assert queue.jobs.requeue_stale(60) == []  # fresh heartbeat: not stale
        queue.conn.execute("UPDATE processing_jobs SET heartbeat_at = now() - interval '2 minutes'")
        rows = queue.jobs.requeue_stale(60)
        assert [(str(r["job_id"]), r["previous_worker"]) for r in rows] == [(job_id, "test-worker")]
    row = queue.app.get_job(job_id)
    assert row is not None
    assert row["status"] == "failed"
    assert "stopped responding" in row["error_log"]


def test_requeue_leaves_historic_processing_rows_alone(queue: Queue) -> None:
    """A row the old engine left in 'processing' (no heartbeat ever) is not ours to requeue."""
    pid, gid = _photographer_and_gallery(queue)
    job_id = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    queue.conn.execute("UPDATE processing_jobs SET status = 'processing' WHERE id = %s", (job_id,))
    assert queue.jobs.requeue_stale(0.001) == []


def test_release_keeps_progress_and_gives_the_attempt_back(queue: Queue) -> None:
    pid, gid = _photographer_and_gallery(queue)
    job_id = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    first = queue.jobs.claim()
    assert first is not None and first.first_claim
    queue.jobs.update_progress(
        job_id, phase="style", processed=3, total=10, progress={"processed": 3}, phase_timings={}
    )
    assert queue.jobs.release(job_id)
    row = queue.app.get_job(job_id)
    assert row is not None
    assert (row["status"], row["attempts"], row["processed_images"], row["progress"]) == (
        "queued",
        0,
        3,
        {"processed": 3},
    )
    again = queue.jobs.claim()  # attempt 1 again, but not the job's first claim: its queue wait was counted
    assert again is not None and again.attempts == 1 and not again.first_claim


def test_cancel_a_queued_job_and_a_running_one(queue: Queue) -> None:
    pid, gid = _photographer_and_gallery(queue)
    queued = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    assert queue.jobs.cancel(queued) == "canceled"
    assert queue.jobs.claim() is None
    assert queue.jobs.cancel(queued) is None  # already ended

    running = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    assert queue.jobs.claim() is not None
    assert queue.jobs.cancel(running) == "canceled"
    assert queue.jobs.heartbeat(running) == "canceled"  # the worker sees it at its next check
    assert queue.jobs.ack_cancel(running, 2, {"processed": 2})
    row = queue.app.get_job(running)
    assert row is not None
    assert row["status"] == "canceled" and row["locked_by"] is None and row["completed_at"]


def test_app_requeue_of_a_finished_job_starts_it_afresh(queue: Queue) -> None:
    pid, gid = _photographer_and_gallery(queue)
    job_id = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    queue.jobs.claim()
    queue.jobs.fail(job_id, "boom", None)
    # What the app does to process new uploads: reset the old row to queued.
    queue.conn.execute(
        "UPDATE processing_jobs SET status = 'queued', current_phase = 'queued' WHERE id = %s", (job_id,)
    )
    row = queue.app.get_job(job_id)
    assert row is not None and row["attempts"] == 0
    job = queue.jobs.claim()
    assert job is not None and job.attempts == 1


def test_billing_once_per_photo_even_when_two_workers_race(queue: Queue, db_url: str, tmp_path) -> None:
    storage = LocalStorage(tmp_path / "s")
    gallery = make_gallery(queue, storage, [("a.jpg", b"x"), ("b.jpg", b"y")])
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    a = Queue(db_url, "worker-a")
    b = Queue(db_url, "worker-b")
    assert a.jobs.claim() is not None
    fields = {"edited_key": "k", "web_key": "w", "thumb_key": "t", "width": 1, "height": 1, "ai_edits": {}}
    assert a.jobs.finish_photo(job_id, gallery.photo_ids[0], fields) == "processing"
    # Worker A stalls past its lease; B takes the job over and redoes the same photo.
    queue.conn.execute("UPDATE processing_jobs SET heartbeat_at = now() - interval '1 hour'")
    b.jobs.requeue_stale(60)
    assert b.jobs.claim() is not None
    assert b.jobs.finish_photo(job_id, gallery.photo_ids[0], fields) == "processing"
    assert b.jobs.finish_photo(job_id, gallery.photo_ids[1], fields) == "processing"
    # A wakes up and tries to record a photo: refused, and nothing is billed.
    assert a.jobs.finish_photo(job_id, gallery.photo_ids[1], fields) == "lost"
    assert queue.app.images_edited_count(gallery.photographer_id) == 2
    ledger = queue.conn.execute("SELECT count(*) AS n FROM apelier.billed_photos").fetchone()
    assert ledger is not None and ledger["n"] == 2
    a.close()
    b.close()


def test_job_type_and_target_checks(queue: Queue) -> None:
    pid, gid = _photographer_and_gallery(queue)
    with pytest.raises(psycopg.errors.CheckViolation):
        queue.admin.enqueue(photographer_id=pid, gallery_id=None, job_type="gallery")
    with pytest.raises(psycopg.errors.CheckViolation):
        queue.admin.enqueue(photographer_id=pid, gallery_id=gid, job_type="bogus")
    with pytest.raises(psycopg.errors.CheckViolation):
        queue.admin.enqueue(photographer_id=pid, job_type="train_style")  # needs a style profile


def test_notify_is_sent_when_a_job_is_queued(db_url: str) -> None:
    from worker.queue.listener import Listener

    listener = Listener(db_url)
    assert listener.start()
    q = Queue(db_url, "app")
    pid, gid = _photographer_and_gallery(q)
    assert not listener.wait(0.05)
    t0 = time.monotonic()
    q.admin.enqueue(photographer_id=pid, gallery_id=gid)
    assert listener.wait(5.0)
    assert time.monotonic() - t0 < 5.0
    listener.close()
    q.close()


def test_culling_suggestions_only_reach_the_jobs_own_gallery(queue: Queue, tmp_path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    mine = make_gallery(queue, storage, [("a.jpg", None)])
    other = make_gallery(queue, storage, [("b.jpg", None)])
    job_id = queue.admin.enqueue(photographer_id=mine.photographer_id, gallery_id=mine.gallery_id)
    assert queue.jobs.claim() is not None
    suggestion = {"group": 1, "pick": True}
    updated = queue.jobs.merge_photo_suggestions(
        job_id, {mine.photo_ids[0]: suggestion, other.photo_ids[0]: suggestion}
    )
    assert updated == 1
    rows = {
        r["id"]: r["ai_edits"]
        for r in queue.conn.execute(
            "SELECT id::text, ai_edits FROM photos WHERE id = ANY(%s::uuid[])", ([*mine.photo_ids, *other.photo_ids],)
        ).fetchall()
    }
    assert rows[mine.photo_ids[0]]["culling"] == suggestion
    assert "culling" not in (rows[other.photo_ids[0]] or {})
