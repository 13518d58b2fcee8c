"""Inpainting without a learned model: the fallback when LaMa's weights are not installed (or no GPU).

* ``telea`` / ``ns``: Telea (2004, fast marching) or Navier–Stokes (Bertalmio et al., 2001) from
  OpenCV (Apache-2.0). Both propagate the colours around a mask into it: good and fast for a thin
  mask over a smooth sky (a wire), a smear over texture or across a line.
* ``patch``: patch-based inpainting (:mod:`worker.cleanup.patch_inpaint`): straight lines bridged
  through the hole, then the photo's own patches copied in, so a ceiling grid's lines and brick
  or leaf texture go on through it. ~10–30× slower than Telea.
* ``auto`` (the worker's fallback, reported as ``classical``): per crop, Telea where the mask is
  thin and the photo around it smooth (:func:`choose`), the patch fill everywhere else.

They run on the same crops as LaMa (see :mod:`worker.cleanup.inpaint`), so only the filling
differs; the report names the inpainter and, per region, which fill ran.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from worker.cleanup.patch_inpaint import hole_thickness, patch_fill, ring_texture
from worker.frame import Image

Method = Literal["telea", "ns", "patch", "auto"]
Fill = Literal["telea", "ns", "patch"]

THIN_PX = 32.0  # a mask at most this thick (px, in the crop: a wire or a bundle, with margin and feather)…
SMOOTH = 6.0  # …in a ring this smooth (97th percentile of the grey gradient, grey levels/px) is Telea's
NAMES: dict[Method, str] = {"telea": "opencv-telea", "ns": "opencv-ns", "patch": "patch", "auto": "classical"}


def choose(image: Image, mask: npt.NDArray[np.bool_]) -> Fill:
    """Telea for a thin mask over a smooth background (a wire against the sky), the patch fill otherwise.

    Telea is as good there (nothing to continue but a gradient) and 10–30× faster; anywhere else it
    smears what crosses the mask.
    """
    if hole_thickness(mask) <= THIN_PX and ring_texture(image, mask) <= SMOOTH:
        return "telea"
    return "patch"


class OpenCVInpainter:
    """Implements :class:`worker.models.protocols.Inpainter` without a model: Telea, NS, patch, or auto."""

    def __init__(self, method: Method = "auto", radius: float = 5.0) -> None:
        self.method = method
        self.radius = float(radius)
        self.name = NAMES[method]

    def fill_for(self, image: Image, mask: npt.NDArray[np.uint8]) -> Fill | None:
        """Which fill :meth:`inpaint` chooses for this crop and mask (``None``: no choice, always its method)."""
        return choose(image, mask > 0) if self.method == "auto" else None

    def inpaint(self, image: Image, mask: npt.NDArray[np.uint8]) -> Image:
        fill = self.fill_for(image, mask) or self.method
        if fill == "patch":
            return patch_fill(image, mask > 0)
        flag = cv2.INPAINT_TELEA if fill == "telea" else cv2.INPAINT_NS
        return np.asarray(cv2.inpaint(image, (mask > 0).astype(np.uint8) * 255, self.radius, flag), dtype=np.uint8)
