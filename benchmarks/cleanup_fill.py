"""Phase 3 fills on real backgrounds: a known object pasted over a real photo, filled, compared with the photo.

    python -m benchmarks.cleanup_fill [--per-photo 2] [--crops DIR]

Objects: an EXIT sign cut from a corridor frame of ``../shared/data/exit_signs`` with the mask the
sign detector draws (sign, housing and glow), scaled to fit; and a wire bundle, 2–3 dark catenaries
3–7 px thick drawn anti-aliased. Each is pasted at a seeded random place inside a hand-chosen box
of a real photo (``../shared/data``, never copied into the repository) whose background is one of:
``ceiling`` (tiles and their grid, the corridor frames), ``brick`` (paving, a block wall),
``foliage`` (a hedge, lily leaves, trees, dry scrub) or ``sky`` (smooth sky bands).

Each composite is filled through :func:`worker.cleanup.inpaint.fill_regions` (the phase's crops,
feather and write-back) with OpenCV Telea and ``classical`` (the worker's fallback without LaMa,
:mod:`worker.cleanup.opencv_inpaint`: per crop the membrane, the lattice fill, or the mean of the
patch fill and the membrane; ``fills`` counts which); ``--all`` adds the patch fill alone and the
membrane alone, everywhere. Scores, per background and object:
PSNR and SSIM (7×7, per channel, averaged) over the edited pixels (the mask grown by the feather)
against the photo without the object, and the milliseconds per region (wall time, one thread, on
a CPU shared with other work). ``--crops DIR`` writes photo | pasted | each fill, side by side, as PNG.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

from benchmarks.common import SHARED_DATA, machine
from worker.cleanup.exit_signs import detect_exit_signs, sign_regions
from worker.cleanup.inpaint import CropParams, fill_regions
from worker.cleanup.opencv_inpaint import OpenCVInpainter
from worker.cleanup.patch_inpaint import hole_thickness, ring_texture
from worker.cleanup.region import Region, crop_to_mask
from worker.cleanup.working import WorkingImage
from worker.models.protocols import Inpainter

# (background, photo under ../shared/data, box where objects are centred: fractions x0, y0, x1, y1)
BACKGROUNDS: tuple[tuple[str, str, tuple[float, float, float, float]], ...] = (
    ("ceiling", "exit_signs/ucsc_exitsign_263593.224926166.jpg", (0.62, 0.36, 0.88, 0.56)),
    ("ceiling", "exit_signs/ucsc_exitsign_264908.762079083.jpg", (0.60, 0.22, 0.90, 0.52)),
    ("ceiling", "exit_signs/ucsc_exitsign_513614.430410083.jpg", (0.55, 0.06, 0.90, 0.12)),
    ("ceiling", "exit_signs/ucsc_exitsign_8761.22361075.jpg", (0.55, 0.66, 0.85, 0.84)),
    ("brick", "pairs/fivek_deeplpf/before/a4869-09-05-19-at-19h05m38s-_MG_9563.png", (0.15, 0.90, 0.85, 0.95)),
    ("brick", "pairs/fivek_deeplpf/before/a4869-09-05-19-at-19h05m38s-_MG_9563.png", (0.08, 0.10, 0.16, 0.40)),
    ("brick", "pairs/fivek_namedcurves/before/a4957.png", (0.08, 0.12, 0.18, 0.50)),
    ("foliage", "pairs/fivek_curl/before/a4857-_DSC0008-1.png", (0.08, 0.10, 0.25, 0.45)),
    ("foliage", "pairs/fivek_curl/before/a4232-Duggan_090323_6181.png", (0.10, 0.72, 0.90, 0.90)),
    ("foliage", "pairs/fivek_curl/before/a4232-Duggan_090323_6181.png", (0.10, 0.10, 0.90, 0.35)),
    ("foliage", "powerlines/ttpla_58_00376_1920.jpg", (0.78, 0.55, 0.92, 0.85)),
    ("sky", "pairs/fivek_curl/before/a3102-JI2E4053.png", (0.15, 0.08, 0.85, 0.22)),
    ("sky", "pairs/fivek_deeplpf/before/a4514-kme_0258.png", (0.15, 0.08, 0.85, 0.20)),
    ("sky", "pairs/fivek_deeplpf/before/a4933-Duggan_090428_8040.png", (0.15, 0.08, 0.85, 0.30)),
    ("sky", "pairs/fivek_curl/before/a3232-_DGW6397.png", (0.15, 0.06, 0.85, 0.20)),
)
SIGN_SOURCES = ("exit_signs/ucsc_exitsign_263593.224926166.jpg", "exit_signs/ucsc_exitsign_5630.313210708.jpg")
SIGN_SIDE = (0.10, 0.16)  # the pasted sign's long side, as a fraction of the photo's long side
WIRE_LENGTH = 0.45  # the bundle's length, as a fraction of the photo's long side


@dataclass(frozen=True)
class Sample:
    background: str
    obj: str
    photo: str
    truth: np.ndarray  # the photo
    pasted: np.ndarray  # the photo with the object
    region: Region  # the object's mask


def load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def cut_signs(shared: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(pixels, mask) of each sign the detector finds in ``SIGN_SOURCES``, cropped to its mask's box."""
    out = []
    for name in SIGN_SOURCES:
        image = load(shared / name)
        work = WorkingImage(image)
        for r in sign_regions(work, detect_exit_signs(work, "conservative"), "conservative"):
            x0, y0, x1, y1 = r.box
            out.append((image[y0:y1, x0:x1].copy(), r.mask.copy()))
    if not out:
        raise SystemExit("no EXIT sign found in the source frames")
    return out


