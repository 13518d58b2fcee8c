"""One big gallery over several ``apelier-worker run`` processes (chunks, migration 8): three workers
share a 48-photo gallery, each editing at least a fifth of it, nothing edited or billed twice; a
worker SIGKILLed in the middle of a chunk loses nothing (another finishes its chunk); a cancel
reaches every chunk. Small photos (128 px), so that the test measures the queue, not the phases; one
fleet of three workers serves the module's tests (starting a worker is most of their time on a
shared 2-core box), on a database of its own."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from PIL import Image

from tests.acceptance.test_daemon_process import start_worker, wait_for, worker_env
from tests.conftest import Gallery, _url_for, jpeg_bytes, make_gallery
from worker.queue.database import Queue
from worker.storage.local import LocalStorage


def gallery_of(queue: Queue, data_dir: Path, real_photos: list[tuple[str, bytes]], n: int, size: int) -> Gallery:
    files: list[tuple[str, bytes | None]] = []
    for i in range(n):
        base = Image.open(io.BytesIO(real_photos[i % len(real_photos)][1])).convert("RGB")
        base.thumbnail((size, size))
        files.append((f"IMG_{i:04d}.jpg", jpeg_bytes(np.roll(np.asarray(base), 7 * i, axis=1))))
    return make_gallery(queue, LocalStorage(data_dir / "storage" / "photos"), files)


def events(log: Path, name: str, job_id: str | None = None) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if f'"{name}"' in line:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name and job_id in (None, event.get("job_id")):
                out.append(event)
    return out


class Workers:
    """Worker processes ``worker-<name>``, each with its own log, all on one database and one storage folder."""

    def __init__(self, db_url: str, data_dir: Path, logs: Path, chunk_photos: int) -> None:
        self.db_url, self.data_dir, self.logs, self.chunk_photos = db_url, data_dir, logs, chunk_photos
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *names: str) -> None:
        for name in names:
            env = worker_env(self.db_url, self.data_dir, f"worker-{name}")
            env["WORKER_CHUNK_PHOTOS"] = str(self.chunk_photos)
            env["WORKER_PHASE_LANES"] = "1"
            # Three processes on a 2-core box: torch's own threads per process would fight over the cores
            # (a 128 px photo takes 10 times longer under load with them).
            env["OMP_NUM_THREADS"] = "1"
            self.procs[name] = start_worker(env, log=self.log(name))
        # Every worker waits for work before the job is queued: none starts minutes after the others.
        wait_for(lambda: all(events(self.log(n), "worker_started") for n in names), timeout=120, every=0.2)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def tails(self) -> str:
        return "".join(self.log(n).read_text(errors="replace")[-1500:] for n in self.procs)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def fleet_url(pg_admin_url: str, template_db: str) -> Any:
    name = f"apelier_chunks_{os.getpid()}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _url_for(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def fleet(fleet_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Workers a, b and c, waiting for work, chunks of 3 photos."""
    logs = tmp_path_factory.mktemp("fleet")
    workers = Workers(fleet_url, logs / "data", logs, chunk_photos=3)
    try:
        workers.start("a", "b", "c")
        yield workers
    finally:
        workers.stop()


@pytest.fixture
def app(fleet_url: str, fleet: Workers) -> Any:
    """The app's side, on the fleet's database, every worker up and idle (the test that kills one comes last)."""
    assert all(p.poll() is None for p in fleet.procs.values()), fleet.tails()
    queue = Queue(fleet_url, "app")
    yield queue
    queue.close()


def edited_once(queue: Queue, gallery: Gallery, n: int, data_dir: Path) -> dict[str, Any]:
    """Every photo edited once: its row, one ledger row, billed once, its three outputs and nothing else."""
    rows = queue.conn.execute(
        "SELECT id, status, edited_key, web_key, thumb_key, ai_edits FROM photos WHERE gallery_id = %s",
        (gallery.gallery_id,),
    ).fetchall()
    assert [r["status"] for r in rows] == ["edited"] * n
    ledger = queue.conn.execute(
        "SELECT photo_id, count(*) AS n FROM apelier.billed_photos WHERE photographer_id = %s GROUP BY 1",
        (gallery.photographer_id,),
    ).fetchall()
    assert len(ledger) == n and {r["n"] for r in ledger} == {1}
    assert queue.app.images_edited_count(gallery.photographer_id) == n
    named = {r[k] for r in rows for k in ("edited_key", "web_key", "thumb_key")}
    storage = LocalStorage(data_dir / "storage" / "photos")
    outputs = {k for k in storage.list(f"{gallery.photographer_id}/{gallery.gallery_id}") if "/uploads/" not in k}
    assert outputs == named and len(named) == 3 * n
    return {str(r["id"]): r["ai_edits"]["worker"] for r in rows}


