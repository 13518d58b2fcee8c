"""A small chaos run with real worker processes (benchmarks/chaos.py is the large one): a photo that
kills whichever worker decodes it, workers restarted as systemd would, every database connection
cut once. The gallery completes with every other photo edited and billed exactly once, the photo at
fault failed alone with its reason, and no output left in storage that no row names."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import psycopg
from PIL import Image

from tests.acceptance.test_daemon_process import wait_for, worker_env
from tests.conftest import jpeg_bytes, make_gallery
from worker.queue.database import Queue
from worker.storage.local import LocalStorage

PHOTOS = 5
POISON = "IMG_0001.jpg"


def small_gallery(queue: Queue, storage: LocalStorage, real_photos: list[tuple[str, bytes]]) -> list[str]:
    files: list[tuple[str, bytes | None]] = []
    for i in range(PHOTOS):
        base = Image.open(io.BytesIO(real_photos[i % len(real_photos)][1])).convert("RGB")
        base.thumbnail((640, 640))
        files.append((f"IMG_{i:04d}.jpg", jpeg_bytes(np.roll(np.asarray(base), i * 11, axis=1))))
    gallery = make_gallery(queue, storage, files)
    return [gallery.photographer_id, gallery.gallery_id]


class Supervisor:
    """Four worker slots, each restarted with a new worker id when its process dies (systemd's Restart=):
    one still up after the photo at fault has killed three, so the test need not wait for a restart."""

    def __init__(self, db_url: str, data_dir: Path, logs: Path) -> None:
        self.db_url, self.data_dir, self.logs = db_url, data_dir, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts = 0
        self.deaths = 0
        self.stop = threading.Event()

    def start(self, slot: str) -> None:
        self.starts += 1
        env = worker_env(self.db_url, self.data_dir, f"{slot}-{self.starts}")
        env["CRASH_ON"] = POISON
        with (self.logs / f"{slot}.log").open("ab") as out:
            self.procs[slot] = subprocess.Popen(
                [sys.executable, "-m", "tests.acceptance.crash_worker", "run"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def run(self) -> None:
        for slot in ("a", "b", "c", "d"):
            self.start(slot)
        while not self.stop.wait(0.1):
            for slot, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    self.deaths += 1
                    self.start(slot)

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs.values():
            proc.kill()
            proc.wait(timeout=10)


def cut_every_connection(db_url: str) -> int:
    """What a database restart does to every worker: their connections are gone."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_a_gallery_survives_a_photo_that_kills_its_workers_and_a_database_cut(
    queue: Queue, db_url: str, tmp_path: Path, real_photos: list[tuple[str, bytes]]
) -> None:
    data_dir = tmp_path / "data"
    storage = LocalStorage(data_dir / "storage" / "photos")
    photographer, gallery = small_gallery(queue, storage, real_photos)
    job_id = queue.admin.enqueue(photographer_id=photographer, gallery_id=gallery)
    # Two attempts: the photo at fault is failed alone at its third death (max_attempts + 1), not its fourth.
    queue.conn.execute("UPDATE processing_jobs SET max_attempts = 2 WHERE id = %s", (job_id,))
    supervisor = Supervisor(db_url, data_dir, tmp_path)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        wait_for(lambda: (queue.app.get_job(job_id) or {}).get("status") == "processing", timeout=60)
        assert cut_every_connection(db_url) >= 2  # ours and the workers'
        queue.close()
        wait_for(lambda: (queue.app.get_job(job_id) or {}).get("status") in ("completed", "failed"), timeout=150)
    finally:
        supervisor.close()
        thread.join(timeout=30)

    job = queue.app.get_job(job_id)
    assert job is not None
    logs = "".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*.log"))
    assert job["status"] == "completed", logs
    assert job["attempts"] <= job["max_attempts"] and supervisor.deaths == 3  # the poison, thrice; nothing else
    rows = {r["filename"]: r for r in queue.app.gallery_photo_rows(gallery)}
    poison = rows.pop(POISON)
    assert poison["status"] == "uploaded" and poison["needs_review"] and poison["edited_key"] is None
    assert poison["error"].startswith("processing this photo stopped the worker 3 times")
    assert [r["status"] for r in rows.values()] == ["edited"] * (PHOTOS - 1)
    # Billed once each; exactly the outputs the rows name, nothing else.
    assert queue.app.images_edited_count(photographer) == PHOTOS - 1
    ledger = queue.conn.execute("SELECT photo_id, count(*) AS n FROM apelier.billed_photos GROUP BY 1").fetchall()
    assert len(ledger) == PHOTOS - 1 and {r["n"] for r in ledger} == {1}
    named = {r[k] for r in rows.values() for k in ("edited_key", "web_key", "thumb_key")}
    outputs = {k for k in storage.list(f"{photographer}/{gallery}") if "/uploads/" not in k}
    assert outputs == named and len(named) == 3 * (PHOTOS - 1)
