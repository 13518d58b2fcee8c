"""Phase 3 speed on a 24 MP photo: detection on the CPU, inpainting with OpenCV, LaMa per crop on a GPU.

    python -m benchmarks.cleanup_speed [--runs 5] [--threads 2] [--lama PATH/big-lama.pt --device cuda]

The 24 MP (6000×4000) test images are real sky photos upscaled with bicubic interpolation: an
open sky (FiveK Expert-C thumbnail a1384, 1958×1317), bare trees against the sky (FiveK a3232,
the slowest case for the wire detector: every twig is a candidate) and the rocket's lattice
towers (scikit-image); each once clean and once with three synthetic wires (1–6 px). OpenCV is
limited to ``--threads`` threads (2: the target machine class for CPU detection). Times are
medians over ``--runs``. Detection = the downscale, sky, wires with their full-resolution masks,
and EXIT signs: everything before inpainting. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.cleanup_data import SHARED_DATA, load_photo, random_wires
from worker.cleanup.exit_signs import detect_exit_signs, sign_regions
from worker.cleanup.inpaint import fill_regions
from worker.cleanup.opencv_inpaint import OpenCVInpainter
from worker.cleanup.sky import find_sky
from worker.cleanup.wires import detect_wires, wire_regions
from worker.cleanup.working import WorkingImage

SIZE = (6000, 4000)


PHOTOS = (
    ("shared", "pairs/fivek_multi_expert_thumbs_no_input/expertC/a1384-dvf_095.jpg"),
    ("shared", "pairs/fivek_curl/before/a3232-_DGW6397.png"),
    ("skimage", "rocket"),
)


def test_images(shared: Path) -> list[tuple[str, np.ndarray]]:
    out = []
    for source, name in PHOTOS:
        if source == "shared" and not (shared / name).is_file():
            continue
        photo = load_photo(source, name, shared)
        out.append(
            (Path(name).stem, np.asarray(cv2.resize(photo, SIZE, interpolation=cv2.INTER_CUBIC), dtype=np.uint8))
        )
    return out


def detect_once(image: np.ndarray) -> tuple[dict[str, float], list[Any]]:
    t = [time.perf_counter()]
    work = WorkingImage(image)
    t.append(time.perf_counter())
    sky = find_sky(work)
    t.append(time.perf_counter())
    wires = detect_wires(work, "conservative", sky)
    t.append(time.perf_counter())
    regions = wire_regions(work, wires)
    t.append(time.perf_counter())
    regions += sign_regions(work, detect_exit_signs(work))
    t.append(time.perf_counter())
    names = ("downscale", "sky", "wires", "wire_masks", "exit_signs")
    parts = {n: (b - a) * 1e3 for n, a, b in zip(names, t[:-1], t[1:], strict=True)}
    parts["total"] = (t[-1] - t[0]) * 1e3
    return parts, regions


def timed(image: np.ndarray, runs: int) -> tuple[dict[str, float], list[Any]]:
    detect_once(image)  # warm-up
    samples = [detect_once(image) for _ in range(runs)]
    keys = samples[0][0].keys()
    return {k: round(statistics.median(s[0][k] for s in samples), 1) for k in keys}, samples[-1][1]


def lama_crop_ms(path: Path, device: str, runs: int) -> dict[str, Any]:
    import torch

    from worker.models.lama import load_lama

    model = load_lama(path, device)
    crop = np.full((1024, 1024, 3), 180, np.uint8)
    mask = np.zeros((1024, 1024), np.uint8)
    mask[500:506] = 1
    model.inpaint(crop, mask)
    times = []
    for _ in range(runs):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.inpaint(crop, mask)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"device": device, "crop": "1024x1024", "median_ms": round(statistics.median(times), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--lama", type=Path)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    result: dict[str, Any] = {
        "machine": f"2-core CPU, no GPU; OpenCV threads={args.threads}",
        "image_size": f"{SIZE[0]}x{SIZE[1]} (24 MP), upscaled from a real photo",
        "runs": args.runs,
        "target_detection_ms": 300,
        "photos": {},
    }
    worst = 0.0
    for name, clean in test_images(args.shared):
        wired, _, widths = random_wires(clean, (0.03, 0.3), np.random.default_rng(7), n_wires=3)
        clean_ms, _ = timed(clean, args.runs)
        wired_ms, regions = timed(wired, args.runs)
        t0 = time.perf_counter()
        _, stats = fill_regions(wired, regions, OpenCVInpainter("telea"))
        inpaint_ms = (time.perf_counter() - t0) * 1e3
        worst = max(worst, clean_ms["total"], wired_ms["total"])
        result["photos"][name] = {
            "detection_ms_clean": clean_ms,
            "detection_ms_with_3_wires": wired_ms,
            "wire_widths_px": list(widths),
            "regions_found": len(regions),
            "opencv_telea_inpaint_ms": round(inpaint_ms, 1),
            "inpaint_crops": stats.crops,
        }
    result["worst_detection_ms"] = round(worst, 1)
    if args.lama:
        result["lama"] = lama_crop_ms(args.lama, args.device, args.runs)
    else:
        result["lama"] = "not measured: no GPU and no big-lama.pt on this machine (target ≤ 60 ms per 1024² crop)"
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
