"""Queue speed: NOTIFY wake-up latency of an idle daemon, and claim throughput with 8 concurrent workers.

python -m benchmarks.queue_latency        # prints JSON
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from pathlib import Path

from benchmarks.common import database, emit, percentiles
from worker.jobs.runtime import Runtime
from worker.models.bundle import ModelBundle
from worker.queue.database import Queue
from worker.queue.listener import Listener
from worker.service.config import Settings
from worker.service.daemon import Daemon
from worker.storage.local import LocalStorage


def listen_latency(url: str, n: int = 50) -> dict[str, float]:
    listener = Listener(url)
    listener.start()
    app = Queue(url, "app")
    pid = str(uuid.uuid4())
    app.admin.upsert_photographer(pid, "Bench")
    gallery = app.admin.insert_gallery(pid, "G")
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        app.admin.enqueue(photographer_id=pid, gallery_id=gallery)
        listener.wait(5.0)
        samples.append(time.perf_counter() - t0)
    app.conn.execute("DELETE FROM processing_jobs")
    listener.close()
    app.close()
    return percentiles(samples)


def daemon_wakeup(url: str, n: int = 20) -> dict[str, float]:
    """Insert → claimed by an idle daemon whose poll interval is 30 s: only NOTIFY can be this fast."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), device="cpu", poll_interval_s=30.0, worker_id="bench-daemon")
        runtime = Runtime(settings, LocalStorage(Path(tmp) / "s"), ModelBundle())
        daemon = Daemon(runtime, url)
        idle = threading.Event()
        daemon.on_event = lambda name, _: idle.set() if name == "idle" else None
        thread = threading.Thread(target=daemon.run)
        thread.start()
        app = Queue(url, "app")
        pid = str(uuid.uuid4())
        app.admin.upsert_photographer(pid, "Bench")
        gallery = app.admin.insert_gallery(pid, "G")  # no photos: the job completes at once
        samples = []
        for _ in range(n):
            idle.clear()
            idle.wait(10)
            time.sleep(0.05)
            job = app.admin.enqueue(photographer_id=pid, gallery_id=gallery)
            while True:
                row = app.app.get_job(job)
                if row and row["started_at"]:
                    samples.append((row["started_at"] - row["created_at"]).total_seconds())
                    break
                time.sleep(0.002)
        daemon.shutdown.set()
        thread.join()
        app.close()
    return percentiles(samples)


def claim_throughput(url: str, jobs: int = 2000, workers: int = 8) -> dict[str, float]:
    app = Queue(url, "app")
    pid = str(uuid.uuid4())
    app.admin.upsert_photographer(pid, "Bench")
    gallery = app.admin.insert_gallery(pid, "G")
    for _ in range(jobs):
        app.admin.enqueue(photographer_id=pid, gallery_id=gallery)
    claimed = [0] * workers
    barrier = threading.Barrier(workers + 1)

    def run(i: int) -> None:
        q = Queue(url, f"w{i}")
        barrier.wait()
        while q.jobs.claim() is not None:
            claimed[i] += 1
        q.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    app.close()
    return {"jobs": jobs, "workers": workers, "claimed": sum(claimed), "claims_per_s": round(jobs / elapsed, 1)}


def main() -> None:
    with database() as url:
        emit(
            "queue_latency",
            {
                "listen_notify": listen_latency(url),
                "daemon_wakeup_insert_to_claim": daemon_wakeup(url),
                "claim_throughput": claim_throughput(url),
            },
        )


if __name__ == "__main__":
    main()
