"""Retouch speed on a device: CodeFormer per face (batched) and paste-back per face at 24 MP. Prints JSON.

    python -m benchmarks.retouch_speed [--device cuda] [--batches 1,8] [--iters 20]

* ``codeformer``: the restorer's whole call (uint8 crops in → uint8 crops out, fp16
  autocast on CUDA) with the official architecture and random weights — the cost does
  not depend on the weight values. Target: ≤ 15 ms per face batched on an H100-class GPU.
* ``paste``: crop extraction and paste-back of one face into a 6000×4000 photo, for faces
  whose 512² crop covers 300, 1,000 and 2,000 photo pixels. Target: ≤ 20 ms per face
  (GPU box). On CUDA the paste's warp-and-add runs on the GPU.

On a CPU, CodeFormer runs batch 1 once (tens of seconds); the GPU targets cannot be
measured there.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import torch

from worker.faces import align as face_align
from worker.faces import paste as face_paste
from worker.models import codeformer


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_codeformer(device: str, batches: list[int], iters: int) -> dict[str, float]:
    model = codeformer.codeformer(device=device)
    restorer = codeformer.CodeFormerRestorer(model, device, batch_size=max(batches))
    out = {}
    for batch in batches:
        faces = np.random.default_rng(0).integers(0, 256, (batch, 512, 512, 3), dtype=np.uint8)
        restorer.batch_size = batch
        restorer.restore(faces, 0.7)  # warm-up (cuDNN autotune, allocator)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            restorer.restore(faces, 0.7)
        _sync(device)
        out[f"batch_{batch}_ms_per_face"] = round((time.perf_counter() - t0) * 1e3 / (iters * batch), 2)
    return out


def alignment_for(footprint: float, centre: tuple[float, float]) -> face_align.Alignment:
    s = 512 / footprint
    c, sn = np.cos(np.radians(7)) * s, np.sin(np.radians(7)) * s
    m = np.array([[c, -sn, 0.0], [sn, c, 0.0]])
    m[:, 2] = 256 - m[:, :2] @ np.array(centre)
    return face_align.Alignment(m, np.asarray(cv2.invertAffineTransform(m), dtype=np.float64))


def time_paste(device: str, iters: int) -> dict[str, dict[str, float]]:
    photo = np.random.default_rng(0).integers(0, 256, (4000, 6000, 3), dtype=np.uint8)
    delta = np.random.default_rng(1).normal(0, 10, (512, 512, 3)).astype(np.float32)
    delta *= face_paste.ellipse_mask()[..., None]
    out = {}
    for footprint in (300, 1000, 2000):
        alignment = alignment_for(footprint, (3000, 2000))
        face_paste.paste(photo, delta, alignment, device)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            face_align.warp_face(photo, alignment)
        t1 = time.perf_counter()
        for _ in range(iters):
            face_paste.paste(photo, delta, alignment, device)
        _sync(device)
        t2 = time.perf_counter()
        out[f"face_{footprint}px"] = {
            "crop_ms": round((t1 - t0) * 1e3 / iters, 2),
            "paste_ms": round((t2 - t1) * 1e3 / iters, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: library default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    cpu = args.device == "cpu"
    result = {
        "benchmark": "retouch_speed",
        "device": torch.cuda.get_device_name(0) if not cpu else f"CPU ({torch.get_num_threads()} threads)",
        "codeformer": time_codeformer(args.device, [1] if cpu else batches, 1 if cpu else args.iters),
        "paste_24mp": time_paste(args.device, 3 if cpu else args.iters),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
