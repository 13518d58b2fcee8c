"""Decode + analysis of one 24 MP JPEG on this machine's CPU cores (target: ≤ 600 ms on two).

The analysis is the phase as the pipeline runs it (no face detector): scores, hashes, scene, and
the straightening estimate phase 4 acts on (``tilt_measure``: that part alone).

python -m benchmarks.analysis_speed
"""

from __future__ import annotations

import json

from benchmarks.analysis_photos import jpeg_bytes, photo_24mp, timed
from benchmarks.common import machine
from worker.imaging.decode import decode
from worker.phases import PhaseContext, analysis
from worker.scene import straighten


def main() -> None:
    data = jpeg_bytes(photo_24mp(), quality=92)
    frame = decode(data, photo_id="bench", filename="bench.jpg", max_pixels=250_000_000)

    def both() -> None:
        f = decode(data, photo_id="bench", filename="bench.jpg", max_pixels=250_000_000)
        analysis.run([f], PhaseContext())

    copies = analysis.WorkingCopies.of(frame.image)

    print(
        json.dumps(
            {
                "benchmark": "decode_and_analysis_24mp",
                "size": [frame.width, frame.height],
                "jpeg_mb": round(len(data) / 1e6, 2),
                "decode": timed(lambda: decode(data, photo_id="b", filename="b.jpg", max_pixels=250_000_000)),
                "analysis": timed(lambda: analysis.run([frame], PhaseContext())),
                "tilt_measure": timed(lambda: straighten.measure(copies.grey_small, copies.small)),
                "decode_plus_analysis": timed(both),
                "target_ms": 600,
                "machine": machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
