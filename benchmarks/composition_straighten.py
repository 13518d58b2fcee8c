"""Straightening on real photos rotated by known angles, and on the photos as they are.

Photos: the FiveK befores, the expert thumbnails, power lines, EXIT signs, faces, and the wheel
photos. Each is rotated by 5 angles drawn uniformly from −5°…5° (seeded) about its centre and
cropped to the largest rectangle without empty corners — exactly what the phase does, so no
black corner can give the angle away.

The originals are not guaranteed level. So each rotated copy is scored against the *original's
own* confident estimate minus the applied angle (0 − angle when the original was left alone):
that measures the angle accuracy independently of how the photographer held the camera. The
originals the phase would rotate are listed, to be checked by eye (docs/analysis.md says what
was seen).

Reported: mean absolute error over the copies the phase is confident about, the share it
abstains on (those stay as they are: error = the applied angle), the MAE counting abstentions,
and, for the originals, the share whose applied correction stays within ±0.2°.

    python -m benchmarks.composition_straighten
"""

from __future__ import annotations

import json

import numpy as np

from benchmarks.analysis_photos import named_photos
from worker.phases.composition import inscribed_box, rotate_crop
from worker.scene.straighten import MIN_ROTATION_DEG, estimate_tilt

PATTERNS = (
    "pairs/*/before/*",
    "pairs/fivek_multi_expert_thumbs_no_input/expertC/*",
    "powerlines/*",
    "exit_signs/*",
    "faces/*",
)
ANGLES_PER_PHOTO = 5


def main() -> None:
    rng = np.random.default_rng(2024)
    photos = named_photos(*PATTERNS)
    confident_errors, all_errors, abstained = [], [], 0
    rotated_originals = {}
    untouched = 0
    per_photo = {}
    for name, img in photos:
        base = estimate_tilt(img)
        applied = float(base["rotation_deg"])
        if abs(applied) <= 0.2:
            untouched += 1
        else:
            rotated_originals[name] = applied
        own = float(base["estimate_deg"]) if base["confident"] else 0.0
        rows: list[list[float | None]] = []
        for angle in rng.uniform(-5.0, 5.0, ANGLES_PER_PHOTO):
            h, w = img.shape[:2]
            copy = rotate_crop(img, float(angle), inscribed_box(w, h, float(angle)))
            tilt = estimate_tilt(copy)
            truth = own - float(angle)
            if tilt["confident"]:
                # The phase leaves sub-threshold tilts alone; what counts is the rotation applied.
                correction = float(tilt["rotation_deg"]) if abs(tilt["estimate_deg"]) >= MIN_ROTATION_DEG else 0.0
                error = abs(correction - truth)
                confident_errors.append(error)
                all_errors.append(error)
                rows.append([round(float(angle), 2), round(correction, 2), round(error, 2)])
            else:
                abstained += 1
                all_errors.append(abs(truth))
                rows.append([round(float(angle), 2), None, None])
        per_photo[name] = {"original_estimate": base["estimate_deg"], "copies": rows}
    copies = len(photos) * ANGLES_PER_PHOTO
    print(
        json.dumps(
            {
                "benchmark": "straighten",
                "photos": len(photos),
                "rotated_copies": copies,
                "confident_copies": len(confident_errors),
                "abstained_share": round(abstained / copies, 4),
                "mae_deg_when_confident": round(float(np.mean(confident_errors)), 3) if confident_errors else None,
                "p90_error_deg_when_confident": round(float(np.percentile(confident_errors, 90)), 3)
                if confident_errors
                else None,
                "mae_deg_all_copies_abstentions_count_as_left_tilted": round(float(np.mean(all_errors)), 3),
                "originals_within_0.2deg": round(untouched / len(photos), 4),
                "originals_rotated": rotated_originals,
                "per_photo": per_photo,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
