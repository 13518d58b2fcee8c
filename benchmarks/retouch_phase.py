"""Phase 2 as the pipeline runs it, step by step: where a batch's retouch time goes. Prints JSON.

    python -m benchmarks.retouch_phase [--stand-in-models] [--rounds 8] [--photo-threads N]

Eight 24 MP portraits (two real portraits from the wheels, upscaled and shifted) are decoded and
analysed once (faces from the bundle's detector), then phase 2 runs on batches of 8, 7, 6 and 5 of
them, twice over: the first pass meets new numbers of faces per model call (``new_call_shapes``:
cuDNN picks its kernels for each, as in the first batches of a worker's life), the second pass
repeats the same shapes. Each round reports the
phase's wall time and its steps: aligning the crops, the restorer's call, the face-parsing call,
feathering the masks, the corrections, the paste-back, and the rest (copying the photo).

``--stand-in-models``: CodeFormer and ParseNet with their real architectures and random weights
on the device (what a GPU box runs once its operator fetched the weights); otherwise the models
the bundle finds (on a fresh box: the classical retouch). ``--photo-threads N`` pastes the photos'
faces on N threads, as the pipeline's photo threads do (``WORKER_PHOTO_THREADS``); the steps are
then summed over the threads, so only the wall time compares with one thread.
"""

from __future__ import annotations

import argparse
import copy
import functools
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import emit, photo_24mp, use_stand_in_retouch
from worker.faces import align as face_align
from worker.faces import paste as face_paste
from worker.frame import Frame
from worker.imaging import decode
from worker.models import bundle
from worker.phases import PhaseContext, analysis, retouch
from worker.service.config import Settings

SIZES = (8, 7, 6, 5)


def _timed(steps: dict[str, float], name: str, fn: Callable[..., Any], device: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        if device == "cuda":
            torch.cuda.synchronize()
        steps[name] += (time.perf_counter() - t0) * 1e3
        return result

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stand-in-models", action="store_true")
    parser.add_argument("--rounds", type=int, default=2 * len(SIZES))
    parser.add_argument("--paste-on", choices=("device", "cpu"), default="device", help="where paste-back runs")
    parser.add_argument("--photo-threads", type=int, default=1, help="threads the photos' paste-back shares")
    args = parser.parse_args()
    settings = Settings(data_dir=Path("/nonexistent"), worker_id="bench")
    models = bundle.load(settings)
    device = models.device
    if args.stand_in_models:
        use_stand_in_retouch(models)
    pool = ThreadPoolExecutor(args.photo_threads) if args.photo_threads > 1 else None
    ctx = PhaseContext(models=models, photo_pool=pool)
    sources = ("grace_hopper", "astronaut")
    frames = [
        decode.decode(photo_24mp(i, sources[i % 2]), photo_id=str(i), filename=f"{i}.jpg", max_pixels=10**9)
        for i in range(max(SIZES))
    ]
    analysis.run(frames, ctx)

    steps: dict[str, float] = defaultdict(float)
    restorer = models.face_restorer
    assert restorer is not None, "no face restorer: nothing to measure"
    restorer.restore = _timed(steps, "restore", restorer.restore, device)  # type: ignore[method-assign]
    if models.face_parser is not None:
        models.face_parser.face_mask = _timed(steps, "parse", models.face_parser.face_mask, device)  # type: ignore[method-assign]
    patches = {
        (face_align, "warp_face"): "align",
        (face_paste, "parsing_mask"): "feather",
        (face_paste, "correction"): "correction",
        (face_paste, "paste"): "paste",
    }
    if args.paste_on == "cpu":
        on_device = face_paste.paste
        face_paste.paste = lambda target, delta, alignment, device="cpu": on_device(target, delta, alignment, "cpu")
    for (module, attr), name in patches.items():
        setattr(module, attr, _timed(steps, name, getattr(module, attr), device))

    rounds = []
    per_call = getattr(restorer, "batch_size", None)  # the model's calls take at most this many faces
    shapes_seen: set[int] = set()
    for r in range(args.rounds):
        size = SIZES[r % len(SIZES)]
        batch: list[Frame] = []
        for frame in frames[:size]:
            twin = copy.copy(frame)
            twin.report = {}
            twin.image = frame.image.copy()  # each round's photos are its own, as decoded photos are
            batch.append(twin)
        steps.clear()
        t0 = time.perf_counter()
        retouch.run(batch, ctx)
        wall = (time.perf_counter() - t0) * 1e3
        faces = sum(1 for f in batch for e in f.report[retouch.NAME]["faces"] if not e["method"].startswith("skipped"))
        rest = wall - sum(steps.values())
        calls = [min(per_call, faces - i) for i in range(0, faces, per_call)] if per_call else []
        new_shapes = sorted(set(calls) - shapes_seen)  # cuDNN picks kernels for each new one
        shapes_seen.update(calls)
        rounds.append(
            {
                "photos": size,
                "faces": faces,
                "model_calls": calls,
                "new_call_shapes": new_shapes,
                "wall_ms": round(wall, 1),
                "ms_per_photo": round(wall / size, 1),
                "steps_ms": {k: round(v, 1) for k, v in steps.items()} | {"rest": round(rest, 1)},
            }
        )
    emit(
        "retouch_phase",
        {
            "device": device,
            "restorer": restorer.name,
            "face_parser": models.face_parser.name if models.face_parser else None,
            "photo_threads": args.photo_threads,
            "rounds": rounds,
        },
    )


if __name__ == "__main__":
    main()
