"""One big gallery over several workers (sql/migrations/0008_job_chunks.sql), against real PostgreSQL:
chunks claimed once each with SKIP LOCKED, the last one out finalising exactly once, a dead worker's
chunk requeued by the reaper's function, a cancel reaching every chunk; and the daemon in-process:
a large gallery split and finished by two daemons, a small one left as one claim."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import jpeg_bytes, make_gallery
from tests.integration.test_daemon import make_daemon
from worker.commands.status import print_status
from worker.queue.database import Queue
from worker.service.config import Settings
from worker.storage.local import LocalStorage

FIELDS = {"edited_key": "e", "web_key": "w", "thumb_key": "t", "width": 3, "height": 2}


def gallery_job(queue: Queue, photos: int) -> tuple[str, str, list[str]]:
    """A photographer's gallery of ``photos`` rows and its job, claimed by ``queue``'s worker."""
    pid = str(uuid.uuid4())
    queue.admin.upsert_photographer(pid, "Studio")
    gid = queue.admin.insert_gallery(pid, "Wedding")
    ids = [
        queue.admin.insert_photo(photographer_id=pid, gallery_id=gid, key=f"{pid}/{gid}/uploads/{i}.jpg",
                                 filename=f"{i}.jpg", sort_order=i)
        for i in range(photos)
    ]  # fmt: skip
    job = queue.admin.enqueue(photographer_id=pid, gallery_id=gid)
    claimed = queue.jobs.claim()
    assert claimed is not None and claimed.id == job and claimed.chunk is None
    return pid, job, ids


def fields(job: str, worker: str) -> dict[str, Any]:
    return {**FIELDS, "ai_edits": {"job_id": job, "worker": worker}}


def test_chunks_are_claimed_once_each_and_the_last_one_out_finalises_once(db_url: str) -> None:
    owner = Queue(db_url, "w-split")
    pid, job, ids = gallery_job(owner, 20)
    assert owner.jobs.split(job, ids, 3, processed=0, total=20) == "processing"
    row = owner.app.get_job(job)
    assert row is not None and row["locked_by"] == "apelier:chunks" and row["status"] == "processing"
    assert owner.jobs.heartbeat(job) == "lost"  # the job is its chunks' now
    assert [c["photos"] for c in owner.jobs.chunks(job)] == [3, 3, 3, 3, 3, 3, 2]

    claims: dict[str, list[Any]] = {}
    ends: dict[str, list[str]] = {}
    barrier = threading.Barrier(5)

    def worker(n: int) -> None:
        queue = Queue(db_url, f"w{n}")
        got, said = claims.setdefault(queue.jobs.worker_id, []), ends.setdefault(queue.jobs.worker_id, [])
        barrier.wait()
        while (chunk := queue.jobs.claim()) is not None:
            assert chunk.id == job and chunk.attempts == 1 and queue.jobs.claim() is None  # one chunk at a time
            got.append(chunk.chunk)
            for photo in chunk.chunk_photo_ids:
                assert queue.jobs.finish_photo(job, photo, fields(job, queue.jobs.worker_id)) == "processing"
            said.append(queue.jobs.end_chunk(job))
        queue.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    taken = sorted(c for got in claims.values() for c in got)
    assert taken == list(range(7))  # every chunk, each once
    said = Counter(s for got in ends.values() for s in got)
    assert said == {"done": 6, "finalise": 1}
    finaliser = next(w for w, got in ends.items() if "finalise" in got)
    row = owner.app.get_job(job)
    assert row is not None and row["locked_by"] == finaliser and row["processed_images"] == 20
    assert owner.app.images_edited_count(pid) == 20
    per_worker = owner.jobs.chunk_workers(job)
    assert sum(per_worker.values()) == 20 and set(per_worker) <= set(claims)
    # The finaliser holds the job as any job's holder: the ordinary operations complete it.
    finishing = Queue(db_url, finaliser)
    assert finishing.jobs.heartbeat(job) == "processing"
    assert finishing.jobs.complete(job, processed=20, total=20, progress={}, phase_timings={}, summary=None)
    assert {c["status"] for c in owner.jobs.chunks(job)} == {"done"}
    finishing.close()
    owner.close()


def test_status_shows_a_split_gallery_by_its_chunks_and_who_holds_each(db_url: str, settings: Settings, capsys) -> None:
    owner = Queue(db_url, "w-split")
    _, job, ids = gallery_job(owner, 5)
    owner.jobs.split(job, ids, 2, processed=0, total=5)
    a = Queue(db_url, "box-a")
    chunk = a.jobs.claim()
    assert (
        chunk is not None and a.jobs.finish_photo(job, chunk.chunk_photo_ids[0], fields(job, "box-a")) == "processing"
    )
    report = owner.admin.status_report()
    assert [(str(c["job_id"]), c["chunk"], c["locked_by"], c["edited"]) for c in report["chunks"]] == [
        (job, 0, "box-a", 1), (job, 1, None, 0), (job, 2, None, 0),
    ]  # fmt: skip
    owner.conn.execute("UPDATE apelier.job_chunks SET heartbeat_at = heartbeat_at - interval '1 hour'")
    assert print_status(db_url, settings) == 0
    out = capsys.readouterr().out
    assert f"{job} gallery" in out and "split in 3 chunks" in out and "worker apelier:chunks" not in out
    assert "chunk 1   processing 1/2 photos  worker box-a" in out and "requeues this chunk" in out
    assert "chunk 2   queued     0/2 photos  attempts 0" in out
    a.close()
    owner.close()


def test_a_dead_workers_chunk_is_requeued_with_the_rules_a_job_has(db_url: str) -> None:
    owner = Queue(db_url, "w-split")
    _, job, ids = gallery_job(owner, 6)
    owner.jobs.split(job, ids, 3, processed=0, total=6)
    a, b = Queue(db_url, "a"), Queue(db_url, "b")
    chunk = a.jobs.claim()
    assert chunk is not None and chunk.chunk == 0
    assert a.jobs.setup_done(job) == "processing"
    assert a.jobs.finish_photo(job, chunk.chunk_photo_ids[0], fields(job, "a")) == "processing"
    assert a.jobs.photo_started(job, chunk.chunk_photo_ids[1]) == "processing"
    owner.conn.execute(
        "UPDATE apelier.job_chunks SET heartbeat_at = heartbeat_at - interval '1 hour' WHERE locked_by = 'a'"
    )
    requeued = b.jobs.requeue_stale(60)
    assert [(str(r["job_id"]), r["new_status"], r["previous_worker"]) for r in requeued] == [(job, "queued", "a")]
    assert a.jobs.heartbeat(job) == "lost" and a.jobs.finish_photo(job, chunk.chunk_photo_ids[2], FIELDS) == "lost"
    first = owner.jobs.chunks(job)[0]
    assert first["status"] == "queued" and first["attempts"] == 0  # it had edited a photo: given back
    assert b.jobs.photos_in_flight(job) == {chunk.chunk_photo_ids[1]: (1, False)}  # a suspect now
    again = b.jobs.claim()
    assert again is not None and again.chunk == 0 and again.attempts == 1
    # A chunk that dies in its own set-up, every time, fails the job after max_attempts (3).
    c = Queue(db_url, "c")
    other = c.jobs.claim()
    assert other is not None and other.chunk == 1
    for attempt in (1, 2, 3):
        owner.conn.execute(
            "UPDATE apelier.job_chunks SET heartbeat_at = heartbeat_at - interval '1 hour' WHERE locked_by = 'c'"
        )
        status = [r["new_status"] for r in b.jobs.requeue_stale(60)]
        assert status == (["queued"] if attempt < 3 else ["failed"])
        if attempt < 3:
            assert (c.jobs.claim() or other).chunk == 1
    row = owner.app.get_job(job)
    assert row is not None and row["status"] == "failed" and row["locked_by"] is None
    assert "part 2 of this job stopped responding (attempt 3 of 3)" in row["error_log"]
    assert b.jobs.heartbeat(job) == "lost"  # every chunk was taken from its worker
    assert {c["status"] for c in owner.jobs.chunks(job)} == {"canceled"}
    for q in (owner, a, b, c):
        q.close()


@pytest.mark.parametrize("how", ["app", "worker"])
def test_a_cancel_reaches_every_chunk(db_url: str, how: str) -> None:
    owner = Queue(db_url, "w-split")
    pid, job, ids = gallery_job(owner, 9)
    owner.jobs.split(job, ids, 3, processed=0, total=9)
    a, b, c = Queue(db_url, "a"), Queue(db_url, "b"), Queue(db_url, "c")
    chunk_a, chunk_b = a.jobs.claim(), b.jobs.claim()
    assert chunk_a is not None and chunk_b is not None
    assert a.jobs.finish_photo(job, chunk_a.chunk_photo_ids[0], fields(job, "a")) == "processing"
    if how == "app":  # handleCancelJob
        owner.conn.execute(
            "UPDATE processing_jobs SET status = 'failed', error_log = 'Cancelled by user', completed_at = now() "
            "WHERE id = %s",
            (job,),
        )
    else:
        assert owner.jobs.cancel(job) == "canceled"
    assert a.jobs.heartbeat(job) == b.jobs.heartbeat(job) == "canceled"
    assert b.jobs.finish_photo(job, chunk_b.chunk_photo_ids[0], FIELDS) == "canceled"  # nothing more recorded
    assert c.jobs.claim() is None  # the third chunk is never claimed
    assert {r["status"] for r in owner.jobs.chunks(job)} == {"canceled"}
    assert a.jobs.ack_cancel(job, 1, {}) is True
    row = owner.app.get_job(job)
    assert row is not None and row["locked_by"] == "apelier:chunks"  # b still holds its chunk
    assert b.jobs.ack_cancel(job, 0, {}) is True and b.jobs.ack_cancel(job, 0, {}) is False
    row = owner.app.get_job(job)
    assert row is not None and row["locked_by"] is None and row["heartbeat_at"] is None
    assert row["completed_at"] is not None and row["processed_images"] == 1
    assert owner.app.images_edited_count(pid) == 1
    said = {r["status"]: r["error"] for r in owner.app.gallery_photo_rows(row["gallery_id"])}
    assert said["uploaded"].startswith("not edited: the job was canceled")
    for q in (owner, a, b, c):
        q.close()


def test_a_cancel_with_no_chunk_held_lets_go_at_once(db_url: str) -> None:
    owner = Queue(db_url, "w-split")
    _, job, ids = gallery_job(owner, 4)
    owner.jobs.split(job, ids, 2, processed=0, total=4)
    assert owner.jobs.cancel(job) == "canceled"
    row = owner.app.get_job(job)
    assert row is not None and row["locked_by"] is None and row["completed_at"] is not None
    owner.close()


# -- the daemon in-process ------------------------------------------------------------------------
def tiny_gallery(queue: Queue, storage: LocalStorage, real_photos: list[tuple[str, bytes]], n: int) -> Any:
    base = Image.open(__import__("io").BytesIO(real_photos[0][1])).convert("RGB")
    base.thumbnail((96, 96))
    pixels = np.asarray(base)
    files: list[tuple[str, bytes | None]] = [
        (f"IMG_{i:04d}.jpg", jpeg_bytes(np.roll(pixels, 5 * i, axis=1))) for i in range(n)
    ]
    return make_gallery(queue, storage, files)


def test_two_daemons_share_a_large_gallery_and_a_small_one_stays_one_claim(
    queue: Queue, db_url: str, settings: Settings, tmp_path: Path, real_photos: list[tuple[str, bytes]]
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = Settings(**{**settings.__dict__, "chunk_photos": 4, "phase_lanes": 1})
    large = tiny_gallery(queue, storage, real_photos, 10)
    small = tiny_gallery(queue, storage, real_photos, 4)
    large_job = queue.admin.enqueue(photographer_id=large.photographer_id, gallery_id=large.gallery_id)
    small_job = queue.admin.enqueue(photographer_id=small.photographer_id, gallery_id=small.gallery_id)
    daemons = [
        make_daemon(db_url, storage, Settings(**{**settings.__dict__, "worker_id": w}), drain=True)
        for w in ("d1", "d2")
    ]
    threads = [threading.Thread(target=d.run) for d in daemons]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads)

    row = queue.app.get_job(large_job)
    assert row is not None and row["status"] == "completed", row
    assert row["processed_images"] == row["total_images"] == 10 and row["locked_by"] is None
    assert row["progress"]["chunks"] == {"total": 3, "done": 3, "running": 0}
    assert sum(row["progress"]["workers"].values()) == 10
    assert [c["status"] for c in queue.jobs.chunks(large_job)] == ["done"] * 3
    rows = queue.conn.execute("SELECT ai_edits, status FROM photos WHERE gallery_id = %s", (large.gallery_id,))
    edits = [r["ai_edits"] for r in rows.fetchall()]
    assert all(e["worker"] in ("d1", "d2") for e in edits) and len(edits) == 10
    assert queue.app.images_edited_count(large.photographer_id) == 10
    # Culling ran once the last chunk was done, over the whole gallery.
    assert all("culling" in e for e in edits)

    row = queue.app.get_job(small_job)
    assert row is not None and row["status"] == "completed" and row["processed_images"] == 4
    assert queue.jobs.chunks(small_job) == []  # never split
    rows = queue.conn.execute("SELECT ai_edits FROM photos WHERE gallery_id = %s", (small.gallery_id,))
    assert len({r["ai_edits"]["worker"] for r in rows.fetchall()}) == 1  # one claim, one worker