def paste_sign(
    photo: np.ndarray, sign: tuple[np.ndarray, np.ndarray], centre: tuple[int, int], side: int
) -> tuple[np.ndarray, np.ndarray]:
    pixels, mask = sign
    s = side / max(mask.shape)
    size = (max(4, round(mask.shape[1] * s)), max(4, round(mask.shape[0] * s)))
    px = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    m = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5
    H, W = photo.shape[:2]
    x0 = int(np.clip(centre[0] - size[0] // 2, 0, W - size[0]))
    y0 = int(np.clip(centre[1] - size[1] // 2, 0, H - size[1]))
    out = photo.copy()
    full = np.zeros((H, W), bool)
    full[y0 : y0 + size[1], x0 : x0 + size[0]] = m
    out[full] = px[m]
    return out, full


def paste_wires(photo: np.ndarray, centre: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """2–3 parallel dark catenaries (3–7 px), anti-aliased at 4×: the photo with them, and their mask."""
    H, W = photo.shape[:2]
    ss = 4
    length = WIRE_LENGTH * max(H, W)
    n = int(rng.integers(2, 4))
    width = float(rng.uniform(3, 7))
    gap = width + float(rng.uniform(4, 10))
    tilt = float(rng.uniform(-0.15, 0.15))
    sag = float(rng.uniform(0.02, 0.06)) * length
    xs = np.linspace(centre[0] - length / 2, centre[0] + length / 2, 200)
    u = (xs - centre[0]) / (length / 2)
    cover = np.zeros((H * ss, W * ss), np.uint8)
    for k in range(n):
        ys = centre[1] + tilt * (xs - centre[0]) + sag * (u * u - 1) + (k - (n - 1) / 2) * gap
        pts = np.round(np.stack([xs, ys], 1) * ss).astype(np.int32)
        cv2.polylines(cover, [pts], False, 255, thickness=max(1, round(width * ss)), lineType=cv2.LINE_8)
    alpha = cv2.resize(cover.astype(np.float32) / 255.0, (W, H), interpolation=cv2.INTER_AREA)
    colour = np.array(rng.uniform(15, 45, 3), np.float32)
    out = photo.astype(np.float32) * (1 - alpha[..., None]) + colour * alpha[..., None]
    mask = cv2.dilate((alpha > 0.05).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return np.clip(np.round(out), 0, 255).astype(np.uint8), mask


def build(per_photo: int, shared: Path, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    signs = cut_signs(shared)
    samples = []
    for background, name, (fx0, fy0, fx1, fy1) in BACKGROUNDS:
        photo = load(shared / name)
        H, W = photo.shape[:2]
        for i in range(per_photo):
            centre = (int(rng.uniform(fx0, fx1) * W), int(rng.uniform(fy0, fy1) * H))
            side = round(rng.uniform(*SIGN_SIDE) * max(H, W))
            sign = signs[int(rng.integers(len(signs)))]
            for obj in ("sign", "wires"):
                if obj == "sign":
                    pasted, mask = paste_sign(photo, sign, centre, side)
                else:
                    pasted, mask = paste_wires(photo, centre, rng)
                region = crop_to_mask("exit_sign" if obj == "sign" else "power_line", mask, (0, 0), 1.0)
                assert region is not None
                samples.append(Sample(background, obj, f"{name}#{i}", photo, pasted, region))
    return samples


def edited(sample: Sample, feather: int) -> np.ndarray:
    full = np.zeros(sample.truth.shape[:2], np.uint8)
    sample.region.paste(full.view(bool))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * feather + 1, 2 * feather + 1))
    return cv2.dilate(full, k).astype(bool)


def scores(out: np.ndarray, truth: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    """(squared error summed over ``where``, SSIM averaged over ``where``), on the box around it."""
    ys, xs = np.nonzero(where)
    y0, y1 = max(0, ys.min() - 8), min(where.shape[0], ys.max() + 9)
    x0, x1 = max(0, xs.min() - 8), min(where.shape[1], xs.max() + 9)
    a, b, w = out[y0:y1, x0:x1], truth[y0:y1, x0:x1], where[y0:y1, x0:x1]
    d = a[w].astype(np.float64) - b[w].astype(np.float64)
    _, full = structural_similarity(a, b, channel_axis=2, win_size=7, data_range=255, full=True)
    return float((d * d).sum()), float(full.mean(axis=2)[w].mean())


def psnr_of(sq: float, n: int) -> float:
    mse = sq / max(1, n)
    return round(99.0 if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse)), 2)


def save_crop(path: Path, sample: Sample, outs: list[np.ndarray]) -> None:
    x0, y0, x1, y1 = sample.region.box
    H, W = sample.truth.shape[:2]
    pad = max(16, (max(x1 - x0, y1 - y0)) // 3)
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(W, x1 + pad), min(H, y1 + pad)
    tiles = [img[y0:y1, x0:x1] for img in [sample.truth, sample.pasted, *outs]]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(tiles, 1)).save(path)


def evaluate(samples: list[Sample], inpainters: list[Inpainter], crops: Path | None) -> dict[str, Any]:
    feather = CropParams().feather_px
    acc: dict[tuple[str, str, str], dict[str, Any]] = {}
    rows = []
    for k, s in enumerate(samples):
        where = edited(s, feather)
        outs = []
        row: dict[str, Any] = {
            "background": s.background,
            "object": s.obj,
            "photo": s.photo,
            "area_px": s.region.area_px,
            "thickness_px": round(hole_thickness(s.region.mask), 1),
            "ring_texture": round(ring_texture(s.pasted, _full_mask(s)), 1),
        }
        for p in inpainters:
            t0 = time.perf_counter()
            out, stats = fill_regions(s.pasted, [s.region], p)
            ms = (time.perf_counter() - t0) * 1e3
            outs.append(out)
            sq, ssim = scores(out, s.truth, where)
            a = acc.setdefault((s.background, s.obj, p.name), {"sq": 0.0, "n": 0, "ssim": [], "ms": [], "fills": {}})
            a["sq"] += sq
            a["n"] += int(where.sum()) * 3
            a["ssim"].append(ssim)
            a["ms"].append(ms)
            fill = stats.per_region[0].get("filled_with")
            if fill:
                a["fills"][fill] = a["fills"].get(fill, 0) + 1
            row[p.name] = {"psnr_db": psnr_of(sq, int(where.sum()) * 3), "ssim": round(ssim, 4), "ms": round(ms, 1)}
            if fill:
                row[p.name]["fill"] = fill
        rows.append(row)
        if crops is not None:
            save_crop(crops / f"{k:02d}_{s.background}_{s.obj}.png", s, outs)
    table: dict[str, Any] = {}
    for (bg, obj, name), a in sorted(acc.items()):
        table.setdefault(f"{bg}/{obj}", {})[name] = {
            "n": len(a["ms"]),
            "psnr_db": psnr_of(a["sq"], a["n"]),
            "ssim": round(float(np.mean(a["ssim"])), 4),
            "ms_per_region_median": round(float(np.median(a["ms"])), 1),
            "ms_per_region_max": round(float(np.max(a["ms"])), 1),
            **({"fills": a["fills"]} if a["fills"] else {}),
        }
    return {"by_background": table, "samples": rows}


def _full_mask(s: Sample) -> np.ndarray:
    full = np.zeros(s.truth.shape[:2], bool)
    s.region.paste(full)
    return full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-photo", type=int, default=2, help="placements per background box (each: a sign, wires)")
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--crops", type=Path, help="write original | pasted | each fill as PNG here")
    parser.add_argument("--only", help="only this background (ceiling, brick, foliage, sky)")
    parser.add_argument("--all", action="store_true", help="also the patch fill alone, the membrane alone (slower)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    samples = build(args.per_photo, args.shared)
    if args.only:
        samples = [s for s in samples if s.background == args.only]
    inpainters: list[Inpainter] = [OpenCVInpainter("telea"), OpenCVInpainter("auto")]
    if args.all:
        inpainters += [OpenCVInpainter("patch"), OpenCVInpainter("smooth")]
    result = {
        "benchmark": "cleanup_fill",
        "machine": {**machine(), "opencv_threads": 1},
        "samples_n": len(samples),
        **evaluate(samples, inpainters, args.crops),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
