"""Smooth photographer looks, learned from ~20 pairs: held-out PSNR and training time, printed as JSON.

    python -m benchmarks.style_looks [--looks film,airy] [--train 20] [--long-edge 800] [--config '{"steps": 300}']

The looks are written here as numpy functions of a pixel's colour (sRGB in [0, 1]), the kind of
preset-like edit a photographer applies to a whole gallery:

* ``film`` — an S-shaped tone curve with matte (lifted) blacks and rolled-off whites, a little warmth;
* ``split`` — split toning by luminance: teal shadows, amber highlights, neutral mid-tones kept;
* ``olive`` — hue-selective colour: greens muted and pulled toward olive, skin/orange hues warmed and
  a touch richer, blues slightly deeper;
* ``airy`` — bright and airy: +0.6 stop with a soft shoulder, lower contrast, lifted shadows,
  slightly desaturated, a cool-pink white balance;
* ``moody`` — dark and moody: −0.4 stop, stronger contrast in the mid-tones, crushed-then-matte
  blacks, desaturated (greens most), teal shadows.

The photos: every ``before`` under ``../shared/data/pairs/*/`` (FiveK input renderings — never the
experts' afters) and the photos of ``faces``, ``powerlines`` and ``exit_signs`` (read from there, never
copied), brought to ``--long-edge`` on the long side (smaller ones enlarged, bicubic), sorted by path
and shuffled with a fixed seed; the first ``--train`` are the training pairs, the rest are held out.
Each look is trained with the default recipe (``worker/style/train.py``, CPU) and scored on the
held-out photos at ``--long-edge`` (PSNR, ΔE2000). Training is timed in wall and CPU seconds of this
process (``time.process_time``) with the load average beside it: on a shared machine wall time
includes waiting for the cores; the ≤ 60 s target is judged on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from benchmarks.common import SHARED_DATA, emit
from worker.imaging.colour import linear_to_srgb, srgb_to_linear
from worker.models import lut3d
from worker.style.metrics import delta_e2000, psnr
from worker.style.train import TrainConfig, train

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
LUMA = np.array([0.2126, 0.7152, 0.0722])
SOURCES = ("pairs/*/before/*", "faces/*", "powerlines/*", "exit_signs/*")


def smoothstep(x: F64, lo: float, hi: float) -> F64:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    out: F64 = t * t * (3.0 - 2.0 * t)
    return out


def luma(y: F64) -> F64:
    out: F64 = y @ LUMA
    return out


def s_curve(y: F64, amount: float) -> F64:
    """A smooth S-curve through (0, 0), (½, ½), (1, 1): mid-tone slope 1 + ``amount``, ends 1 − ``amount``."""
    y = np.clip(y, 0.0, 1.0)
    out: F64 = y - amount * np.sin(2.0 * np.pi * y) / (2.0 * np.pi)
    return out


def saturate(y: F64, factor: F64 | float) -> F64:
    """Chroma scaled around each colour's luma (``factor``: scalar or per pixel)."""
    lum = luma(y)[..., None]
    f = np.asarray(factor)
    out: F64 = lum + (y - lum) * (f[..., None] if f.ndim else f)
    return out


def hue_weight(y: F64, centre_deg: float, width_deg: float) -> F64:
    """Smooth (cos²) weight of each colour's hue around ``centre_deg``, faded out toward neutrals."""
    mx, mn = y.max(-1), y.min(-1)
    chroma = mx - mn
    r, g, b = y[..., 0], y[..., 1], y[..., 2]
    hue = np.degrees(np.arctan2(np.sqrt(3.0) * (g - b), 2.0 * r - g - b)) % 360.0
    d = np.abs((hue - centre_deg + 180.0) % 360.0 - 180.0)
    w = np.where(d < width_deg, np.cos(np.pi / 2.0 * d / width_deg) ** 2, 0.0)
    out: F64 = w * smoothstep(chroma, 0.0, 0.15)
    return out


def tint(y: F64, rgb: tuple[float, float, float], weight: F64) -> F64:
    """Add a luminance-neutral tint ``rgb`` (its luma removed) with a per-pixel ``weight``."""
    t = np.asarray(rgb) - float(np.asarray(rgb) @ LUMA)
    out: F64 = y + weight[..., None] * t
    return out


def film(y: F64) -> F64:
    y = s_curve(y, 0.6)
    y = 0.1 + 0.84 * y  # matte blacks, rolled-off whites
    return y * np.array([1.05, 1.0, 0.92]) + np.array([0.0, 0.0, 0.02])


def split(y: F64) -> F64:
    lum = luma(y)
    y = tint(y, (0.0, 0.08, 0.14), 1.0 - smoothstep(lum, 0.1, 0.5))  # teal shadows
    y = tint(y, (0.14, 0.06, 0.0), smoothstep(lum, 0.45, 0.9))  # amber highlights
    return s_curve(y, 0.3)


def olive(y: F64) -> F64:
    green = hue_weight(y, 120.0, 60.0)
    y = saturate(y, 1.0 - 0.6 * green)
    y = tint(y, (0.1, 0.05, -0.08), green * 0.7)  # toward olive
    skin = hue_weight(y, 30.0, 35.0)
    y = saturate(y, 1.0 + 0.25 * skin)
    y = tint(y, (0.06, 0.02, -0.04), skin)
    blue = hue_weight(y, 220.0, 40.0)
    y = y * (1.0 - 0.15 * blue[..., None])
    return s_curve(y, 0.3)


