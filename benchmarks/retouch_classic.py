"""Classical retouch: cost per face on the CPU, and before/after crop sheets for a person to judge.

    python -m benchmarks.retouch_classic [--threads 2] [--wheel-sheet PATH] [--shared-sheet PATH]

Faces: the wheel portraits (astronaut, grace_hopper), the faces in ``../shared/data/faces``
when present, and two 24-MP photos made by enlarging the wheel portraits (a 1,000-px and a
3,000-px face: the paste-back's worst case). Per face the time covers everything the
phase does for it: alignment and 512² crop, skin mask and smoothing, and the paste-back
into the full-resolution photo (detection is phase 0 and not counted).

Sheets: each face at the photo's own resolution (enlarged for viewing), before and after
"light" / "medium" / "heavy", and the heavy change amplified ×8. The wheel sheet may be
committed (``docs/images/``); the shared-data sheet holds research photos and goes to a
git-ignored folder (default ``out/retouch_classic/``) — never into the repository.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from benchmarks.faces_detect import SHARED, wheel_photo
from worker.faces import align as face_align
from worker.faces import detect as detectors
from worker.faces import paste as face_paste
from worker.faces import skin
from worker.frame import Face
from worker.models import mtcnn
from worker.profile import EditSettings

STRENGTHS = {name: EditSettings(retouch_intensity=name).smoothing_strength for name in ("light", "medium", "heavy")}
OUT = Path("out/retouch_classic")


def retouch_face(image: np.ndarray, face: Face, strength: float) -> dict[str, float]:
    """One face through the phase's steps, in place; returns the time of each step (ms)."""
    t0 = time.perf_counter()
    alignment = face_align.align_face(face)
    crop = face_align.warp_face(image, alignment)
    t1 = time.perf_counter()
    smoothed = skin.smooth_face(crop, strength)
    t2 = time.perf_counter()
    face_paste.paste(image, face_paste.correction(crop, smoothed, face_paste.ellipse_mask()), alignment)
    t3 = time.perf_counter()
    return {
        "align_crop": (t1 - t0) * 1e3,
        "smooth": (t2 - t1) * 1e3,
        "paste": (t3 - t2) * 1e3,
        "total": (t3 - t0) * 1e3,
    }


def scaled(face: Face, k: float, dx: float = 0, dy: float = 0) -> Face:
    x0, y0, x1, y1 = face.box
    return Face(
        (x0 * k + dx, y0 * k + dy, x1 * k + dx, y1 * k + dy),
        tuple((x * k + dx, y * k + dy) for x, y in face.landmarks),
        face.score,
    )


def big_photo(image: np.ndarray, face: Face, footprint_target: float) -> tuple[np.ndarray, Face]:
    """A 6000×4000 photo with ``image`` enlarged so its face's crop covers ~footprint_target px."""
    k = footprint_target / face_align.align_face(face).footprint
    big = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    canvas = np.full((4000, 6000, 3), 128, np.uint8)
    h, w = min(4000, big.shape[0]), min(6000, big.shape[1])
    oy, ox = (4000 - h) // 2, (6000 - w) // 2
    canvas[oy : oy + h, ox : ox + w] = big[:h, :w]
    return canvas, scaled(face, k, ox, oy)


def tile(image: np.ndarray, face: Face, height: int = 300) -> np.ndarray:
    x0, y0, x1, y1 = face.box
    cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, 0.75 * max(x1 - x0, y1 - y0)
    a, b = max(0, int(cy - s)), min(image.shape[0], int(cy + s))
    c, d = max(0, int(cx - s)), min(image.shape[1], int(cx + s))
    region = image[a:b, c:d]
    k = height / region.shape[0]
    inter = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    return cv2.resize(region, (max(1, round(region.shape[1] * k)), height), interpolation=inter)


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def sheet_row(image: np.ndarray, face: Face) -> np.ndarray:
    tiles = [label(tile(image, face), "before")]
    heavy = None
    for name, strength in STRENGTHS.items():
        edited = image.copy()
        retouch_face(edited, face, strength)
        tiles.append(label(tile(edited, face), name))
        heavy = edited
    assert heavy is not None
    diff = np.clip(np.abs(heavy.astype(np.int16) - image.astype(np.int16)) * 8, 0, 255).astype(np.uint8)
    tiles.append(label(tile(diff, face), "heavy change x8"))
    return np.concatenate(tiles, axis=1)


def save_sheet(rows: list[np.ndarray], path: Path) -> None:
    if not rows:
        return
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(padded, axis=0)).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--wheel-sheet", type=Path, default=OUT / "classic_wheel.png")
    parser.add_argument("--shared-sheet", type=Path, default=OUT / "classic_shared.png")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)

    detector = detectors.MTCNNDetector(mtcnn.mtcnn())
    photos: dict[str, np.ndarray] = {f"wheel:{n}": wheel_photo(n) for n in ("astronaut", "grace_hopper")}
    if SHARED.is_dir():
        photos.update({p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted(SHARED.iterdir())})
    found = {name: detector.detect([img])[0] for name, img in photos.items()}

    strength = EditSettings().smoothing_strength
    per_face = []
    for name, image in photos.items():
        for face in found[name]:
            for _ in range(args.repeat):
                t = retouch_face(image.copy(), face, strength)
            per_face.append({"photo": name, "crop_px": round(face_align.align_face(face).footprint), **t})
    big = []
    for name, target in (("astronaut", 1000.0), ("grace_hopper", 3000.0)):
        image, face = big_photo(photos[f"wheel:{name}"], found[f"wheel:{name}"][0], target)
        for _ in range(args.repeat):
            t = retouch_face(image, face, strength)
        big.append({"photo": f"24MP {name}", "crop_px": round(face_align.align_face(face).footprint), **t})

    save_sheet(
        [sheet_row(photos[n], f) for n in photos if n.startswith("wheel:") for f in found[n]],
        args.wheel_sheet,
    )
    shared_rows = [sheet_row(photos[n], f) for n in photos if not n.startswith("wheel:") for f in found[n]]
    save_sheet(shared_rows, args.shared_sheet)

    def summary(rows: list[dict]) -> dict[str, float]:
        return {
            k: round(float(np.mean([r[k] for r in rows])), 1) for k in ("align_crop", "smooth", "paste", "total")
        } | {"max_total": round(float(max(r["total"] for r in rows)), 1)}

    print(
        json.dumps(
            {
                "benchmark": "retouch_classic",
                "machine": f"CPU, {args.threads} threads (torch/OpenCV)",
                "strength": strength,
                "faces": len(per_face),
                "ms_per_face": summary(per_face),
                "ms_per_face_24mp": summary(big),
                "faces_detail": [
                    {k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()} for r in per_face + big
                ],
                "sheets": {
                    "wheel": str(args.wheel_sheet),
                    "shared": str(args.shared_sheet) if shared_rows else None,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
