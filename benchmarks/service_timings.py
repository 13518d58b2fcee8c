"""The figures behind the systemd unit's timeouts, from the real daemon under a fake systemd.

* start → ``READY=1`` (what ``TimeoutStartSec`` must cover),
* the longest gap between ``WATCHDOG=1`` pings while idle and while a gallery of 24 MP photos runs
  (what ``WatchdogSec`` must exceed on this machine),
* SIGTERM mid-job → ``STOPPING=1`` and → exit 0 with the job released (what ``TimeoutStopSec`` must cover).

    python -m benchmarks.service_timings [--photos 16]       # prints JSON
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import database, emit, photo_24mp
from tests.fake_systemd import FakeSystemd
from worker.queue.database import Queue
from worker.storage.local import LocalStorage


def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the daemon did not get there in time")
        time.sleep(0.02)


def max_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=16)
    args = parser.parse_args()
    manager = FakeSystemd()
    with database() as url, tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        storage = LocalStorage(data_dir / "storage" / "photos")
        queue = Queue(url, "bench")
        pid = queue.admin.upsert_photographer("00000000-0000-4000-8000-0000000be4c2", "Bench")
        gallery = queue.admin.insert_gallery(pid, "24 MP gallery")
        for i in range(args.photos):
            key = f"{pid}/{gallery}/uploads/IMG_{i:04d}.jpg"
            storage.put(key, photo_24mp(i), "image/jpeg")
            queue.admin.insert_photo(photographer_id=pid, gallery_id=gallery, key=key, filename=f"IMG_{i:04d}.jpg")
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "WORKER_DATA_DIR": str(data_dir),
            "WORKER_ID": "bench-service",
            "WORKER_LOG_LEVEL": "warning",
            "NOTIFY_SOCKET": manager.address,
            "WATCHDOG_USEC": "300000000",  # as the unit: WatchdogSec=300
        }
        env.pop("SUPABASE_URL", None)
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "worker", "run"], env=env, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: manager.first("READY=1") is not None, 300)
            ready = manager.first("READY=1") or t0
            time.sleep(20)  # idle: at least one requeue check (lease/4 = 15 s) and several poll turns
            job_id = queue.admin.enqueue(photographer_id=pid, gallery_id=gallery)
            job_t0 = time.monotonic()
            quarter = max(1, args.photos // 4)
            wait_until(lambda: (queue.app.get_job(job_id) or {}).get("processed_images", 0) >= quarter, 600)
            term = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=300)
            exited = time.monotonic()
        finally:
            if proc.poll() is None:
                proc.kill()
        stopping = manager.first("STOPPING=1", term)
        pings = manager.arrivals("WATCHDOG=1")
        job = queue.app.get_job(job_id) or {}
        queue.close()
    manager.close()
    emit(
        "service_timings",
        {
            "photos": args.photos,
            "megapixels": 24,
            "start_to_ready_s": round(ready - t0, 2),
            "watchdog_max_gap_idle_s": round(max_gap([t for t in pings if ready <= t < job_t0]), 2),
            "watchdog_max_gap_working_s": round(max_gap([t for t in pings if job_t0 <= t < term]), 2),
            "watchdog_pings_working": len([t for t in pings if job_t0 <= t < term]),
            "sigterm_to_stopping_ms": round(((stopping or term) - term) * 1000, 1),
            "sigterm_to_exit_s": round(exited - term, 2),
            "exit_code": code,
            "job_after_stop": {k: job.get(k) for k in ("status", "processed_images", "total_images", "attempts")},
        },
    )


if __name__ == "__main__":
    main()
