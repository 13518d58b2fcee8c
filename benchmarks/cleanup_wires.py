"""Phase 3 end to end on wires: how much of a wire is still visible after the phase, and what else changed.

    python -m benchmarks.cleanup_wires [--seeds 2] [--save DIR]

The set: every sky photo of :mod:`benchmarks.cleanup_data` that is in ``../shared/data`` (FiveK
"before" renders and Expert-C thumbnails with open sky), each with ``--seeds`` random drawings of
2–4 wires of known masks:

* catenaries that cross the whole frame (from beyond the left edge to beyond the right), sagging by
  up to 8 % of the width, 2–6 px thick, anti-aliased (4× supersampling);
* dark (black to grey, always darker than the sky they cross) or, for one wire in four where the
  sky leaves room, *light* (a sunlit conductor, brighter than the sky);
* one wire in three hangs lower, so that its middle crosses the trees, roofs or rock below the
  sky line (its ends stay in the sky);
* one wire in three has one or two short gaps (6–16 px, where something thin hides it).

Wired and clean versions are both JPEG q92. Phase 3 then runs as the pipeline runs it
(:func:`worker.phases.cleanup.run`, ``conservative``, the classical fill: no LaMa) and the result
is compared with the clean photo:

* ``residual``: of the wire pixels that were visible (coverage ≥ 10 % and luma more than 12 grey
  levels from the clean photo), the fraction still visible after the phase (**goal ≤ 10 %**), also
  over open sky, over the rest, for dark and for light wires, per photo;
* ``far_changed_px``: pixels the phase changed (any channel, any amount) farther than 12 px from any
  wire's course (gaps included: painting across a gap is right) — **goal 0**;
* ``clean``: the same photos without wires and every other photo of ``../shared/data`` that has no
  power line in front of the sky (FiveK befores, thumbnails, the two aerial TTPLA photos whose wires
  lie over a road): the photos where the phase found any region at all — **goal 0**.

Prints one JSON object (:func:`benchmarks.common.emit`). ``--save DIR`` writes each wired photo,
the result and its clean version as PNGs there, to be looked at.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from benchmarks.cleanup_data import (
    SHARED_DATA,
    SKY_PHOTOS,
    WIRE_COVERAGE,
    catenary,
    jpeg_roundtrip,
    load_photo,
    wire_coverage,
)
from benchmarks.cleanup_detection import open_sky
from benchmarks.common import emit
from worker.frame import Frame, SourceInfo
from worker.phases import PhaseContext, cleanup
from worker.profile import EditSettings

VISIBLE = 12.0  # grey levels of luma: a difference a viewer sees on a smooth sky
FAR_PX = 12.0  # a pixel changed farther than this from every wire's course is a change that was not asked for


def luma(image: np.ndarray) -> np.ndarray:
    return np.asarray(image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def _pieces(points: np.ndarray, gaps: list[tuple[float, float]]) -> list[np.ndarray]:
    """``points`` cut at the arc-length intervals ``gaps`` (px along the polyline)."""
    seg = np.hypot(*np.diff(points, axis=0).T)
    s = np.r_[0.0, np.cumsum(seg)]
    dense_s = np.arange(0.0, s[-1], 1.0)
    dense = np.stack([np.interp(dense_s, s, points[:, 0]), np.interp(dense_s, s, points[:, 1])], axis=1)
    keep = np.ones(len(dense), bool)
    for a, b in gaps:
        keep &= ~((dense_s >= a) & (dense_s < b))
    edges = np.flatnonzero(np.diff(np.r_[0, keep.astype(np.int8), 0]))
    return [dense[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= 2]


def draw(
    image: np.ndarray, band: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """2–4 wires across ``image``: (wired, coverage, coverage of the light wires, per-wire facts)."""
    h, w = image.shape[:2]
    out = image.astype(np.float32)
    total = np.zeros((h, w), np.float32)
    light_cov = np.zeros((h, w), np.float32)
    course = np.zeros((h, w), np.float32)
    facts: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(2, 5))):
        low = rng.random() < 1 / 3  # its middle crosses what lies below the sky line
        y_top, y_bot = band[0] * h, band[1] * h
        lo_range = (y_bot, min(h - 1.0, y_bot + 0.12 * h)) if low else (y_top + 0.1 * (y_bot - y_top), y_bot)
        for _try in range(50):
            sag = rng.uniform(0.01, 0.08) * w
            a = w * w / (8.0 * sag)
            x_c = rng.uniform(0.2, 0.8) * w
            y_low = rng.uniform(*lo_range)
            pts = catenary(w, y_low, x_c, a, n=400)
            inside = pts[(pts[:, 0] >= 0) & (pts[:, 0] < w), 1]
            if inside.min() >= y_top - 2:
                break
        thickness = float(rng.uniform(2.0, 6.0))
        gaps: list[tuple[float, float]] = []
        if rng.random() < 1 / 3:
            length = float(np.hypot(*np.diff(pts, axis=0).T).sum())
            for _g in range(int(rng.integers(1, 3))):
                start = rng.uniform(0.2, 0.8) * length
                gaps.append((start, start + rng.uniform(6.0, 16.0)))
        cov = np.zeros((h, w), np.float32)
        for piece in _pieces(pts, gaps):
            cov = np.maximum(cov, wire_coverage((h, w), piece, thickness))
        course = np.maximum(course, wire_coverage((h, w), pts, thickness))
        under = image[cov > 0.5].astype(np.float32)
        sky_level = float(np.median(under.mean(axis=1))) if under.size else 128.0
        light = sky_level < 170.0 and rng.random() < 0.25
        if light:
            grey = float(min(255.0, sky_level + rng.uniform(45.0, 80.0)))
        else:
            grey = float(rng.uniform(0.0, max(1.0, min(90.0, 0.55 * sky_level))))
        colour = np.clip(grey + rng.uniform(-4, 4, size=3), 0, 255).astype(np.float32)
        out = out * (1.0 - cov[..., None]) + colour[None, None, :] * cov[..., None]
        total = np.maximum(total, cov)
        if light:
            light_cov = np.maximum(light_cov, cov)
        facts.append({"width": round(thickness, 2), "light": light, "low": low, "gaps": len(gaps)})
    wired = np.clip(np.round(out), 0, 255).astype(np.uint8)
    # The course (gaps included) is what "near a wire" means; the coverage is what must go.
    total_course = np.maximum(total, course)
    return wired, np.stack([total, total_course]), light_cov, facts


def phase3(image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Phase 3 as the pipeline runs it (conservative, no LaMa): (result, report)."""
    h, w = image.shape[:2]
    frame = Frame("bench", "bench.jpg", image.copy(), SourceInfo("JPEG", w, h))
    cleanup.run([frame], PhaseContext(edit=EditSettings.resolve({})))
    return frame.image, frame.report["cleanup"]


