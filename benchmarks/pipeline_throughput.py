"""A gallery of 24 MP JPEGs through the daemon end to end (embedded PostgreSQL, local storage):
photos per minute and the time per photo of each phase.

    python -m benchmarks.pipeline_throughput [--photos 12]     # prints JSON
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import database, emit, photo_24mp
from worker import logs
from worker.config import Settings
from worker.daemon import Daemon
from worker.jobs import Runtime
from worker.models import bundle
from worker.queue import Queue
from worker.storage import LocalStorage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=12)
    args = parser.parse_args()
    logs.configure("warning")
    with database() as url, tempfile.TemporaryDirectory() as tmp:
        storage = LocalStorage(Path(tmp) / "storage")
        queue = Queue(url, "bench")
        pid = queue.upsert_photographer("00000000-0000-4000-8000-0000000be4c1", "Bench")
        gallery = queue.insert_gallery(pid, "24 MP gallery")
        for i in range(args.photos):
            key = f"{pid}/{gallery}/uploads/IMG_{i:04d}.jpg"
            storage.put(key, photo_24mp(i), "image/jpeg")
            queue.insert_photo(photographer_id=pid, gallery_id=gallery, key=key, filename=f"IMG_{i:04d}.jpg")
        settings = Settings(data_dir=Path(tmp), worker_id="bench")
        runtime = Runtime(settings, storage, bundle.load(settings))
        job_id = queue.enqueue(photographer_id=pid, gallery_id=gallery)
        t0 = time.perf_counter()
        Daemon(runtime, url, drain=True).run()
        wall = time.perf_counter() - t0
        job = queue.get_job(job_id) or {}
        queue.close()
    emit(
        "pipeline_throughput",
        {
            "photos": args.photos,
            "megapixels": 24,
            "device": runtime.models.device,
            "models": runtime.models.describe(),
            "status": job.get("status"),
            "wall_s": round(wall, 2),
            "photos_per_min": round(60 * args.photos / wall, 1),
            "s_per_photo": round(wall / args.photos, 3),
            "per_phase_mean_ms": {k: v["mean_ms"] for k, v in (job.get("phase_timings") or {}).items()},
            "note": "phases overlap: download/decode and output/upload run in threads beside the batch phases",
        },
    )


if __name__ == "__main__":
    main()
