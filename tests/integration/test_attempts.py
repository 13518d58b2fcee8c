"""What an attempt costs, against a real PostgreSQL (migration 7): deaths and failures count only when
they are the job's own; a photo that keeps killing its worker is failed alone; every photo a failed
or canceled job did not edit says why, whoever ended it (the app too, with its own rights)."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg

from tests.conftest import make_gallery
from tests.integration.test_migrate import APP_SCHEMA
from worker.queue.database import Queue
from worker.storage.local import LocalStorage


def gallery(queue: Queue, tmp_path: Path, photos: int) -> tuple[str, list[str]]:
    """A gallery job over ``photos`` photo rows (no files: these tests run the SQL only)."""
    g = make_gallery(queue, LocalStorage(tmp_path), [(f"p{i}.jpg", None) for i in range(photos)])
    return queue.admin.enqueue(photographer_id=g.photographer_id, gallery_id=g.gallery_id), g.photo_ids


def die(queue: Queue, job_id: str) -> str:
    """The job's worker stopped heartbeating an hour ago; another worker's reaper requeues it."""
    queue.conn.execute("UPDATE processing_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (job_id,))
    rows = queue.jobs.requeue_stale(60)
    assert [str(r["job_id"]) for r in rows] == [job_id]
    return str(rows[0]["new_status"])


def job_row(queue: Queue, job_id: str) -> dict:
    row = queue.app.get_job(job_id)
    assert row is not None
    return row


def test_runs_that_edit_a_photo_each_never_use_up_the_jobs_attempts(queue: Queue, db_url: str, tmp_path) -> None:
    job_id, photos = gallery(queue, tmp_path, 8)
    for n, photo in enumerate(photos):  # eight workers in a row die, each after editing one photo
        worker = Queue(db_url, f"w{n}")
        claimed = worker.jobs.claim()
        assert claimed is not None and claimed.attempts == 1
        assert worker.jobs.setup_done(job_id) == "processing"
        assert worker.jobs.photo_started(job_id, photo) == "processing"
        assert worker.jobs.finish_photo(job_id, photo, {"edited_key": f"k/{n}"}) == "processing"
        assert worker.jobs.photo_started(job_id, photos[(n + 1) % 8]) == "processing"  # dies on the next one
        assert die(queue, job_id) == "queued"
        worker.close()
    row = job_row(queue, job_id)
    assert row["status"] == "queued" and row["attempts"] == 0 and row["max_attempts"] == 3


def test_a_job_that_keeps_killing_its_workers_without_progress_still_ends_failed(
    queue: Queue, db_url: str, tmp_path
) -> None:
    """Every photo kills the worker processing it: each suspect, processed alone, is failed alone at
    its fourth death, and its third (a second death alone) counts; two photos isolated and the third
    suspect's counted death is the job's third attempt: it fails after a bounded number of deaths."""
    job_id, photos = gallery(queue, tmp_path, 4)
    deaths = 0
    while job_row(queue, job_id)["status"] == "queued":
        worker = Queue(db_url, f"w{deaths}")
        assert worker.jobs.claim() is not None
        worker.jobs.setup_done(job_id)
        in_flight = worker.jobs.photos_in_flight(job_id)
        suspects = [p for p in photos if p in in_flight and not in_flight[p][1]]
        # As the gallery job does: suspects alone first, else a batch of the photos not yet isolated.
        batch = suspects[:1] or [p for p in photos if p not in in_flight]
        for photo in batch:
            worker.jobs.photo_started(job_id, photo)
        die(queue, job_id)
        deaths += 1
        worker.close()
        assert deaths < 20
    row = job_row(queue, job_id)
    assert row["status"] == "failed" and "stopped responding (attempt 3 of 3)" in row["error_log"]
    isolated = [p for p, (_, alone) in queue.jobs.photos_in_flight(job_id).items() if alone]
    assert len(isolated) == 2 and deaths == 9


def test_deaths_while_waiting_on_io_cost_nothing_but_ten_in_a_row_count(queue: Queue, db_url: str, tmp_path) -> None:
    job_id, _ = gallery(queue, tmp_path, 2)
    for n in range(10):  # set up, nothing being processed: a worker killed during a download
        worker = Queue(db_url, f"w{n}")
        assert worker.jobs.claim() is not None
        worker.jobs.setup_done(job_id)
        assert die(queue, job_id) == "queued"
        worker.close()
    assert job_row(queue, job_id)["attempts"] == 0
    for n in range(3):  # then they count: the cause may be the job's after all
        worker = Queue(db_url, f"x{n}")
        assert worker.jobs.claim() is not None
        worker.jobs.setup_done(job_id)
        assert die(queue, job_id) == ("failed" if n == 2 else "queued")
        worker.close()


def test_a_photo_that_kills_its_worker_max_attempts_times_alone_is_failed_alone_with_a_reason(
    queue: Queue, tmp_path
) -> None:
    job_id, photos = gallery(queue, tmp_path, 3)
    for death in range(4):  # once with others (the first death of a photo may not be its fault), then alone
        assert queue.jobs.claim() is not None
        queue.jobs.setup_done(job_id)
        queue.jobs.photo_started(job_id, photos[1])
        die(queue, job_id)
        assert queue.jobs.photos_in_flight(job_id) == {photos[1]: (death + 1, death == 3)}
    row = job_row(queue, job_id)
    # Free: the first (shared), the first alone, the isolating one; the second alone counted.
    assert row["status"] == "queued" and row["attempts"] == 1
    rows = {r["id"]: r for r in queue.conn.execute("SELECT id::text, needs_review, status, ai_edits FROM photos")}
    error = rows[photos[1]]["ai_edits"]["error"]
    assert rows[photos[1]]["needs_review"] and rows[photos[1]]["status"] == "uploaded"
    assert error["kind"] == "WorkerCrash" and error["job_id"] == job_id
    assert error["reason"].startswith("processing this photo stopped the worker 4 times (out of memory?)")
    assert not rows[photos[0]]["needs_review"] and not rows[photos[2]]["needs_review"]
    # The job completes without it; the isolation stays, so a re-queue of the gallery skips it too.
    assert queue.jobs.claim() is not None
    for photo in (photos[0], photos[2]):
        queue.jobs.finish_photo(job_id, photo, {"edited_key": "k"})
    assert queue.jobs.complete(job_id, processed=2, total=3, progress={}, phase_timings={}, summary=None)
    assert queue.jobs.photos_in_flight(job_id) == {photos[1]: (4, True)}


def test_a_worker_that_lost_its_job_cannot_mark_photos_or_record_outputs(queue: Queue, db_url: str, tmp_path) -> None:
    job_id, photos = gallery(queue, tmp_path, 1)
    assert queue.jobs.claim() is not None
    die(queue, job_id)
    other = Queue(db_url, "other")
    assert other.jobs.claim() is not None
    assert queue.jobs.photo_started(job_id, photos[0]) == "lost"
    assert queue.jobs.photo_processed(job_id, photos[0], ["k/edited/p0.jpg"]) == "lost"
    assert queue.jobs.setup_done(job_id) == "lost"
    assert queue.jobs.end_attempt(job_id, "x", 1.0, outside=False) == "lost"
    assert other.jobs.photos_in_flight(job_id) == {}
    assert queue.conn.execute("SELECT count(*) AS n FROM apelier.pending_outputs").fetchone() == {"n": 0}
    other.close()


def test_every_photo_a_failed_job_did_not_edit_says_why_and_its_own_reasons_stay(queue: Queue, tmp_path) -> None:
    job_id, photos = gallery(queue, tmp_path, 4)
    assert queue.jobs.claim() is not None
    queue.jobs.finish_photo(job_id, photos[0], {"edited_key": "e", "web_key": "w", "thumb_key": "t"})
    queue.jobs.fail_photo(job_id, photos[1], {"phase": "decode", "reason": "not an image", "kind": "DecodeError"})
    assert queue.jobs.end_attempt(job_id, "storage refused the upload (403)", None, outside=False) == "failed"
    rows = {r["id"]: r for r in queue.conn.execute("SELECT id::text, needs_review, status, ai_edits FROM photos")}
    assert rows[photos[0]]["status"] == "edited" and not rows[photos[0]]["needs_review"]
    assert rows[photos[1]]["ai_edits"]["error"]["reason"] == "not an image"
    for photo in photos[2:]:
        error = rows[photo]["ai_edits"]["error"]
        assert rows[photo]["needs_review"] and rows[photo]["status"] == "uploaded"
        assert error == {
            "phase": "job",
            "kind": "JobFailed",
            "job_id": job_id,
            "reason": "not edited: the job failed before it got to this photo (storage refused the upload "
            "(403)); queue the gallery again to edit it",
        }
    # The app re-queues it and a run edits them: the reason goes with the edit.
    queue.conn.execute("UPDATE processing_jobs SET status = 'queued' WHERE id = %s", (job_id,))
    assert queue.jobs.claim() is not None
    queue.jobs.finish_photo(job_id, photos[2], {"edited_key": "e2", "ai_edits": {"job_id": job_id}})
    row = queue.conn.execute("SELECT needs_review, ai_edits FROM photos WHERE id = %s", (photos[2],)).fetchone()
    assert row == {"needs_review": False, "ai_edits": {"job_id": job_id}}


def test_the_apps_own_cancel_explains_the_photos_with_the_apps_rights(empty_db_url: str) -> None:
    """The app cancels with its own role, which has no rights on schema apelier (nor should it)."""
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(APP_SCHEMA.read_text().encode())
    queue = Queue(empty_db_url, "w")
    queue.admin.migrate()
    ann, ann_user = "22222222-2222-4222-8222-222222222222", "11111111-1111-4111-8111-111111111111"
    bob = str(uuid.uuid4())
    queue.conn.execute("INSERT INTO photographers (id, email, name) VALUES (%s, 'bob@example.com', 'Bob')", (bob,))
    mine, theirs = queue.admin.insert_gallery(ann, "Mine"), queue.admin.insert_gallery(bob, "Theirs")
    photos = [
        queue.admin.insert_photo(photographer_id=owner, gallery_id=g, key=f"{owner}/{g}/uploads/{n}.jpg", filename=n)
        for owner, g, n in ((ann, mine, "a"), (ann, mine, "b"), (bob, theirs, "c"))
    ]
    job_id = queue.admin.enqueue(photographer_id=ann, gallery_id=mine)
    # A row naming another photographer's gallery (the app's insert policy checks photographer_id only).
    stray = queue.admin.enqueue(photographer_id=ann, gallery_id=theirs)
    claimed = queue.jobs.claim()
    assert claimed is not None and claimed.id == job_id
    queue.jobs.setup_done(job_id)
    queue.jobs.photo_started(job_id, photos[0])
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE app_user NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO app_user")
        conn.execute("GRANT USAGE ON SCHEMA auth TO app_user")
        conn.execute("SET ROLE app_user")
        conn.execute("SELECT set_config('request.jwt.claim.sub', %s, false)", (ann_user,))
        for target, change in (
            (job_id, "status = 'failed', error_log = 'Cancelled by user'"),
            (stray, "status = 'canceled'"),
        ):
            done = conn.execute(f"UPDATE processing_jobs SET {change} WHERE id = %s", (target,))
            assert done.rowcount == 1
        conn.execute("RESET ROLE")
    rows = {r["id"]: r for r in queue.conn.execute("SELECT id::text, needs_review, ai_edits FROM photos")}
    for photo in photos[:2]:  # the app's 'failed' while the job is leased is its cancel (migration 6)
        assert rows[photo]["needs_review"] and rows[photo]["ai_edits"]["error"]["kind"] == "JobCanceled"
        assert rows[photo]["ai_edits"]["error"]["reason"] == (
            "not edited: the job was canceled before it got to this photo; queue the gallery again to edit it"
        )
    assert not rows[photos[2]]["needs_review"]  # Bob's photo: untouched
    assert queue.jobs.photos_in_flight(job_id) == {}
    assert queue.conn.execute("SELECT count(*) AS n FROM apelier.job_runs").fetchone() == {"n": 0}
    queue.close()


def test_a_canceled_run_finds_its_own_unrecorded_outputs_at_once_and_they_outlive_the_job_row(
    queue: Queue, db_url: str, tmp_path
) -> None:
    """apelier.own_unrecorded_outputs (migration 9): the outputs this worker uploaded for photos it never
    recorded, once the job is canceled for it or its row is gone, with no lease to wait; none of another
    worker's (a chunk's worker may still be uploading); the rows survive the app deleting the job."""
    job_id, photos = gallery(queue, tmp_path, 2)
    owner = str(job_row(queue, job_id)["photographer_id"])
    assert queue.jobs.claim() is not None
    assert queue.jobs.photo_processed(job_id, photos[0], ["k/edited/p0.jpg"]) == "processing"
    assert queue.jobs.photo_processed(job_id, photos[1], ["k/edited/p1.jpg", "k/web/p1.jpg"]) == "processing"
    assert queue.jobs.finish_photo(job_id, photos[0], {"edited_key": "k/edited/p0.jpg"}) == "processing"
    queue.conn.execute(
        "INSERT INTO apelier.pending_outputs (job_id, photo_id, key, worker) VALUES (%s, %s, 'k/thumb/p1.jpg', 'w2')",
        (job_id, photos[1]),
    )
    assert queue.jobs.own_unrecorded_outputs(job_id) == []  # still processing: nothing is anyone's to delete

    assert queue.jobs.cancel(job_id) == "canceled"
    mine = [(r["key"], str(r["photographer_id"]), r["referenced"]) for r in queue.jobs.own_unrecorded_outputs(job_id)]
    assert sorted(mine) == [("k/edited/p1.jpg", owner, False), ("k/web/p1.jpg", owner, False)]

    queue.conn.execute("DELETE FROM processing_jobs WHERE id = %s", (job_id,))  # the app deletes the row
    assert queue.jobs.finish_photo(job_id, photos[1], {"edited_key": "k/edited/p1.jpg"}) == "deleted"
    assert sorted(r["key"] for r in queue.jobs.own_unrecorded_outputs(job_id)) == ["k/edited/p1.jpg", "k/web/p1.jpg"]
    # What nobody deletes at once (here w2's) the periodic sweep finds once the job has ended.
    swept = sorted(r["key"] for r in queue.jobs.unrecorded_outputs(0.0))
    assert swept == ["k/edited/p1.jpg", "k/thumb/p1.jpg", "k/web/p1.jpg"]
    for key in ("k/edited/p1.jpg", "k/web/p1.jpg"):
        queue.jobs.forget_output(job_id, key)
    assert [r["key"] for r in queue.jobs.unrecorded_outputs(0.0)] == ["k/thumb/p1.jpg"]
