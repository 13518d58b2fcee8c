"""Phase 3 inpainting quality: how close the filled wire pixels come to the photo without the wire.

    python -m benchmarks.cleanup_inpaint [--seeds 4] [--lama PATH/big-lama.pt] [--device cpu|cuda]

On the evaluation set of :mod:`benchmarks.cleanup_data`, for each inpainter (OpenCV Telea,
Navier–Stokes and ``classical``, the worker's fallback — the membrane, the lattice or the patch
fill per crop — always;
LaMa when ``--lama`` points at ``big-lama.pt``), with the crops of
:mod:`worker.cleanup.inpaint` exactly as the phase makes them:

* ``detected``: the regions the detector finds (conservative level) are filled; PSNR and SSIM
  against the clean photo over all wire pixels (coverage ≥ 10 %: those the detector left alone
  count with their wire still in), over the wire pixels it removed, and over every edited pixel.
* ``oracle``: the true wire mask (coverage > 0, grown by 1 px) is filled, so the score is the
  inpainter's alone.
* ``untouched``: the same measures with nothing removed (the floor).

SSIM is computed on the whole photo (7×7 window, per channel) and averaged over the pixels
named. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from benchmarks.cleanup_data import SHARED_DATA, WIRE_COVERAGE, Sample, build
from benchmarks.cleanup_detection import wire_mask
from worker.cleanup.inpaint import fill_regions
from worker.cleanup.opencv_inpaint import OpenCVInpainter
from worker.cleanup.region import Region, crop_to_mask
from worker.models.protocols import Inpainter


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    if not where.any():
        return float("nan")
    d = a[where].astype(np.float64) - b[where].astype(np.float64)
    mse = float(np.mean(d * d))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, full = structural_similarity(a, b, channel_axis=2, win_size=7, data_range=255, full=True)
    return np.asarray(full.mean(axis=2))


class _Acc:
    def __init__(self) -> None:
        self.sq: dict[str, float] = {}
        self.n: dict[str, int] = {}
        self.ssim: dict[str, list[float]] = {}

    def add(self, key: str, out: np.ndarray, clean: np.ndarray, where: np.ndarray, smap: np.ndarray) -> None:
        if not where.any():
            return
        d = out[where].astype(np.float64) - clean[where].astype(np.float64)
        self.sq[key] = self.sq.get(key, 0.0) + float((d * d).sum())
        self.n[key] = self.n.get(key, 0) + int(d.size)
        self.ssim.setdefault(key, []).append(float(smap[where].mean()))

    def result(self) -> dict[str, dict[str, float]]:
        out = {}
        for key, sq in self.sq.items():
            mse = sq / max(1, self.n[key])
            out[key] = {
                "psnr_db": round(99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse), 2),
                "ssim": round(float(np.mean(self.ssim[key])), 4),
            }
        return out


def oracle_region(s: Sample) -> Region:
    truth = cv2.dilate((s.coverage > 0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    region = crop_to_mask("power_line", truth, (0, 0), 1.0)
    assert region is not None
    return region


def evaluate(samples: list[Sample], inpainter: Inpainter) -> dict[str, Any]:
    acc = _Acc()
    seconds = 0.0
    crops = 0
    for s in samples:
        truth = s.coverage >= WIRE_COVERAGE
        _, edited, regions = wire_mask(s.wired, "conservative")
        t0 = time.perf_counter()
        filled, stats = fill_regions(s.wired, regions, inpainter)
        seconds += time.perf_counter() - t0
        crops += stats.crops
        smap = ssim_map(filled, s.clean)
        acc.add("detected/wire_pixels", filled, s.clean, truth, smap)
        acc.add("detected/edited_pixels", filled, s.clean, edited, smap)
        acc.add("detected/removed_wire_pixels", filled, s.clean, truth & edited, smap)
        oracle, _ = fill_regions(s.wired, [oracle_region(s)], inpainter)
        acc.add("oracle/wire_pixels", oracle, s.clean, truth, ssim_map(oracle, s.clean))
    return {"name": inpainter.name, **acc.result(), "inpaint_seconds": round(seconds, 2), "crops": crops}


def untouched(samples: list[Sample]) -> dict[str, Any]:
    acc = _Acc()
    for s in samples:
        truth = s.coverage >= WIRE_COVERAGE
        acc.add("wire_pixels", s.wired, s.clean, truth, ssim_map(s.wired, s.clean))
    return acc.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--lama", type=Path, help="big-lama.pt, to compare LaMa with OpenCV")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    samples = build(args.seeds, shared=args.shared)
    inpainters: list[Inpainter] = [OpenCVInpainter("telea"), OpenCVInpainter("ns"), OpenCVInpainter("auto")]
    if args.lama:
        from worker.models.lama import load_lama

        inpainters.append(load_lama(args.lama, args.device))
    result: dict[str, Any] = {
        "machine": "2-core CPU, no GPU" if args.device == "cpu" else args.device,
        "wired_images": len(samples),
        "untouched": untouched(samples),
        "inpainters": [evaluate(samples, p) for p in inpainters],
    }
    if not args.lama:
        result["lama"] = "not measured: no big-lama.pt on this machine (pass --lama PATH where it is installed)"
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
