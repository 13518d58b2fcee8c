"""Composition on one 24 MP photo (target: ≤ 150 ms on two cores): the tilt estimate every photo
pays, and the rotate-and-crop resample a tilted photo pays on top.

    python -m benchmarks.composition_speed
"""

from __future__ import annotations

import json

from benchmarks.analysis_photos import photo_24mp, timed
from benchmarks.common import machine
from worker.frame import Frame, SourceInfo
from worker.phases import PhaseContext, composition
from worker.phases.composition import estimate_tilt, inscribed_box, rotate_crop


def main() -> None:
    image = photo_24mp()
    h, w = image.shape[:2]
    box = inscribed_box(w, h, 2.0)

    def phase() -> None:
        frame = Frame("b", "b.jpg", image, SourceInfo("JPEG", w, h))
        composition.run([frame], PhaseContext())

    print(
        json.dumps(
            {
                "benchmark": "composition_24mp",
                "size": [w, h],
                "estimate_tilt": timed(lambda: estimate_tilt(image)),
                "rotate_and_crop_2deg": timed(lambda: rotate_crop(image, 2.0, box)),
                "phase_as_run": timed(phase),
                "target_ms": 150,
                "machine": machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