class _Count:
    def __init__(self) -> None:
        self.visible = 0
        self.left = 0

    def add(self, visible: np.ndarray, left: np.ndarray) -> None:
        self.visible += int(visible.sum())
        self.left += int((visible & left).sum())

    def share(self) -> float | None:
        return round(self.left / self.visible, 4) if self.visible else None


def clean_photos(shared: Path) -> list[tuple[str, np.ndarray]]:
    """Photos with no power line in front of a sky: every FiveK render and the two aerial TTPLA photos."""
    paths = sorted((shared / "pairs").glob("*/before/*")) + sorted(
        (shared / "pairs" / "fivek_multi_expert_thumbs_no_input" / "expertC").glob("*")
    )
    paths += [shared / "powerlines" / n for n in ("ttpla_04_585_1920.jpg", "ttpla_58_00376_1920.jpg")]
    out = []
    for p in paths:
        if p.is_file():
            with Image.open(p) as im:
                out.append((str(p.relative_to(shared)), np.asarray(im.convert("RGB"))))
    return out


def evaluate(seeds: int, shared: Path, save: Path | None) -> dict[str, Any]:
    rng = np.random.default_rng(18)
    counts = {
        k: _Count() for k in ("all", "open_sky", "non_sky", "dark", "light", "dark_over_open_sky", "dark_over_non_sky")
    }
    per_photo: dict[str, dict[str, Any]] = {}
    far_px = 0
    far_photos: list[str] = []
    wires = 0
    regions = 0
    t0 = time.perf_counter()
    for source, path, band in SKY_PHOTOS:
        if source != "shared" or not (shared / path).is_file():
            continue
        name, photo = Path(path).stem, load_photo(source, path, shared)
        clean = jpeg_roundtrip(photo)
        c_photo = _Count()
        for k in range(seeds):
            wired, covs, light_cov, facts = draw(photo, band, rng)
            wired = jpeg_roundtrip(wired)
            cov, course = covs
            out, report = phase3(wired)
            regions += len(report["regions"])
            wires += len(facts)
            lc = luma(clean)
            visible = (cov >= WIRE_COVERAGE) & (np.abs(luma(wired) - lc) > VISIBLE)
            left = np.abs(luma(out) - lc) > VISIBLE
            sky = open_sky(clean)
            light = light_cov >= WIRE_COVERAGE
            counts["all"].add(visible, left)
            counts["open_sky"].add(visible & sky, left)
            counts["non_sky"].add(visible & ~sky, left)
            counts["dark"].add(visible & ~light, left)
            counts["light"].add(visible & light, left)
            counts["dark_over_open_sky"].add(visible & ~light & sky, left)
            counts["dark_over_non_sky"].add(visible & ~light & ~sky, left)
            c_photo.add(visible, left)
            near = cv2.dilate((course > 0).astype(np.uint8), _disc(FAR_PX)).astype(bool)
            changed = (out != wired).any(axis=2)
            far = int((changed & ~near).sum())
            far_px += far
            if far:
                far_photos.append(f"{name}#{k}")
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                row = np.concatenate([wired, out, clean], axis=1)
                Image.fromarray(row).save(save / f"{name}_{k}.png")
            per_photo.setdefault(name, {"wires": []})["wires"] += facts
        per_photo[name]["residual"] = {"share": c_photo.share(), "visible_px": c_photo.visible}
    fp: dict[str, int] = {}
    clean_set = clean_photos(shared)
    for name, image in clean_set:
        _, report = phase3(image)
        if report["regions"]:
            fp[name] = len(report["regions"])
    return {
        "level": "conservative",
        "inpainter": "classical (no LaMa)",
        "wired_images": len(per_photo) * seeds,
        "wires_drawn": wires,
        "regions_found": regions,
        "residual": {k: v.share() for k, v in counts.items()},
        "visible_wire_px": {k: v.visible for k, v in counts.items()},
        "far_changed_px": far_px,
        "far_changed_images": far_photos,
        "clean_photos": len(clean_set),
        "clean_photos_with_a_region": len(fp),
        "clean_regions": fp,
        "per_photo_residual": {k: v["residual"] for k, v in per_photo.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _disc(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2, help="wire drawings per sky photo")
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--save", type=Path, help="write wired | result | clean PNGs here")
    args = parser.parse_args()
    emit("cleanup_wires", evaluate(args.seeds, args.shared, args.save))


if __name__ == "__main__":
    main()
