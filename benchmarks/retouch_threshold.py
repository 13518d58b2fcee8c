"""How small can a face be and still gain from retouching? Prints JSON.

    python -m benchmarks.retouch_threshold

A retouch is computed on the 512² aligned crop and pasted back at the face's own size
in the photo: the crop's footprint ``F`` (the side, in photo pixels, of the square the
crop covers; eye distance ≈ 0.25·F). What survives pasting is the correction
area-averaged from 512² to F². Below some F it rounds away in 8-bit output, and the
work (a CodeFormer pass costs the same for a 30-px face as for a 3,000-px one) buys
nothing visible.

Measured here, without model weights, on sharp real faces (crops with footprints of
350 px and more, so the 512² crop holds real detail):

* ``classic``: the actual classical smoothing at the default ("light") strength;
* ``restorer_detail``: the detail band a face restorer re-synthesises on a soft face —
  ``crop − GaussianBlur(crop, σ=2 px at 512²)``, i.e. the texture of eyelashes, brows,
  lips and skin that a 4× softer capture would lack. This stands in for CodeFormer's
  correction, which cannot be run without its weights.

For each F: the 95th percentile of the pasted correction's magnitude (8-bit levels,
largest channel) inside the face oval, median over the faces — "the strongest
changes the retouch makes, at the face's size". The threshold is the smallest F where
that reaches 2 levels: below it, 95 % of the face moves by at most one level after
rounding, which nobody can see in skin.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
from PIL import Image

from benchmarks.faces_detect import SHARED, wheel_photo
from worker.faces import align as face_align
from worker.faces import detect as detectors
from worker.faces import paste as face_paste
from worker.faces import skin
from worker.models import mtcnn
from worker.profile import EditSettings

FOOTPRINTS = (16, 24, 32, 40, 48, 64, 96, 128, 192, 256, 384)
VISIBLE_LEVELS = 2.0
STRENGTH = EditSettings().smoothing_strength  # the default profile's ("light")


def sharp_crops() -> list[tuple[str, np.ndarray]]:
    detector = detectors.MTCNNDetector(mtcnn.mtcnn())
    sources = {"wheel:grace_hopper": wheel_photo("grace_hopper")}
    if SHARED.is_dir():
        for p in sorted(SHARED.iterdir()):
            sources[p.name] = np.asarray(Image.open(p).convert("RGB"))
    out = []
    for name, image in sources.items():
        for i, face in enumerate(detector.detect([image])[0]):
            alignment = face_align.align_face(face)
            if alignment.footprint >= 350:
                out.append((f"{name}#{i}", face_align.warp_face(image, alignment)))
    return out


def pasted_change(delta: np.ndarray, footprint: int) -> float:
    """95th percentile of the pasted |change| (levels, largest channel) inside the face oval."""
    small = cv2.resize(delta, (footprint, footprint), interpolation=cv2.INTER_AREA)
    oval = cv2.resize(face_paste.ellipse_mask(), (footprint, footprint), interpolation=cv2.INTER_AREA) > 0.5
    return float(np.percentile(np.abs(small).max(axis=2)[oval], 95))


def main() -> None:
    crops = sharp_crops()
    table: dict[str, dict[int, float]] = {"classic": {}, "restorer_detail": {}}
    for f in FOOTPRINTS:
        classic, detail = [], []
        for _, crop in crops:
            c = crop.astype(np.float32)
            classic.append(pasted_change(skin.smooth_face(crop, STRENGTH).astype(np.float32) - c, f))
            detail.append(pasted_change(c - cv2.GaussianBlur(c, (0, 0), 2.0), f))
        table["classic"][f] = round(float(np.median(classic)), 2)
        table["restorer_detail"][f] = round(float(np.median(detail)), 2)
    thresholds = {kind: next((f for f in FOOTPRINTS if p95[f] >= VISIBLE_LEVELS), None) for kind, p95 in table.items()}
    print(
        json.dumps(
            {
                "benchmark": "retouch_threshold",
                "faces": [name for name, _ in crops],
                "visible_levels": VISIBLE_LEVELS,
                "median_p95_change_by_footprint_px": table,
                "threshold_footprint_px": thresholds,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