def airy(y: F64) -> F64:
    top = 2.0**0.6
    lin = srgb_to_linear(np.clip(y, 0.0, 1.0)) * top
    lin = lin * (1.0 + lin / top**2) / (1.0 + lin)  # a soft shoulder: white stays white
    y = 0.05 + 0.93 * s_curve(linear_to_srgb(lin), -0.3)  # lower contrast, lifted shadows
    y = saturate(y, 0.85)
    return y * np.array([1.0, 0.985, 1.02]) + np.array([0.01, 0.0, 0.0])


def moody(y: F64) -> F64:
    lin = srgb_to_linear(np.clip(y, 0.0, 1.0)) * 2.0**-0.4
    y = s_curve(linear_to_srgb(lin), 0.45)
    y = 0.04 + 0.94 * y
    green = hue_weight(y, 120.0, 70.0)
    y = saturate(y, 0.8 - 0.3 * green)
    lum = luma(y)
    return tint(y, (-0.02, 0.03, 0.06), 1.0 - smoothstep(lum, 0.05, 0.45))


LOOKS: dict[str, Callable[[F64], F64]] = {"film": film, "split": split, "olive": olive, "airy": airy, "moody": moody}


def render(look: Callable[[F64], F64], image: U8) -> U8:
    out = look(image.astype(np.float64) / 255.0)
    return np.asarray(np.clip(out * 255.0 + 0.5, 0, 255), dtype=np.uint8)


def load_photos(long_edge: int) -> list[tuple[str, U8]]:
    """The befores and other shared photos at ``long_edge`` (area filter down, bicubic up), sorted by path."""
    files = sorted(p for pattern in SOURCES for p in SHARED_DATA.glob(pattern) if p.is_file())
    photos = []
    for f in files:
        with Image.open(f) as im:
            arr = np.asarray(im.convert("RGB"))
        h, w = arr.shape[:2]
        scale = long_edge / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        resized = np.asarray(cv2.resize(arr, size, interpolation=interp), dtype=np.uint8)
        photos.append((str(f.relative_to(SHARED_DATA)), resized))
    return photos


def split_photos(photos: list[tuple[str, U8]], n_train: int, seed: int = 0) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(len(photos)).tolist()
    return sorted(order[:n_train]), sorted(order[n_train:])


def config_from_json(text: str) -> TrainConfig:
    overrides = json.loads(text)
    model = overrides.pop("model", {})
    return TrainConfig(model=lut3d.LUT3DConfig(**model), **overrides)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--looks", default=",".join(LOOKS), help="comma-separated looks to train")
    parser.add_argument("--train", type=int, default=20, help="training pairs (the other photos are held out)")
    parser.add_argument("--long-edge", type=int, default=800)
    parser.add_argument("--config", default="{}", help="JSON overrides of TrainConfig (experiments)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads outside training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cfg = config_from_json(args.config)
    photos = load_photos(args.long_edge)
    train_idx, test_idx = split_photos(photos, args.train)
    results: dict[str, Any] = {}
    for name in filter(None, args.looks.split(",")):
        look = LOOKS[name]
        afters = [render(look, img) for _, img in photos]
        pairs = [(photos[i][1], afters[i]) for i in train_idx]
        before_load = load()
        wall, cpu = time.perf_counter(), time.process_time()
        style = train(pairs, device="cpu", config=replace(cfg))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        scores, colours, identity = [], [], []
        for i in test_idx:
            before, after = photos[i][1], afters[i]
            out = style.apply(before, "cpu")
            scores.append(psnr(out, after))
            colours.append(delta_e2000(out, after))
            identity.append(psnr(before, after))
        meta = style.metadata
        results[name] = {
            "heldout_psnr_db": round(float(np.mean(scores)), 2),
            "heldout_min_psnr_db": round(float(np.min(scores)), 2),
            "heldout_delta_e2000": round(float(np.mean(colours)), 3),
            "identity_psnr_db": round(float(np.mean(identity)), 2),
            "per_photo_psnr_db": [round(float(s), 1) for s in scores],
            "train_wall_s": round(wall, 1),
            "train_cpu_s": round(cpu, 1),
            "load_1min_before_after": [before_load, load()],
            "steps": meta.get("steps"),
            "best_step": meta.get("best_step"),
            "adaptive": meta.get("adaptive"),
            "split_heldout_psnr_db": meta.get("heldout_psnr"),
        }
        print(name, {k: v for k, v in results[name].items() if k != "per_photo_psnr_db"}, file=sys.stderr, flush=True)
    report: dict[str, Any] = {
        "photos": len(photos),
        "train_photos": [photos[i][0] for i in train_idx],
        "heldout_photos": len(test_idx),
        "long_edge": args.long_edge,
        "config": json.loads(args.config),
        "looks": results,
        "target_db": 38.0,
        "all_looks_met": all(r["heldout_psnr_db"] >= 38.0 for r in results.values()),
    }
    emit("style_looks", report)


if __name__ == "__main__":
    main()
