"""A gallery of 24 MP JPEGs through the daemon end to end (embedded PostgreSQL, local storage):
photos per minute and the time per photo of each phase.

    python -m benchmarks.pipeline_throughput [--photos 12] [--with-style] [--lanes N]
                                             [--batch-size N] [--photo-threads N]   # prints JSON

The gallery cycles through a landscape, two portraits and a still life (real photos from the
wheels, upscaled to a 6000 px long edge), so face detection and retouch do real work. With
``--with-style`` a style is first trained (quickly: 40 epochs) from six before/after pairs of the
demo's look, and the gallery is edited in it, so every phase runs.

With ``--stand-in-models`` the face restorer, its parsing mask and the inpainter are CodeFormer,
ParseNet and big-lama with their real architectures and random weights (``benchmarks.lama_speed``
builds the LaMa one): the photos come out wrong, but the time is what the licensed weights cost
— how a GPU box runs when its operator has fetched the models. Faces are still found by MTCNN,
whose weights ship in its wheel.

``--lanes N`` runs the batch phases of N batches at once (``WORKER_PHASE_LANES``). On a GPU the
JSON also gives the peak GPU memory of the gallery run (each lane can hold a batch in a phase).
``--batch-size`` and ``--photo-threads`` set ``WORKER_BATCH_SIZE`` (0: 8 on a GPU, 1 on a CPU) and
``WORKER_PHOTO_THREADS`` (0: one per core, at most 8: the threads a batch phase spreads its photos'
CPU work over; they do nothing with batches of one). ``--image-codec`` sets ``WORKER_IMAGE_CODEC``
(``auto``: nvJPEG on a GPU, OpenCV/Pillow on a CPU; ``cpu``; ``torch``).

What a box's cores cost (issue 19 §2): the JSON gives photos/s, the host CPU-seconds per photo (user +
system time of this process, every thread, over the gallery run: the embedded PostgreSQL server is
another process and not counted), the GPU's busy % (sampled every 0.2 s through NVML —
``torch.cuda.utilization`` — or ``nvidia-smi``; null without a GPU) and the peak GPU memory.
``--cores N`` runs the benchmark on the first N cores only (it re-executes itself under
``taskset -c 0-(N-1)``, so torch and every thread pool size themselves from N): 4 cores stand for an
A10G box.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import database, emit, photo_24mp, use_stand_in_retouch
from benchmarks.lama_speed import stand_in_file
from worker.commands import demo
from worker.jobs.runtime import Runtime
from worker.models import bundle
from worker.models.lama import load_lama
from worker.pipeline.stream import effective_batch_size, effective_photo_threads
from worker.queue.database import Queue
from worker.service import logs
from worker.service.config import Settings
from worker.service.daemon import Daemon
from worker.storage.local import LocalStorage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--with-style", action="store_true", help="train a style first and apply it")
    parser.add_argument("--stand-in-models", action="store_true", help="CodeFormer, ParseNet, LaMa, random weights")
    parser.add_argument("--lanes", type=int, default=Settings.phase_lanes, help="batches in the batch phases at once")
    parser.add_argument("--batch-size", type=int, default=Settings.batch_size, help="0: 8 on a GPU, 1 on a CPU")
    parser.add_argument("--photo-threads", type=int, default=Settings.photo_threads, help="0: one per core, ≤ 8")
    parser.add_argument("--image-codec", choices=("auto", "cpu", "torch"), default=Settings.image_codec)
    parser.add_argument("--cores", type=int, default=0, help="run on the first N cores only (taskset); 0: all")
    args = parser.parse_args()
    pin_to_cores(args.cores)
    logs.configure("warning")
    with database() as url, tempfile.TemporaryDirectory() as tmp:
        storage = LocalStorage(Path(tmp) / "storage")
        queue = Queue(url, "bench")
        pid = queue.admin.upsert_photographer("00000000-0000-4000-8000-0000000be4c1", "Bench")
        gallery = queue.admin.insert_gallery(pid, "24 MP gallery")
        sources = ("china", "grace_hopper", "coffee", "astronaut")
        for i in range(args.photos):
            key = f"{pid}/{gallery}/uploads/IMG_{i:04d}.jpg"
            storage.put(key, photo_24mp(i, sources[i % len(sources)]), "image/jpeg")
            queue.admin.insert_photo(photographer_id=pid, gallery_id=gallery, key=key, filename=f"IMG_{i:04d}.jpg")
        settings = Settings(
            data_dir=Path(tmp),
            worker_id="bench",
            phase_lanes=args.lanes,
            batch_size=args.batch_size,
            photo_threads=args.photo_threads,
            image_codec=args.image_codec,
        )
        models = bundle.load(settings)
        if args.stand_in_models:
            use_stand_in_retouch(models)
            models.inpainter = load_lama(stand_in_file(Path(tmp), models.device), models.device)
        runtime = Runtime(settings, storage, models)
        style_id = None
        if args.with_style:
            style_id, pairs = demo.seed_style(queue, storage, pid, demo.demo_photos()[:6])
            queue.admin.enqueue(
                photographer_id=pid,
                style_profile_id=style_id,
                job_type="train_style",
                payload={"pairs": pairs, "epochs": 40},
            )
            Daemon(runtime, url, drain=True).run()
        job_id = queue.admin.enqueue(photographer_id=pid, gallery_id=gallery, style_profile_id=style_id)
        on_gpu = runtime.models.device == "cuda"
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        busy = GpuBusy() if on_gpu else None
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        Daemon(runtime, url, drain=True).run()
        wall, host_cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        gpu_busy = busy.stop() if busy is not None else None
        gpu_peak = (
            {
                "allocated": round(torch.cuda.max_memory_allocated() / 2**20),
                "reserved": round(torch.cuda.max_memory_reserved() / 2**20),
            }
            if on_gpu
            else None
        )
        job = queue.app.get_job(job_id) or {}
        faces = queue.conn.execute(
            "SELECT coalesce(sum(jsonb_array_length(face_data)), 0) AS n FROM photos WHERE gallery_id = %s",
            (gallery,),
        ).fetchone()
        queue.close()
    emit(
        "pipeline_throughput",
        {
            "photos": args.photos,
            "megapixels": 24,
            "device": runtime.models.device,
            "phase_lanes": args.lanes,
            "batch_size": effective_batch_size(settings, runtime.models.device),
            "photo_threads": effective_photo_threads(settings),
            "models": runtime.models.describe(),
            "model_weights": "stand-ins: real architectures, random weights" if args.stand_in_models else "as found",
            "status": job.get("status"),
            "style": "trained demo look" if args.with_style else None,
            "faces_found": int(faces["n"]) if faces else None,
            "wall_s": round(wall, 2),
            "cores": len(os.sched_getaffinity(0)),
            "image_codec": runtime.models.describe()["image_codec"],
            "photos_per_s": round(args.photos / wall, 2),
            "photos_per_min": round(60 * args.photos / wall, 1),
            "s_per_photo": round(wall / args.photos, 3),
            "host_cpu_s_per_photo": round(host_cpu / args.photos, 3),
            "gpu_busy_percent": gpu_busy,
            "gpu_peak_mib": gpu_peak,
            "per_phase_mean_ms": {k: v["mean_ms"] for k, v in (job.get("phase_timings") or {}).items()},
            "note": "phases overlap: download/decode and output/upload run in threads beside the batch phases",
        },
    )


def pin_to_cores(cores: int) -> None:
    """Re-execute this benchmark on the first ``cores`` cores (``taskset``) unless it runs on them already."""
    if cores <= 0:
        return
    wanted = set(range(cores))
    if os.sched_getaffinity(0) == wanted:
        return
    if cores > (os.cpu_count() or 1):
        sys.exit(f"--cores {cores}: this machine has {os.cpu_count()} cores")
    command = [sys.executable, "-m", "benchmarks.pipeline_throughput", *sys.argv[1:]]
    if shutil.which("taskset"):
        os.execvp("taskset", ["taskset", "-c", f"0-{cores - 1}", *command])
    os.sched_setaffinity(0, wanted)  # no taskset: the same, inherited across exec
    os.execv(sys.executable, command)


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class GpuBusy:
    """Samples the GPU's utilisation (% of time a kernel ran) every 0.2 s until :meth:`stop`: through NVML
    (``torch.cuda.utilization``, needs ``pynvml``) or, without it, a ``nvidia-smi -lms 200`` child."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.source: str | None = None
        self._stop = threading.Event()
        self._smi: subprocess.Popen[str] | None = None
        try:
            torch.cuda.utilization()
            self.source = "nvml"
        except Exception:  # no pynvml: ask nvidia-smi
            if shutil.which("nvidia-smi"):
                self.source = "nvidia-smi"
                self._smi = subprocess.Popen(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0",
                     "-lms", "200"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                )  # fmt: skip
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._smi is not None and self._smi.stdout is not None:
            for line in self._smi.stdout:
                if line.strip().isdigit():
                    self.samples.append(float(line))
            return
        while self.source == "nvml" and not self._stop.wait(0.2):
            self.samples.append(float(torch.cuda.utilization()))

    def stop(self) -> dict[str, Any] | None:
        self._stop.set()
        if self._smi is not None:
            self._smi.terminate()
            self._smi.wait()
        self._thread.join(timeout=2)
        if not self.samples:
            return None
        return {"mean": round(sum(self.samples) / len(self.samples), 1), "samples": len(self.samples),
                "source": self.source}  # fmt: skip


if __name__ == "__main__":
    main()