def test_three_workers_share_one_48_photo_gallery_each_editing_a_fifth_or_more(
    app: Queue, fleet: Workers, real_photos: list[tuple[str, bytes]]
) -> None:
    gallery = gallery_of(app, fleet.data_dir, real_photos, 48, 128)
    job_id = app.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    wait_for(lambda: (app.app.get_job(job_id) or {}).get("status") in ("completed", "failed"), timeout=240)
    job = app.app.get_job(job_id)
    assert job is not None and job["status"] == "completed", fleet.tails()
    assert job["attempts"] == 1 and job["processed_images"] == job["total_images"] == 48
    chunks = app.jobs.chunks(job_id)
    assert len(chunks) == 16 and {c["status"] for c in chunks} == {"done"}
    by_worker = Counter(edited_once(app, gallery, 48, fleet.data_dir).values())
    assert set(by_worker) == {"worker-a", "worker-b", "worker-c"}, by_worker
    assert min(by_worker.values()) >= 0.2 * 48, by_worker
    assert job["progress"]["workers"] == dict(by_worker)
    # Split once, finished once, by one worker, after its last chunk.
    assert sum(len(events(fleet.log(n), "job_split", job_id)) for n in fleet.procs) == 1
    assert sum(len(events(fleet.log(n), "job_finalised", job_id)) for n in fleet.procs) == 1


def test_a_cancel_reaches_every_chunk(app: Queue, fleet: Workers, real_photos: list[tuple[str, bytes]]) -> None:
    gallery = gallery_of(app, fleet.data_dir, real_photos, 48, 128)
    job_id = app.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    wait_for(lambda: (app.app.get_job(job_id) or {}).get("processed_images", 0) >= 6, timeout=120)
    with app.conn.transaction():  # the app's handleCancelJob; who held a chunk at that moment
        app.conn.execute(
            "UPDATE processing_jobs SET status = 'failed', error_log = 'Cancelled by user', "
            "completed_at = now() WHERE id = %s",
            (job_id,),
        )
        held = app.conn.execute(
            "SELECT locked_by FROM apelier.job_chunks WHERE job_id = %s AND locked_by IS NOT NULL", (job_id,)
        ).fetchall()
    holders = {r["locked_by"] for r in held}
    assert holders  # the cancel landed while chunks were running
    wait_for(lambda: (app.app.get_job(job_id) or {}).get("locked_by") is None, timeout=60)
    assert all(p.poll() is None for p in fleet.procs.values())  # they went back to waiting for work
    job = app.app.get_job(job_id)
    assert job is not None, fleet.tails()
    assert (job["status"], job["error_log"], job["current_phase"]) == ("failed", "Cancelled by user", "canceled")
    chunks = app.jobs.chunks(job_id)
    assert {c["status"] for c in chunks} <= {"done", "canceled"} and "canceled" in {c["status"] for c in chunks}
    assert all(c["locked_by"] is None for c in chunks)
    # Every worker that held a chunk saw the cancel and let go of its chunk.
    for holder in holders:
        outcomes = [e["outcome"] for e in events(fleet.log(holder.removeprefix("worker-")), "job_finished", job_id)]
        assert "canceled" in outcomes, (holder, outcomes)
    # Nothing edited after the cancel was recorded or billed; every photo not edited says why.
    rows = app.app.gallery_photo_rows(gallery.gallery_id)
    edited = [r for r in rows if r["status"] == "edited"]
    assert job["processed_images"] == len(edited) == app.app.images_edited_count(gallery.photographer_id)
    assert 6 <= len(edited) < 48
    assert all(r["error"].startswith("not edited: the job was canceled") for r in rows if r["status"] != "edited")


def test_a_worker_sigkilled_mid_chunk_loses_nothing(
    app: Queue, fleet: Workers, real_photos: list[tuple[str, bytes]]
) -> None:
    gallery = gallery_of(app, fleet.data_dir, real_photos, 12, 480)

    def a_mid_chunk() -> bool:
        row = app.conn.execute(
            "SELECT edited FROM apelier.job_chunks WHERE locked_by = 'worker-a' AND status = 'processing'"
        ).fetchone()
        return row is not None and row["edited"] >= 1

    job_id = app.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    wait_for(a_mid_chunk, timeout=120)
    fleet.procs["a"].send_signal(signal.SIGKILL)
    fleet.procs["a"].wait(timeout=10)
    held = app.conn.execute("SELECT chunk, photo_ids FROM apelier.job_chunks WHERE locked_by = 'worker-a'").fetchall()
    assert len(held) == 1  # a died holding a chunk
    wait_for(lambda: (app.app.get_job(job_id) or {}).get("status") in ("completed", "failed"), timeout=180)
    job = app.app.get_job(job_id)
    assert job is not None and job["status"] == "completed", fleet.tails()
    assert job["processed_images"] == 12
    by_photo = edited_once(app, gallery, 12, fleet.data_dir)
    dead_chunk = {by_photo[str(p)] for p in held[0]["photo_ids"]}
    assert dead_chunk - {"worker-a"} and dead_chunk <= {"worker-a", "worker-b", "worker-c"}  # finished by another
    requeued = [e for n in ("b", "c") for e in events(fleet.log(n), "stale_job_requeued")]
    assert any(e["previous_worker"] == "worker-a" and e["new_status"] == "queued" for e in requeued)
    chunk = {c["chunk"]: c for c in app.jobs.chunks(job_id)}[held[0]["chunk"]]
    # a had edited a photo of it: the death cost the chunk no attempt (the other worker's claim is its only one).
    assert chunk["status"] == "done" and chunk["attempts"] == 1
