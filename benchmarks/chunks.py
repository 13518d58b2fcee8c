"""One gallery over several workers: wall time and photos per worker, 1 worker against N.

python -m benchmarks.chunks [--photos 48] [--size 256] [--chunk 8] [--workers 3]

An embedded PostgreSQL, a local storage folder, real photographs from the wheels made ``--size`` px
on their long edge, each shifted so that each differs. One worker (``python -m worker run``, CPU,
``WORKER_CHUNK_PHOTOS=--chunk``, one lane, ``OMP_NUM_THREADS=1``) edits a gallery of ``--photos``;
then ``--workers`` - 1 more start and all of them edit a second gallery of the same photos. Workers
are started and idle before each gallery is queued: the times are enqueue → ``completed``, not
start-up. Prints JSON: per run the wall time, chunks, photos per worker, and the time a chunk costs
beyond its photos (claim, set-up, pipeline start and drain, end: ``job_claimed`` to ``job_finished``
less the pipeline's wall time, from the workers' logs).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import database, emit
from worker.queue.database import Queue
from worker.storage.local import LocalStorage

ROOT = Path(__file__).resolve().parents[1]


def photos(count: int, size: int) -> list[bytes]:
    from skimage import data

    bases = [Image.fromarray(np.asarray(getattr(data, n)())).convert("RGB") for n in ("astronaut", "coffee", "rocket")]
    out = []
    for i in range(count):
        img = bases[i % len(bases)].copy()
        img.thumbnail((size, size))
        buf = io.BytesIO()
        Image.fromarray(np.roll(np.asarray(img), 11 * i, axis=1)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def log_events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def chunk_overheads(logs: list[Path], job_id: str) -> list[float]:
    """Per chunk of the job: seconds from its claim to its end, less the pipeline's wall time."""
    out = []
    for log in logs:
        claimed: datetime | None = None
        for e in log_events(log):
            if e.get("job_id") != job_id or e.get("chunk") is None:
                continue
            at = datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00"))
            if e.get("event") == "job_claimed":
                claimed = at
            elif e.get("event") == "job_finished" and claimed is not None and e.get("wall_s") is not None:
                out.append((at - claimed).total_seconds() - float(e["wall_s"]))
                claimed = None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args(argv)

    files = photos(args.photos, args.size)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="chunks-") as tmp, database() as url:
        tmp_path = Path(tmp)
        storage = LocalStorage(tmp_path / "data" / "storage" / "photos")
        app = Queue(url, "bench")
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": url,
            "WORKER_DATA_DIR": str(tmp_path / "data"),
            "WORKER_DEVICE": "cpu",
            "WORKER_CHUNK_PHOTOS": str(args.chunk),
            "WORKER_PHASE_LANES": "1",
            "WORKER_POLL_INTERVAL_S": "0.5",
            "WORKER_HEARTBEAT_INTERVAL_S": "1",
            "WORKER_LEASE_S": "10",
            "WORKER_PROGRESS_INTERVAL_S": "0.5",
            "WORKER_LOG_FORMAT": "json",
            "OMP_NUM_THREADS": "1",
        }
        env.pop("SUPABASE_URL", None)
        procs: list[subprocess.Popen[bytes]] = []

        def start(n: int) -> None:
            names = [f"w{len(procs) + i + 1}" for i in range(n)]
            for name in names:
                with (tmp_path / f"{name}.log").open("ab") as out:
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "worker", "run"],
                            env={**env, "WORKER_ID": name},
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            cwd=ROOT,
                        )
                    )
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                logs = [tmp_path / f"w{i + 1}.log" for i in range(len(procs))]
                if all(any(e.get("event") == "worker_started" for e in log_events(log)) for log in logs):
                    return
                time.sleep(0.2)
            raise SystemExit("the workers did not start within 5 minutes")

        def gallery_run(label: str) -> dict[str, Any]:
            photographer = app.admin.upsert_photographer(str(uuid.uuid4()), label)
            gallery = app.admin.insert_gallery(photographer, label)
            for i, data in enumerate(files):
                key = f"{photographer}/{gallery}/uploads/{i:03d}.jpg"
                storage.put(key, data, "image/jpeg")
                app.admin.insert_photo(
                    photographer_id=photographer, gallery_id=gallery, key=key, filename=f"IMG_{i:04d}.jpg",
                    size=len(data), sort_order=i,
                )  # fmt: skip
            t0 = time.monotonic()
            job_id = app.admin.enqueue(photographer_id=photographer, gallery_id=gallery)
            while (app.app.get_job(job_id) or {}).get("status") not in ("completed", "failed"):
                time.sleep(0.1)
            wall = time.monotonic() - t0
            job = app.app.get_job(job_id) or {}
            rows = app.conn.execute("SELECT ai_edits FROM photos WHERE gallery_id = %s", (gallery,)).fetchall()
            by_worker = Counter(str((r["ai_edits"] or {}).get("worker")) for r in rows)
            overheads = chunk_overheads([tmp_path / f"w{i + 1}.log" for i in range(len(procs))], job_id)
            return {
                "workers": len(procs),
                "status": job.get("status"),
                "wall_s": round(wall, 2),
                "photos_per_s": round(args.photos / wall, 2),
                "chunks": len(app.jobs.chunks(job_id)),
                "photos_by_worker": dict(sorted(by_worker.items())),
                "chunk_overhead_s_mean": round(float(np.mean(overheads)), 3) if overheads else None,
                "billed": app.app.images_edited_count(photographer),
            }

        try:
            start(1)
            runs.append(gallery_run("one worker"))
            start(args.workers - 1)
            runs.append(gallery_run(f"{args.workers} workers"))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            app.close()
    one, many = runs[0]["wall_s"], runs[-1]["wall_s"]
    emit("chunks", {"config": vars(args), "runs": runs, "speedup": round(one / many, 2) if many else None})
    return 0 if all(r["status"] == "completed" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
