"""Style speed: apply a look to a 24 MP photo, and train on 50 pairs; printed as JSON.

    python -m benchmarks.style_speed [--threads 2] [--skip-train] [--skip-cpu]

* **apply** — one 6000×4000 photo (a real FiveK photo upscaled), the default
  CPU path (thumbnail → encoder → fused LUT → Pillow ``Color3DLUT`` in row
  bands on ``--threads`` threads), with its parts timed, and torch
  ``grid_sample`` on the CPU for comparison; the median of a few runs.
* **train** — 50 before/after pairs (the 20 real FiveK Expert-C pairs in
  ``../shared/data/pairs``, flipped and cropped to 50), the default recipe,
  wall and CPU seconds.
* **GPU** — the same on CUDA when there is one; otherwise reported as not measured. Two
  figures: ``total`` is the worker's call today (numpy photo in, numpy photo out: CPU
  thumbnail, 72 MB up and 72 MB down the bus), ``device_resident`` the same work on a photo
  already on the GPU (thumbnail by area interpolation, encoder, fused LUT, ``grid_sample``
  in fp16), which is what the ≤ 10 ms target is about.
  ``--skip-cpu`` leaves the CPU figures out (on the GPU box, whose CPU is not the target's).

The load average is printed too: on a shared machine, wall time includes waiting
for the CPU, and CPU seconds are the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.common import SHARED_DATA, emit
from worker.models import lut3d
from worker.style.model import LutStyle
from worker.style.train import train

PAIRS = SHARED_DATA / "pairs"


def timed(fn: Callable[[], Any], repeat: int = 3, sync: bool = False) -> dict[str, float]:
    walls, cpus = [], []
    fn()  # warm-up
    for _ in range(repeat):
        if sync:
            torch.cuda.synchronize()
        w, c = time.perf_counter(), time.process_time()
        fn()
        if sync:
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {"wall_s": round(statistics.median(walls), 4), "cpu_s": round(statistics.median(cpus), 4)}


def real_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for name in ("fivek_deeplpf", "fivek_curl"):
        root = PAIRS / name
        for p in sorted((root / "before").iterdir()):
            with Image.open(p) as b, Image.open(root / "after" / p.name) as a:
                pairs.append((np.array(b.convert("RGB")), np.array(a.convert("RGB"))))
    return pairs


def fifty_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    base = real_pairs()
    out = list(base)
    rng = np.random.default_rng(0)
    while len(out) < 50:
        b, a = base[len(out) % len(base)]
        h, w = b.shape[:2]
        top, left = int(rng.integers(0, h // 5)), int(rng.integers(0, w // 5))
        crop = (slice(top, top + h * 4 // 5), slice(left, left + w * 4 // 5))
        b2, a2 = b[crop][:, ::-1], a[crop][:, ::-1]
        out.append((np.ascontiguousarray(b2), np.ascontiguousarray(a2)))
    return out


def fivek_photo_24mp() -> np.ndarray:
    """The first FiveK *before* photo upscaled to 6000×4000, as an array (common.photo_24mp: JPEG bytes)."""
    with Image.open(
        PAIRS / "fivek_deeplpf" / "before" / sorted(os.listdir(PAIRS / "fivek_deeplpf" / "before"))[0]
    ) as im:
        return np.asarray(im.convert("RGB").resize((6000, 4000), Image.Resampling.BICUBIC))


def device_resident(style: LutStyle, image: np.ndarray) -> Callable[[], torch.Tensor]:
    """Apply ``style`` to a photo that already lives on the GPU; the result stays there."""
    x = torch.from_numpy(image).cuda()
    h, w = image.shape[:2]
    model = style.model.cuda().eval()

    def run() -> torch.Tensor:
        with torch.no_grad():
            planes = x.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            thumb = F.interpolate(planes, size=(lut3d.THUMB, lut3d.THUMB), mode="area")
            lut = model(thumb)[0].half()
            grid = (x.half() * (2.0 / 255.0) - 1.0).view(1, 1, h, w, 3)
            out = F.grid_sample(lut.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=True)
            return (out.view(3, h, w).permute(1, 2, 0).float().clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8)

    return run


def profile_training(pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Where one GPU training spends its time, by Python function (cProfile, top 25) — to stderr."""
    import cProfile
    import pstats
    import sys

    prof = cProfile.Profile()
    prof.runcall(train, pairs, device="cuda")
    print("== profile: train 50 pairs on CUDA", file=sys.stderr)
    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for applying (Pillow bands, torch)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-cpu", action="store_true", help="GPU figures only")
    parser.add_argument("--profile-train", action="store_true", help="cProfile of one GPU training (stderr)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "threads": args.threads,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }

    pairs = fifty_pairs()
    if args.skip_train or args.skip_cpu:
        style = LutStyle(lut3d.build().eval(), {})
    else:
        w, c = time.perf_counter(), time.process_time()
        style = train(pairs, device="cpu")
        report["train_50_pairs_cpu"] = {
            "wall_s": round(time.perf_counter() - w, 1),
            "cpu_s": round(time.process_time() - c, 1),
            "steps": style.metadata["steps"],
            "epochs": style.metadata["epochs"],
            "adaptive": style.metadata["adaptive"],
            "heldout_psnr": style.metadata.get("heldout_psnr"),
            "target_s": 180,
        }

    image = fivek_photo_24mp()
    lut = style.lut_for(image, "cpu")
    report["apply_24mp_cpu"] = (
        "skipped (--skip-cpu)"
        if args.skip_cpu
        else {
            "megapixels": round(image.shape[0] * image.shape[1] / 1e6, 1),
            "total": timed(lambda: style.apply(image, "cpu")),
            "predict_lut": timed(lambda: style.lut_for(image, "cpu")),
            "pillow_lookup": timed(lambda: lut3d.apply_lut_image_pillow(lut, image, threads=args.threads)),
            "torch_grid_sample_lookup": timed(lambda: lut3d.apply_lut_image_torch(lut, image, "cpu"), repeat=1),
            "target_s": 1.5,
        }
    )

    if torch.cuda.is_available():
        gpu_image = image
        report["apply_24mp_gpu"] = {
            "total": timed(lambda: style.apply(gpu_image, "cuda"), sync=True),
            "lookup_only": timed(lambda: lut3d.apply_lut_image_torch(lut, gpu_image, "cuda"), sync=True),
            "device_resident": timed(device_resident(style, gpu_image), repeat=10, sync=True),
            "target_s": 0.010,
            "device": torch.cuda.get_device_name(),
        }
        w = time.perf_counter()
        gpu_style = train(pairs, device="cuda")
        report["train_50_pairs_gpu"] = {
            "wall_s": round(time.perf_counter() - w, 1),
            "steps": gpu_style.metadata["steps"],
            "adaptive": gpu_style.metadata["adaptive"],
            "heldout_psnr": gpu_style.metadata.get("heldout_psnr"),
            "target_s": 30,
        }
        if args.profile_train:
            profile_training(pairs)
    else:
        report["gpu"] = "not measured: no CUDA device on this machine"
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    emit("style_speed", report)


if __name__ == "__main__":
    main()
