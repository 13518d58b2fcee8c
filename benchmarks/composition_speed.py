"""Composition on one 24 MP photo (target: ≤ 150 ms on two cores), as the pipeline runs it: phase 0
has measured the tilt (its time is in ``benchmarks.analysis_speed``), so phase 4 only acts on it.

``phase_level``: a level photo (nothing to do); ``phase_tilted_2deg``: phase 0 found it 2° off, so
it is rotated about its centre and cropped — the resample every straightened photo pays.
``estimate_tilt``: measuring from scratch (only when phase 0 did not run).

    python -m benchmarks.composition_speed
"""

from __future__ import annotations

import json

from benchmarks.analysis_photos import photo_24mp, timed
from benchmarks.common import machine
from worker.frame import Frame, SourceInfo
from worker.phases import PhaseContext, composition
from worker.phases.composition import inscribed_box, rotate_crop
from worker.scene.straighten import estimate_tilt


def main() -> None:
    image = photo_24mp()
    h, w = image.shape[:2]
    box = inscribed_box(w, h, 2.0)

    level = estimate_tilt(image)
    tilted = {**level, "confident": True, "estimate_deg": 2.0, "rotation_deg": 2.0}

    def phase(tilt: dict[str, object]) -> None:
        frame = Frame("b", "b.jpg", image, SourceInfo("JPEG", w, h), tilt=tilt)
        composition.run([frame], PhaseContext())
        assert frame.report["composition"]["rotation_deg"] == tilt["rotation_deg"]

    print(
        json.dumps(
            {
                "benchmark": "composition_24mp",
                "size": [w, h],
                "estimate_tilt": timed(lambda: estimate_tilt(image)),
                "rotate_and_crop_2deg": timed(lambda: rotate_crop(image, 2.0, box)),
                "phase_level": timed(lambda: phase(level)),
                "phase_tilted_2deg": timed(lambda: phase(tilted)),
                "target_ms": 150,
                "machine": machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
