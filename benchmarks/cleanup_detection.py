"""Phase 3 detection quality: synthetic wires on real sky photos, and real photos with and without.

    python -m benchmarks.cleanup_detection [--level conservative|moderate|aggressive|all] [--seeds 4]
                                           [--synthetic-only]

Prints one JSON object:

* ``synthetic``: on the evaluation set of :mod:`benchmarks.cleanup_data` (every sky photo with
  ``--seeds`` random wire drawings, and each photo clean): wire **recall** (fraction of wire
  pixels the masks cover) and **precision** (fraction of masked pixels that are wire), pooled
  over all pixels, also per photo; recall restricted to wire pixels over *open sky* (the clean
  photo is smooth there: grey-level std < 4 in a 9×9 window — defined without the detector) and
  over the rest (*non-sky*: trees, towers, roofs, rock in front of which the wire passes); what
  the continuation of accepted wires beyond the sky adds (the mask minus the mask of the same
  level without it) and the precision of those pixels, over all and over non-sky; the fraction
  of edited pixels (mask + feather ring) that are wire; and the **false-positive photos** among
  the clean ones.
* ``real``: ``../shared/data/powerlines`` (wires found per photo), ``../shared/data/exit_signs``
  (signs found per frame, as stored — sideways — and turned upright), and detection counts on
  photos that have neither: the face photos, every FiveK pair (before and Expert-C after and the
  expert thumbnails), and the corridor frames turned upright (ceilings and walls are the indoor
  look-alikes of an overcast sky).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from benchmarks.cleanup_data import SHARED_DATA, WIRE_COVERAGE, Sample, build
from worker.cleanup.exit_signs import detect_exit_signs, sign_regions
from worker.cleanup.inpaint import CropParams, edit_mask
from worker.cleanup.region import Region
from worker.cleanup.sky import find_sky
from worker.cleanup.wires import LEVELS as WIRE_LEVELS
from worker.cleanup.wires import WireParams, detect_wires, wire_regions
from worker.cleanup.working import WorkingImage

LEVELS = ("conservative", "moderate", "aggressive")


def wire_mask(
    image: np.ndarray, level: str, params: WireParams | None = None
) -> tuple[np.ndarray, np.ndarray, list[Region]]:
    """(detector mask, edited mask incl. feather ring, regions) for ``image``."""
    work = WorkingImage(image)
    regions = wire_regions(work, detect_wires(work, level, find_sky(work), params=params))
    h, w = image.shape[:2]
    mask = np.zeros((h, w), bool)
    edited = np.zeros((h, w), bool)
    f = CropParams().feather_px
    for r in regions:
        r.paste(mask)
        grown, _ = edit_mask(r.mask, f)
        x0, y0, x1, y1 = r.box
        gx0, gy0, gx1, gy1 = x0 - f, y0 - f, x1 + f, y1 + f
        cx0, cy0, cx1, cy1 = max(0, gx0), max(0, gy0), min(w, gx1), min(h, gy1)
        edited[cy0:cy1, cx0:cx1] |= grown[cy0 - gy0 : cy1 - gy0, cx0 - gx0 : cx1 - gx0]
    return mask, edited, regions


def open_sky(clean: np.ndarray) -> np.ndarray:
    """Pixels where the clean photo is smooth (std of grey < 4 in 9×9): where a wire crosses open sky."""
    g = cv2.cvtColor(clean, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mu = cv2.blur(g, (9, 9))
    sd = np.sqrt(np.maximum(cv2.blur(g * g, (9, 9)) - mu * mu, 0.0))
    return np.asarray(sd < 4.0)


def synthetic(samples: list[Sample], level: str) -> dict[str, Any]:
    tp = fp = fn = 0
    sky_tp = sky_n = 0
    rough_tp = rough_n = 0
    # What the continuation beyond the sky adds: the mask minus the mask without it.
    without = replace(WIRE_LEVELS[level], continuation=None)
    added_tp = added_n = added_rough_tp = added_rough_n = 0
    edited_wire = edited_all = 0
    per_photo: dict[str, list[int]] = {}
    fp_photos: list[str] = []
    clean_seen: set[str] = set()
    wires_found = wires_drawn = 0
    t0 = time.perf_counter()
    for s in samples:
        photo = s.name.split("#")[0]
        truth = s.coverage >= WIRE_COVERAGE
        mask, edited, regions = wire_mask(s.wired, level)
        tp_i, fp_i, fn_i = int((mask & truth).sum()), int((mask & ~truth).sum()), int((truth & ~mask).sum())
        tp, fp, fn = tp + tp_i, fp + fp_i, fn + fn_i
        sky = open_sky(s.clean)
        smooth = truth & sky
        sky_tp += int((mask & smooth).sum())
        sky_n += int(smooth.sum())
        rough_tp += int((mask & truth & ~sky).sum())
        rough_n += int((truth & ~sky).sum())
        added = mask & ~wire_mask(s.wired, level, without)[0]
        added_tp += int((added & truth).sum())
        added_n += int(added.sum())
        added_rough_tp += int((added & truth & ~sky).sum())
        added_rough_n += int((added & ~sky).sum())
        edited_wire += int((edited & (s.coverage > 0)).sum())
        edited_all += int(edited.sum())
        acc = per_photo.setdefault(photo, [0, 0, 0])
        acc[0] += tp_i
        acc[1] += int(truth.sum())
        acc[2] += int(mask.sum())
        wires_drawn += s.n_wires
        wires_found += len(regions)
        if photo not in clean_seen:
            clean_seen.add(photo)
            _, _, clean_regions = wire_mask(s.clean, level)
            if clean_regions:
                fp_photos.append(photo)
    return {
        "wired_images": len(samples),
        "wires_drawn": wires_drawn,
        "regions_found": wires_found,
        "recall": round(tp / max(1, tp + fn), 4),
        "precision": round(tp / max(1, tp + fp), 4),
        "recall_over_open_sky": round(sky_tp / max(1, sky_n), 4),
        "recall_over_non_sky": round(rough_tp / max(1, rough_n), 4),
        "open_sky_share_of_wire_pixels": round(sky_n / max(1, tp + fn), 4),
        "continuation": {
            "added_px": added_n,
            "precision": round(added_tp / max(1, added_n), 4),
            "added_px_over_non_sky": added_rough_n,
            "precision_over_non_sky": round(added_rough_tp / max(1, added_rough_n), 4),
        },
        "edited_pixels_touched_by_a_wire": round(edited_wire / max(1, edited_all), 4),
        "clean_photos": len(clean_seen),
        "false_positive_photos": len(fp_photos),
        "false_positive_rate": round(len(fp_photos) / max(1, len(clean_seen)), 4),
        "false_positive_names": fp_photos,
        "per_photo": {
            name: {
                "recall": round(a / max(1, b), 3),
                "precision": round(a / max(1, c), 3),
                "share": round(b / max(1, tp + fn), 3),
            }
            for name, (a, b, c) in per_photo.items()
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _signs(image: np.ndarray, level: str) -> list[Region]:
    work = WorkingImage(image)
    return sign_regions(work, detect_exit_signs(work, level), level)


def _wires(image: np.ndarray, level: str) -> list[Region]:
    return wire_mask(image, level)[2]


def real(shared: Path, level: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pl = sorted((shared / "powerlines").glob("*.jpg"))
    out["powerlines"] = {
        p.name: [
            {"box": r.box, "length_px": r.details.get("length_px"), "score": round(r.score, 2)}
            for r in _wires(_read(p), level)
        ]
        for p in pl
    }
    frames = sorted((shared / "exit_signs").glob("*.jpg"))
    stored, upright = {}, {}
    for f in frames:
        img = _read(f)
        stored[f.name] = len(_signs(img, level))
        upright[f.name] = len(_signs(np.ascontiguousarray(np.rot90(img, -1)), level))
    out["exit_signs"] = {
        "frames": len(frames),
        "signs_found_as_stored": stored,
        "frames_with_a_sign_as_stored": sum(1 for v in stored.values() if v),
        "signs_found_upright": upright,
        "frames_with_a_sign_upright": sum(1 for v in upright.values() if v),
    }
    negatives = sorted((shared / "faces").glob("*")) + sorted((shared / "pairs").glob("*/*/*"))
    wire_hits: dict[str, int] = {}
    sign_hits: dict[str, int] = {}
    for p in negatives:
        img = _read(p)
        key = str(p.relative_to(shared))
        if n := len(_wires(img, level)):
            wire_hits[key] = n
        if n := len(_signs(img, level)):
            sign_hits[key] = n
    for f in frames:  # corridors turned upright: ceilings and walls under a "sky" position
        if n := len(_wires(np.ascontiguousarray(np.rot90(_read(f), -1)), level)):
            wire_hits[f"exit_signs/{f.name} (upright)"] = n
    out["photos_without_wires_or_signs"] = {
        "photos": len(negatives),
        "plus_corridor_frames_upright_for_wires": len(frames),
        "photos_with_wire_detections": len(wire_hits),
        "wire_detections": wire_hits,
        "photos_with_sign_detections": len(sign_hits),
        "sign_detections": sign_hits,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--level", default="conservative", choices=(*LEVELS, "all"))
    parser.add_argument("--seeds", type=int, default=4, help="wire drawings per sky photo")
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--synthetic-only", action="store_true", help="skip the real photos")
    args = parser.parse_args()
    samples = build(args.seeds, shared=args.shared)
    levels = LEVELS if args.level == "all" else (args.level,)
    result: dict[str, Any] = {"machine": "2-core CPU, no GPU", "wire_coverage_threshold": WIRE_COVERAGE}
    for level in levels:
        result[level] = {"synthetic": synthetic(samples, level)}
        if args.shared.is_dir() and not args.synthetic_only:
            result[level]["real"] = real(args.shared, level)
    print(json.dumps(result, indent=1, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


if __name__ == "__main__":
    main()
