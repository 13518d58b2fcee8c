"""Detectors for phase 3 (cleanup): what to remove, found conservatively.

One concept per module: :mod:`~worker.detect.working` (the downscaled copy every
detector shares), :mod:`~worker.detect.region` (what a detector returns),
:mod:`~worker.detect.sky`, :mod:`~worker.detect.wires` (power lines against the sky)
and :mod:`~worker.detect.exit_signs` (lit EXIT signs). Detectors never edit pixels.
"""
