"""The real daemon (``apelier-worker run``) in subprocesses: SIGKILL mid-job and SIGTERM mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import Gallery, jpeg_bytes, make_gallery
from worker.queue.database import Queue
from worker.storage.local import LocalStorage

PHOTOS = 24


def worker_env(db_url: str, data_dir: Path, worker_id: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        WORKER_DATA_DIR=str(data_dir),
        WORKER_ID=worker_id,
        WORKER_DEVICE="cpu",
        WORKER_POLL_INTERVAL_S="0.2",
        WORKER_HEARTBEAT_INTERVAL_S="0.25",
        WORKER_LEASE_S="2",
        WORKER_PROGRESS_INTERVAL_S="0",
        WORKER_IO_THREADS="2",
        WORKER_PREFETCH_PHOTOS="2",
        WORKER_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.pop("SUPABASE_URL", None)
    return env


def start_worker(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "worker", "run", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def big_gallery(queue: Queue, data_dir: Path, china: bytes) -> Gallery:
    """24 photos of 1 MP: slow enough on the CPU to stop a worker in the middle."""
    base = np.asarray(Image.open(__import__("io").BytesIO(china)).convert("RGB"))
    big = np.asarray(Image.fromarray(base).resize((1200, 801)))
    storage = LocalStorage(data_dir / "storage" / "photos")
    files: list[tuple[str, bytes | None]] = []
    for i in range(PHOTOS):
        shifted = np.roll(big, i * 7, axis=1)
        files.append((f"IMG_{i:04d}.jpg", jpeg_bytes(shifted)))
    return make_gallery(queue, storage, files)


def wait_for(predicate, timeout: float = 90.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def china(real_photos: list[tuple[str, bytes]]) -> bytes:
    return dict(real_photos)["china.jpg"]


def test_sigkill_mid_job_is_requeued_and_finished_by_another_worker_without_duplicates(
    queue: Queue, db_url: str, tmp_path: Path, china: bytes
) -> None:
    data_dir = tmp_path / "data"
    gallery = big_gallery(queue, data_dir, china)
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)

    a = start_worker(worker_env(db_url, data_dir, "worker-a"), log=tmp_path / "a.log")
    try:
        wait_for(lambda: (queue.app.get_job(job_id) or {}).get("processed_images", 0) >= 3)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=10)
    finally:
        if a.poll() is None:
            a.kill()
    at_kill = queue.app.get_job(job_id)
    assert at_kill is not None and at_kill["status"] == "processing" and at_kill["locked_by"] == "worker-a"
    assert at_kill["processed_images"] < PHOTOS

    b = start_worker(worker_env(db_url, data_dir, "worker-b"), "--drain", log=tmp_path / "b.log")
    assert b.wait(timeout=180) == 0, (tmp_path / "b.log").read_text()[-3000:]

    job = queue.app.get_job(job_id)
    assert job is not None
    # The killed attempt had edited photos: it was given back, so this is still the job's first attempt.
    assert job["status"] == "completed" and job["attempts"] == 1
    assert job["processed_images"] == job["total_images"] == PHOTOS
    assert job["progress"]["resumed_from"] >= at_kill["processed_images"]
    assert "stale_job_requeued" in (tmp_path / "b.log").read_text()
    # Exactly one set of outputs per photo, and each photo billed once.
    outputs = LocalStorage(data_dir / "storage" / "photos").list(f"{gallery.photographer_id}/{gallery.gallery_id}")
    produced = [k for k in outputs if "/uploads/" not in k]
    assert len(produced) == 3 * PHOTOS
    assert queue.app.images_edited_count(gallery.photographer_id) == PHOTOS
    ledger = queue.conn.execute("SELECT count(*) AS n FROM apelier.billed_photos").fetchone()
    assert ledger is not None and ledger["n"] == PHOTOS


def test_sigterm_mid_job_puts_it_back_with_progress_and_exits_0(
    queue: Queue, db_url: str, tmp_path: Path, china: bytes
) -> None:
    data_dir = tmp_path / "data"
    gallery = big_gallery(queue, data_dir, china)
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)

    # A password in the connection string (trust auth ignores it) must never reach the logs.
    env = worker_env(f"{db_url} password=hunter2-secret", data_dir, "worker-a")
    a = start_worker(env, log=tmp_path / "a.log")
    try:
        wait_for(lambda: (queue.app.get_job(job_id) or {}).get("processed_images", 0) >= 3)
        t0 = time.monotonic()
        a.send_signal(signal.SIGTERM)
        assert a.wait(timeout=30) == 0
        stop_s = time.monotonic() - t0
    finally:
        if a.poll() is None:
            a.kill()
    job = queue.app.get_job(job_id)
    assert job is not None
    assert job["status"] == "queued" and job["locked_by"] is None and job["attempts"] == 0
    assert 3 <= job["processed_images"] < PHOTOS
    assert job["progress"]["processed"] == job["processed_images"]
    assert stop_s < 20  # well within a systemd TimeoutStopSec
    edited = queue.conn.execute(
        "SELECT count(*) AS n FROM photos WHERE gallery_id = %s AND status = 'edited'", (gallery.gallery_id,)
    ).fetchone()
    assert edited is not None and edited["n"] == job["processed_images"]
    log = (tmp_path / "a.log").read_text()
    assert "shutdown_requested" in log and "worker_stopped" in log
    assert "hunter2-secret" not in log and "password=***" in log

    b = start_worker(worker_env(db_url, data_dir, "worker-b"), "--drain", log=tmp_path / "b.log")
    assert b.wait(timeout=180) == 0
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed" and job["processed_images"] == PHOTOS
    assert queue.app.images_edited_count(gallery.photographer_id) == PHOTOS
