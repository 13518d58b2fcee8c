"""The in-memory double (worker/queue/memory.py) against real PostgreSQL: one scenario of the job
lifecycle and the app reads, run on both, must observe the same thing step by step."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from worker.queue.database import Queue
from worker.queue.memory import MemoryDatabase, implemented_queries
from worker.queue.sql import queries


@dataclass
class Backend:
    queue: Callable[[str], Queue]  # a worker's queue, by worker id
    age_lease: Callable[[str], None]  # the job's last heartbeat was an hour ago
    app_requeue: Callable[[str], None]  # the app sets a finished job back to 'queued'
    app_cancel: Callable[[str], None]  # the app's cancel: status 'failed', error_log 'Cancelled by user'
    age_chunks: Callable[[str], None]  # the last heartbeat of the job's held chunks was an hour ago


@pytest.fixture
def postgres(db_url: str) -> Iterator[Backend]:
    app = Queue(db_url, "app")

    def age(job_id: str) -> None:
        app.conn.execute(
            "UPDATE processing_jobs SET heartbeat_at = heartbeat_at - interval '1 hour' WHERE id = %s", (job_id,)
        )

    def requeue(job_id: str) -> None:
        app.conn.execute("UPDATE processing_jobs SET status = 'queued' WHERE id = %s", (job_id,))

    def cancel(job_id: str) -> None:
        app.conn.execute(
            "UPDATE processing_jobs SET status = 'failed', error_log = 'Cancelled by user', completed_at = now() "
            "WHERE id = %s",
            (job_id,),
        )

    def age_chunks(job_id: str) -> None:
        app.conn.execute(
            "UPDATE apelier.job_chunks SET heartbeat_at = heartbeat_at - interval '1 hour' "
            "WHERE job_id = %s AND locked_by IS NOT NULL",
            (job_id,),
        )

    yield Backend(lambda worker: Queue(db_url, worker), age, requeue, cancel, age_chunks)
    app.close()


@pytest.fixture
def memory() -> Backend:
    db = MemoryDatabase()

    def age(job_id: str) -> None:
        beat = db.jobs[uuid.UUID(job_id)]["heartbeat_at"]
        db.update_job(job_id, heartbeat_at=beat - timedelta(hours=1))

    def cancel(job_id: str) -> None:
        db.update_job(job_id, status="failed", error_log="Cancelled by user", completed_at=db.now())

    def age_chunks(job_id: str) -> None:
        for (job, _), chunk in db.job_chunks.items():
            if str(job) == job_id and chunk["locked_by"] is not None:
                chunk["heartbeat_at"] -= timedelta(hours=1)

    return Backend(db.queue, age, lambda job_id: db.update_job(job_id, status="queued"), cancel, age_chunks)


def plainer(names: dict[str, str]) -> Callable[[Any], Any]:
    """Values both can agree on: ids as what they name, timestamps as 'set', tuples as lists."""

    def plain(value: Any) -> Any:
        if isinstance(value, uuid.UUID | str) and str(value) in names:
            return names[str(value)]
        if isinstance(value, datetime):
            return "set"
        if isinstance(value, dict):
            return {plain(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain


JOB_FIELDS = (
    "status", "current_phase", "attempts", "locked_by", "processed_images", "total_images", "progress",
    "phase_timings", "error_log", "started_at", "completed_at", "heartbeat_at", "job_type", "payload",
    "settings_override",
)  # fmt: skip
PROFILE_FIELDS = (
    "training_status", "status", "training_error", "model_key", "model_weights_key", "training_method",
    "pairs_used", "training_started_at", "training_completed_at",
)  # fmt: skip


def scenario(backend: Backend) -> list[tuple[str, Any]]:
    """Everything the daemon and the job runners rely on, in the order they use it."""
    seen: list[tuple[str, Any]] = []
    names: dict[str, str] = {}
    plain = plainer(names)
    w1, w2 = backend.queue("w1"), backend.queue("w2")

    def see(label: str, value: Any) -> None:
        seen.append((label, plain(value)))

    def job(label: str, job_id: str) -> None:
        row = w1.app.get_job(job_id)
        assert row is not None
        see(label, {k: row[k] for k in JOB_FIELDS})

    def profile(label: str, profile_id: str) -> None:
        row = w1.app.style_profile(profile_id)
        assert row is not None
        see(label, {k: row[k] for k in PROFILE_FIELDS})

    # The app's rows.
    pid = str(uuid.uuid4())
    w1.admin.upsert_photographer(pid, "Studio")
    gid = w1.admin.insert_gallery(pid, "Wedding")
    photos = [
        w1.admin.insert_photo(photographer_id=pid, gallery_id=gid, key=f"uploads/{n}", filename=n, sort_order=o)
        for n, o in (("b.jpg", 1), ("a.jpg", 0), ("c.jpg", 2))
    ]
    styled = w1.admin.insert_style_profile(pid, "Warm", {"strength": 0.8})
    names.update({pid: "photographer", gid: "gallery", styled: "profile"})
    names.update({photo: f"photo {i}" for i, photo in enumerate(photos)})
    see("gallery", w1.app.gallery(gid))
    see("gallery missing", w1.app.gallery(str(uuid.uuid4())))

    # A gallery job: claimed, leased, its photos finished or failed, suggestions, complete.
    gallery_job = w1.admin.enqueue(photographer_id=pid, gallery_id=gid, settings_override={"watermark": True})
    training = w1.admin.enqueue(photographer_id=pid, style_profile_id=styled, job_type="train_style", priority=200)
    names.update({gallery_job: "gallery job", training: "training job"})
    see("pending", w1.jobs.pending())
    see("pending galleries", w1.jobs.pending(["gallery"]))
    claimed = w1.jobs.claim(["gallery", "restyle"])
    assert claimed is not None and claimed.id == gallery_job
    see("claim", (claimed.job_type, claimed.attempts, claimed.first_claim, claimed.settings_override))
    see("nothing else for galleries", w2.jobs.claim(["gallery"]))
    see("heartbeat", w1.jobs.heartbeat(gallery_job))
    see("heartbeat by another", w2.jobs.heartbeat(gallery_job))
    see("heartbeat of no job", w1.jobs.heartbeat(str(uuid.uuid4())))
    timings = {"decode": {"s": 0.5}}
    progress = {"phase": "style", "done": [1, 2]}
    see(
        "progress",
        w1.jobs.update_progress(
            gallery_job, phase="style", processed=1, total=3, progress=progress, phase_timings=timings
        ),
    )
    see(
        "progress by another",
        w2.jobs.update_progress(gallery_job, phase="x", processed=9, total=9, progress={}, phase_timings={}),
    )
    job("after progress", gallery_job)
    see(
        "photos", [(p["filename"], p["status"], p["edited_by_job"], p["file_size"]) for p in w1.app.gallery_photos(gid)]
    )
    fields = {
        "edited_key": "e", "web_key": "w", "thumb_key": "t", "watermarked_key": None, "width": 30, "height": 20,
        "quality_score": 87, "face_data": [{"box": [1, 2, 3, 4]}], "scene_type": "portrait",
        "ai_edits": {"job_id": gallery_job, "analysis": {"sharpness": 0.9}}, "edit_confidence": 0.75,
        "needs_review": False,
    }  # fmt: skip
    see("finish", w1.jobs.finish_photo(gallery_job, photos[1], fields))
    see("finish again", w1.jobs.finish_photo(gallery_job, photos[1], fields))
    see("finish without billing", w1.jobs.finish_photo(gallery_job, photos[0], {"edited_key": "e0"}, bill=False))
    see("finish by another", w2.jobs.finish_photo(gallery_job, photos[2], fields))
    see("billed once", w1.app.images_edited_count(pid))
    see("fail photo", w1.jobs.fail_photo(gallery_job, photos[2], {"reason": "truncated JPEG", "kind": "DecodeError"}))
    see("analysis", sorted((plain(r) for r in w1.app.gallery_analysis(gid)), key=str))
    suggestions: dict[str, dict[str, Any]] = {photos[1]: {"group": 1, "highlight": True}, photos[2]: {"group": None}}
    see("suggestions", w1.jobs.merge_photo_suggestions(gallery_job, suggestions))
    see("suggestions by another", w2.jobs.merge_photo_suggestions(gallery_job, suggestions))
    see("rows", w1.app.gallery_photo_rows(gid))
    see("photos after", [(p["filename"], p["status"], p["edited_by_job"]) for p in w1.app.gallery_photos(gid)])
    see("filenames", [r["filename"] for r in w1.app.gallery_filenames(gid)])
    done = {"processed": 2, "failed": 1}
    see(
        "complete by another",
        w2.jobs.complete(gallery_job, processed=0, total=0, progress={}, phase_timings={}, summary=None),
    )
    see(
        "complete",
        w1.jobs.complete(
            gallery_job,
            processed=2,
            total=3,
            progress=done,
            phase_timings=timings,
            summary="1 of 3 photos could not be processed",
        ),
    )
    see("heartbeat after complete", w1.jobs.heartbeat(gallery_job))
    job("completed", gallery_job)
    see("cancel a finished job", w1.jobs.cancel(gallery_job))

    # The app re-queues the finished job (new uploads): attempts and lease start afresh.
    backend.app_requeue(gallery_job)
    job("requeued by the app", gallery_job)

    # A training: the profile moves to 'training' only while the job is ours; a failure ends it.
    see("train claim", (j := w2.jobs.claim(["train_style"])) and (j.id == training, j.style_profile_id == styled))
    see("start training by another", w1.jobs.start_style_training(training))
    profile("not started", styled)
    see("start training", w2.jobs.start_style_training(training))
    profile("training", styled)
    see("fail training", w2.jobs.fail(training, "only 3 of 5 pairs are usable", None))
    profile("failed training", styled)
    job("failed", training)

    # A model stored, then a retrain canceled while it runs: the profile keeps its model.
    w1.jobs.update_style_training(
        styled, training_status="ready", training_method="lut3d", model_key="k.pt", pairs_used=5
    )
    profile("trained", styled)
    retrain = w1.admin.enqueue(photographer_id=pid, style_profile_id=styled, job_type="train_style")
    names[retrain] = "retrain job"
    see("retrain claim", (j := w1.jobs.claim(["train_style"])) and j.id == retrain)
    see("start retrain", w1.jobs.start_style_training(retrain))
    see("cancel retrain", w1.jobs.cancel(retrain))
    see("heartbeat after cancel", w1.jobs.heartbeat(retrain))
    see(
        "progress after cancel",
        w1.jobs.update_progress(retrain, phase="x", processed=0, total=0, progress={}, phase_timings={}),
    )
    profile("retrain canceled", styled)
    see("ack cancel by another", w2.jobs.ack_cancel(retrain, 0, {}))
    see("ack cancel", w1.jobs.ack_cancel(retrain, 0, {"kind": "train_style"}))
    job("canceled", retrain)

    # Retry with backoff, release on shutdown, a lapsed lease, attempts used up.
    claimed = w1.jobs.claim()
    assert claimed is not None and claimed.id == gallery_job
    see("claim after the app's requeue", (claimed.attempts, claimed.first_claim))
    see("fail with retry", w1.jobs.fail(gallery_job, "storage down", 3600.0))
    see("fail again", w1.jobs.fail(gallery_job, "storage down", None))
    job("waiting for its retry", gallery_job)
    see("nothing runnable", w1.jobs.claim())
    see("pending with backoff", w1.jobs.pending())
    see("cancel while waiting", w2.jobs.cancel(gallery_job))
    job("canceled while waiting", gallery_job)

    again = w1.admin.enqueue(photographer_id=pid, gallery_id=gid, payload={"photo_ids": photos[:2]}, job_type="restyle")
    names[again] = "restyle job"
    see("restyle claim", (j := w1.jobs.claim()) and (j.id == again, j.payload, j.attempts, j.first_claim))
    see("release by another", w2.jobs.release(again))
    see("release", w1.jobs.release(again))
    job("released", again)
    see("reclaim", (j := w2.jobs.claim()) and (j.id == again, j.attempts, j.first_claim))
    see("fresh lease not stale", w1.jobs.requeue_stale(60))
    for attempt in (1, 2):
        backend.age_lease(again)
        see(f"stale {attempt}", w1.jobs.requeue_stale(60))
        see(f"claim {attempt}", (j := w1.jobs.claim()) and j.attempts)
    see("lost after requeue", w2.jobs.heartbeat(again))
    backend.age_lease(again)
    see("stale, attempts used up", w2.jobs.requeue_stale(60))
    job("gave up", again)

    # The app's cancel of a running job (status 'failed', locked_by untouched) is a cancel: nothing is
    # recorded after it, and the worker lets go, the app's status and reason kept.
    canceled = w1.admin.enqueue(photographer_id=pid, gallery_id=gid)
    names[canceled] = "job the app cancels"
    see("claim before the app's cancel", (j := w1.jobs.claim()) and j.id == canceled)
    backend.app_cancel(canceled)
    see("heartbeat after the app's cancel", w1.jobs.heartbeat(canceled))
    see("heartbeat by another after the app's cancel", w2.jobs.heartbeat(canceled))
    see(
        "progress after the app's cancel",
        w1.jobs.update_progress(canceled, phase="x", processed=1, total=3, progress={}, phase_timings={}),
    )
    see("finish after the app's cancel", w1.jobs.finish_photo(canceled, photos[2], {"edited_key": "late"}))
    see("fail photo after the app's cancel", w1.jobs.fail_photo(canceled, photos[2], {"reason": "late"}))
    see("photos after the app's cancel", [(p["filename"], p["status"]) for p in w1.app.gallery_photos(gid)])
    see("output keys", sorted(w1.app.gallery_output_keys(gid)))
    see("billed after the app's cancel", w1.app.images_edited_count(pid))
    see("ack the app's cancel by another", w2.jobs.ack_cancel(canceled, 0, {}))
    see("ack the app's cancel", w1.jobs.ack_cancel(canceled, 2, {"processed": 2}))
    job("canceled by the app", canceled)
    see("restyle photos say why", w1.app.gallery_photo_rows(gid))

    # Runs (migration 7): photos in flight, what a death costs, a photo failed alone, attempts given
    # back, a word on every photo a failed job did not edit, outputs never recorded.
    runs = w1.admin.enqueue(photographer_id=pid, gallery_id=gid)
    names[runs] = "runs job"
    see("runs claim", (j := w1.jobs.claim()) and (j.id == runs, j.attempts))
    see("setup done by another", w2.jobs.setup_done(runs))
    see("setup done", w1.jobs.setup_done(runs))
    see("started", w1.jobs.photo_started(runs, photos[0]))
    see("started by another", w2.jobs.photo_started(runs, photos[1]))
    see("processed", w1.jobs.photo_processed(runs, photos[0], ["k/edited/b.jpg", "k/web/b.jpg"]))
    see("processed by another", w2.jobs.photo_processed(runs, photos[1], ["k/edited/a.jpg"]))
    see("started too", w1.jobs.photo_started(runs, photos[2]))
    see("nothing in flight has died", w1.jobs.photos_in_flight(runs))
    backend.age_lease(runs)
    see("died on a fresh photo: given back", w2.jobs.requeue_stale(60))
    job("after a free death", runs)
    see("a suspect", w1.jobs.photos_in_flight(runs))
    for death in (2, 3, 4):
        see(f"runs claim {death}", (j := w2.jobs.claim()) and j.attempts)
        see(f"setup {death}", w2.jobs.setup_done(runs))
        see(f"suspect alone {death}", w2.jobs.photo_started(runs, photos[2]))
        backend.age_lease(runs)
        see(f"died on the suspect {death}", w1.jobs.requeue_stale(60))
        job(f"after death {death}", runs)
    see("isolated", w1.jobs.photos_in_flight(runs))
    see("isolated says why", w1.app.gallery_photo_rows(gid))
    setup = w1.admin.enqueue(photographer_id=pid, gallery_id=gid, priority=1)
    names[setup] = "setup job"
    see("claim in setup", (j := w2.jobs.claim()) and (j.id == setup, j.attempts))
    backend.age_lease(setup)
    see("died in set-up: counts", w1.jobs.requeue_stale(60))
    job("after a counted death", setup)
    see("setup job canceled", w1.jobs.cancel(setup))
    see("claim for an outage", (j := w1.jobs.claim()) and (j.id == runs, j.attempts))
    see("end by another", w2.jobs.end_attempt(runs, "storage down", 0.0, outside=True))
    see("storage outage: given back", w1.jobs.end_attempt(runs, "storage down", 0.0, outside=True))
    job("after an outage", runs)
    see("claim with progress", (j := w1.jobs.claim()) and j.attempts)
    see("finish with keys", w1.jobs.finish_photo(runs, photos[0], {**fields, "edited_key": "k/edited/b.jpg"}))
    see("own failure after progress: given back", w1.jobs.end_attempt(runs, "internal error", 0.0, outside=False))
    see("claim without progress", (j := w1.jobs.claim()) and j.attempts)
    see("own failure: counts", w1.jobs.end_attempt(runs, "internal error", 0.0, outside=False))
    see("claim, the last", (j := w1.jobs.claim()) and j.attempts)
    see("own failure on the last attempt", w1.jobs.end_attempt(runs, "internal error", 0.0, outside=False))
    job("runs failed", runs)
    see("every photo says why", w1.app.gallery_photo_rows(gid))
    see("nothing in flight after the end", w1.jobs.photos_in_flight(runs))
    see("own unrecorded of a failed job: the sweep's", w1.jobs.own_unrecorded_outputs(runs))
    see("unrecorded", sorted((plain(r) for r in w1.jobs.unrecorded_outputs(0.0)), key=str))
    see("unrecorded, not yet a lease old", w1.jobs.unrecorded_outputs(3600.0))
    w1.jobs.forget_output(runs, "k/web/b.jpg")
    see("forgotten", [r["key"] for r in w1.jobs.unrecorded_outputs(0.0)])

    # Chunks (migration 8): a gallery split, its chunks claimed one at a time, a dead worker's chunk
    # requeued, a chunk's failure and release, the last one out finalising, a cancel reaching each chunk.
    big = w1.admin.enqueue(photographer_id=pid, gallery_id=gid, priority=2)
    names[big] = "split job"
    see("claim to split", (j := w1.jobs.claim()) and (j.id == big, j.chunk))
    see("split by another", w2.jobs.split(big, photos, 2, processed=0, total=3))
    see("split", w1.jobs.split(big, photos, 2, processed=0, total=3))
    job("after the split", big)
    see("chunks", w1.jobs.chunks(big))
    see("heartbeat of a split job", w1.jobs.heartbeat(big))
    see("claim a chunk", (j := w1.jobs.claim()) and (j.id == big, j.chunk, j.chunks, j.attempts, j.chunk_photo_ids))
    see("no second chunk", w1.jobs.claim())
    see("claim the other chunk", (j := w2.jobs.claim()) and (j.chunk, j.attempts, j.chunk_photo_ids))
    see("chunk heartbeat", w2.jobs.heartbeat(big))
    see("chunk setup", w2.jobs.setup_done(big))
    see(
        "chunk progress",
        w2.jobs.update_progress(big, phase="style", processed=9, total=9, progress={"eta_s": 1}, phase_timings={}),
    )
    see(
        "a chunk's photo", w2.jobs.finish_photo(big, photos[2], {**fields, "ai_edits": {"job_id": big, "worker": "w2"}})
    )
    job("progress of a chunk", big)
    see("chunk started", w1.jobs.photo_started(big, photos[0]))
    see("end a chunk", w2.jobs.end_chunk(big))
    see("end a chunk not held", w2.jobs.end_chunk(big))
    backend.age_chunks(big)
    see("a dead worker's chunk", w2.jobs.requeue_stale(60))
    see("chunks after a death", w1.jobs.chunks(big))
    see("the dead chunk's suspect", w1.jobs.photos_in_flight(big))
    see("finish in a lost chunk", w1.jobs.finish_photo(big, photos[0], fields))
    see("reclaim the chunk", (j := w2.jobs.claim()) and (j.chunk, j.attempts))
    see("chunk failure: given back", w2.jobs.end_attempt(big, "storage down", 0.0, outside=True))
    see("reclaim after a failure", (j := w2.jobs.claim()) and (j.chunk, j.attempts))
    see("release a chunk", w2.jobs.release(big))
    see("chunks after a release", w1.jobs.chunks(big))
    see("claim it again", (j := w1.jobs.claim()) and (j.chunk, j.attempts))
    for n, photo in enumerate(photos[:2]):
        see(
            f"last chunk's photo {n}",
            w1.jobs.finish_photo(big, photo, {**fields, "ai_edits": {"job_id": big, "worker": "w1"}}),
        )
    see("end the last chunk", w1.jobs.end_chunk(big))
    job("finalising", big)
    see("chunk workers", w1.jobs.chunk_workers(big))
    see(
        "complete a split job", w1.jobs.complete(big, processed=3, total=3, progress={}, phase_timings={}, summary=None)
    )
    job("split job completed", big)

    canceled_big = w1.admin.enqueue(photographer_id=pid, gallery_id=gid, priority=2)
    names[canceled_big] = "split job canceled"
    see("claim to split again", (j := w1.jobs.claim()) and j.id == canceled_big)
    see("split in three", w1.jobs.split(canceled_big, photos, 1, processed=0, total=3))
    see("claim one of three", (j := w1.jobs.claim()) and j.chunk)
    see("claim two of three", (j := w2.jobs.claim()) and j.chunk)
    see("chunk outputs, one", w1.jobs.photo_processed(canceled_big, photos[0], ["k/edited/c0.jpg"]))
    see("chunk outputs, two", w2.jobs.photo_processed(canceled_big, photos[1], ["k/edited/c1.jpg"]))
    see("own unrecorded while processing", w1.jobs.own_unrecorded_outputs(canceled_big))
    backend.app_cancel(canceled_big)
    for nth, holder in (("one", w1), ("two", w2)):  # each chunk's worker deletes its own, not the other's
        keys = [r["key"] for r in holder.jobs.own_unrecorded_outputs(canceled_big)]
        see(f"own unrecorded after the cancel, {nth}", keys)
    see("chunk heartbeat after the app's cancel", w1.jobs.heartbeat(canceled_big))
    see("chunk finish after the app's cancel", w2.jobs.finish_photo(canceled_big, photos[1], fields))
    see("chunks after the app's cancel", w1.jobs.chunks(canceled_big))
    see("ack a chunk", w1.jobs.ack_cancel(canceled_big, 0, {}))
    job("after one chunk let go", canceled_big)
    see("ack the other chunk", w2.jobs.ack_cancel(canceled_big, 0, {}))
    job("after every chunk let go", canceled_big)
    see("no chunk of a canceled job", w1.jobs.claim())

    see("cancel of no job", w1.jobs.cancel(str(uuid.uuid4())))
    see("pending at the end", w1.jobs.pending())
    for queue in (w1, w2):
        queue.jobs.worker_seen(hostname="h", pid=1, version="t", device="cpu", state="idle", job_id=None, info={})
        queue.close()
    return seen


def test_the_double_observes_what_postgresql_does(postgres: Backend, memory: Backend) -> None:
    expected = scenario(postgres)
    got_here = scenario(memory)
    for step, (mine, theirs) in enumerate(zip(got_here, expected, strict=True)):
        assert mine == theirs, f"step {step}: the double saw {mine}, PostgreSQL {theirs}"
    # The scenario means something: what both agreed on is what the queue promises.
    got = dict(expected)
    assert len(got) == len(expected)  # every step has its own label
    assert got["billed once"] == 1 and got["heartbeat by another"] == "lost" and got["heartbeat of no job"] == "deleted"
    assert got["failed training"]["training_error"] == "only 3 of 5 pairs are usable"
    assert got["retrain canceled"]["training_status"] == "ready"
    assert got["requeued by the app"]["attempts"] == 0 and got["suggestions"] == 2
    assert got["stale, attempts used up"][0]["new_status"] == "failed"
    assert got["claim after the app's requeue"] == [1, False]
    assert got["heartbeat after the app's cancel"] == got["finish after the app's cancel"] == "canceled"
    assert got["heartbeat by another after the app's cancel"] == "lost" and got["ack the app's cancel"] is True
    assert got["billed after the app's cancel"] == got["billed once"]
    assert "late" not in got["output keys"]
    ended = got["canceled by the app"]
    assert (ended["status"], ended["error_log"], ended["locked_by"]) == ("failed", "Cancelled by user", None)
    assert got["died on a fresh photo: given back"][0]["new_status"] == "queued"
    # Free: the first death (shared), the first alone, the isolating one; the second alone counts.
    assert got["after a free death"]["attempts"] == 0 and got["after death 2"]["attempts"] == 0
    assert got["after death 3"]["attempts"] == 1 and got["after death 4"]["attempts"] == 1
    assert got["isolated"] == {"photo 2": [4, True]}  # max_attempts (3) more deaths, alone
    assert got["storage outage: given back"] == "queued" and got["after an outage"]["attempts"] == 1
    assert got["own failure after progress: given back"] == "queued"
    assert got["after a counted death"]["attempts"] == 1 and got["own failure: counts"] == "queued"
    assert got["claim, the last"] == 3 and got["own failure on the last attempt"] == "failed"
    said = {r["filename"]: r["error"] for r in got["every photo says why"]}
    assert said["c.jpg"].startswith("processing this photo stopped the worker 4 times")
    assert said["b.jpg"] is None  # edited by the job
    # Edited before the job, then not reached by the restyle that failed: it keeps its edit and says so.
    assert said["a.jpg"].startswith("not restyled: the job failed before it got to this photo (the worker")
    assert got["after the split"]["locked_by"] == "apelier:chunks" and got["heartbeat of a split job"] == "lost"
    assert got["no second chunk"] is None and got["end a chunk"] == "done" and got["end the last chunk"] == "finalise"
    assert got["a dead worker's chunk"][0]["new_status"] == "queued"
    assert got["finalising"]["locked_by"] == "w1" and got["split job completed"]["processed_images"] == 3
    assert got["chunk workers"] == {"w1": 2, "w2": 1}
    assert got["chunk heartbeat after the app's cancel"] == got["chunk finish after the app's cancel"] == "canceled"
    assert got["after one chunk let go"]["locked_by"] == "apelier:chunks"
    assert got["after every chunk let go"]["locked_by"] is None
    assert got["own unrecorded while processing"] == []
    assert got["own unrecorded after the cancel, one"] == ["k/edited/c0.jpg"]
    assert got["own unrecorded after the cancel, two"] == ["k/edited/c1.jpg"]
    assert got["unrecorded"] == [
        {"job_id": "runs job", "key": "k/web/b.jpg", "photographer_id": "photographer", "referenced": False}
    ]


def test_the_double_answers_every_query_the_stores_run() -> None:
    """Named queries the job lifecycle and the app reads use, and the app's inserts, all have a twin."""
    import inspect
    import re

    from worker.queue import admin, app_data, store

    used: set[str] = set()
    for module in (store, app_data, admin):
        used |= set(re.findall(r'["\'](\w+)["\']', inspect.getsource(module))) & set(queries())
    # status_report's, for the operator's `status` only:
    not_for_the_double = {"queue_depth", "jobs_in_flight", "chunks_in_flight", "workers_recent", "recent_failures"}
    # The HTTP API's (worker/api/): it runs on PostgreSQL only, and test_api.py tests it there.
    not_for_the_double |= {
        *("photographer_for_auth_user", "get_photographer", "get_photo", "enqueue_gallery"),
        *("lock_style_enqueue", "active_training_job", "last_training_payload"),
        "insert_training_style_profile",
    }
    assert used - not_for_the_double <= implemented_queries()
    assert implemented_queries() <= set(queries())
