"""The downscaled copy of a photo that the detectors share.

Detection runs at a bounded resolution (``long_edge`` px, 1024 by default) so its
cost does not grow with the camera: a 24 MP photo is reduced ~6× with area
averaging (halvings first, which OpenCV does fast, then one last step), which keeps
even a 1 px wire visible as a fainter, narrower dip.
Masks are then refined back at full resolution where it matters (see
:func:`worker.cleanup.wires.wire_regions`).
"""

from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np
import numpy.typing as npt

from worker.frame import Image

WORK_LONG_EDGE = 1024


class WorkingImage:
    """``rgb`` is the photo scaled by ``scale`` (≤ 1); full-res coordinates = (work + 0.5) / scale - 0.5."""

    def __init__(self, image: Image, long_edge: int = WORK_LONG_EDGE) -> None:
        h, w = image.shape[:2]
        self.full = image
        self.full_shape = (h, w)
        small: Image = image
        while max(small.shape[:2]) >= 2 * long_edge:
            half = (max(1, small.shape[1] // 2), max(1, small.shape[0] // 2))
            small = np.asarray(cv2.resize(small, half, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        if max(small.shape[:2]) > long_edge:
            f = long_edge / max(small.shape[:2])
            size = (max(1, round(small.shape[1] * f)), max(1, round(small.shape[0] * f)))
            small = np.asarray(cv2.resize(small, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        self.rgb = small
        # One scale for both axes (halving may round one of them by a pixel).
        self.scale = small.shape[1] / w

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    @cached_property
    def value(self) -> npt.NDArray[np.uint8]:
        """HSV value (max of R, G, B): wires are dark in every channel, the sky bright in one."""
        return value_channel(self.rgb)

    @cached_property
    def hsv(self) -> npt.NDArray[np.uint8]:
        """OpenCV HSV: H in 0–179, S and V in 0–255."""
        return np.asarray(cv2.cvtColor(self.rgb, cv2.COLOR_RGB2HSV), dtype=np.uint8)

    def to_full(self, points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Working-resolution (x, y) points → full-resolution pixel coordinates."""
        return (points + 0.5) / self.scale - 0.5


def value_channel(rgb: Image) -> npt.NDArray[np.uint8]:
    """max(R, G, B) per pixel (OpenCV's element-wise max is ~50× faster than numpy's reduction)."""
    r, g, b = cv2.split(rgb)
    return np.asarray(cv2.max(cv2.max(r, g), b), dtype=np.uint8)
