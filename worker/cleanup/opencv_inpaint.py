"""Inpainting without a learned model: the fallback when LaMa's weights are not installed (or no GPU).

* ``telea`` / ``ns``: Telea (2004, fast marching) or Navier–Stokes (Bertalmio et al., 2001) from
  OpenCV (Apache-2.0). Both propagate the colours around a mask into it: fast, a smear over texture
  or across a line.
* ``smooth``: the membrane (:mod:`worker.cleanup.smooth_fill`): the smoothest fill, no streaks.
* ``patch``: patch-based inpainting (:mod:`worker.cleanup.patch_inpaint`): straight lines bridged
  through the hole, then the photo's own patches copied in. ~10–30× slower than Telea.
* ``auto`` (the worker's fallback, reported as ``classical``), per crop (:func:`choose`):

  - a thin mask over a smooth background (a wire against the sky): the membrane;
  - anywhere else, first the lattice fill (:mod:`worker.cleanup.lattice_fill`) where the texture
    around the hole repeats and its lattice predicts a hidden ring around the hole; what is left,
    the mean of the patch fill and the membrane: the patch fill's lines and edges at half their
    contrast where they are right, half of its invented texture where it is not. A copied patch is
    one sample of the texture, not the texture that was there: against the photo it scores worse
    than a blur, and the mean of the two scores better than either (docs/benchmarks.md).

They run on the same crops as LaMa (see :mod:`worker.cleanup.inpaint`), so only the filling
differs; the report names the inpainter and, per region, which fill ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from worker.cleanup.lattice_fill import lattice_fill
from worker.cleanup.patch_inpaint import hole_thickness, patch_fill, ring_texture
from worker.cleanup.smooth_fill import membrane
from worker.frame import Image

Method = Literal["telea", "ns", "smooth", "patch", "auto"]
Fill = Literal["telea", "ns", "smooth", "patch", "lattice", "lattice+patch"]

THIN_PX = 32.0  # a mask at most this thick (px, in the crop: a wire or a bundle, with margin and feather)…
SMOOTH = 6.0  # …in a ring this smooth (97th percentile of the grey gradient, grey levels/px) gets the membrane
PATCH_WEIGHT = 0.5  # auto: the patch fill's share of the mean with the membrane
NAMES: dict[Method, str] = {
    "telea": "opencv-telea",
    "ns": "opencv-ns",
    "smooth": "smooth",
    "patch": "patch",
    "auto": "classical",
}


def choose(image: Image, mask: npt.NDArray[np.bool_]) -> Fill:
    """The membrane for a thin mask over a smooth background (a wire against the sky), the patch
    fill otherwise (which :class:`OpenCVInpainter` tries the lattice fill before).

    Nothing to continue there but the light: the smoothest fill is the closest, and as fast as Telea.
    """
    if hole_thickness(mask) <= THIN_PX and ring_texture(image, mask) <= SMOOTH:
        return "smooth"
    return "patch"


class OpenCVInpainter:
    """Implements :class:`worker.models.protocols.Inpainter` without a model: Telea, NS, smooth, patch, or auto."""

    def __init__(self, method: Method = "auto", radius: float = 5.0) -> None:
        self.method = method
        self.radius = float(radius)
        self.name = NAMES[method]
        # The last fill_for's decision, kept for the inpaint on the same arrays that follows.
        self._plan: _Plan | None = None

    def fill_for(self, image: Image, mask: npt.NDArray[np.uint8]) -> Fill | None:
        """Which fill :meth:`inpaint` chooses for this crop and mask (``None``: no choice, always its method).

        Where the patch fill is chosen, the lattice fill (:mod:`worker.cleanup.lattice_fill`) runs
        first: ``lattice`` if it filled every pixel, ``lattice+patch`` if some, else ``patch``. Its
        result is kept for the :meth:`inpaint` call on the same arrays that follows.
        """
        if self.method != "auto":
            return None
        self._plan = _plan(image, mask)
        return self._plan.fill

    def inpaint(self, image: Image, mask: npt.NDArray[np.uint8]) -> Image:
        plan, self._plan = self._plan, None
        hole = mask > 0
        if self.method != "auto":
            fill: Fill = self.method
        else:
            if plan is None or plan.image is not image or plan.mask is not mask:
                plan = _plan(image, mask)
            fill = plan.fill
        if fill in ("telea", "ns"):
            flag = cv2.INPAINT_TELEA if fill == "telea" else cv2.INPAINT_NS
            return np.asarray(cv2.inpaint(image, hole.astype(np.uint8) * 255, self.radius, flag), dtype=np.uint8)
        if fill == "smooth":
            return _to_uint8(membrane(image.astype(np.float32), hole), image, hole)
        if plan is None:  # method "patch": the patch fill alone
            return patch_fill(image, hole)
        if not plan.left.any():
            return plan.filled
        mixed = PATCH_WEIGHT * patch_fill(plan.filled, plan.left).astype(np.float32)
        mixed += (1.0 - PATCH_WEIGHT) * membrane(plan.filled.astype(np.float32), plan.left)
        return _to_uint8(mixed, plan.filled, plan.left)


@dataclass(frozen=True)
class _Plan:
    image: Image
    mask: npt.NDArray[np.uint8]
    fill: Fill
    filled: Image  # the image with the lattice fill's pixels set
    left: npt.NDArray[np.bool_]  # the hole's pixels still to fill


def _plan(image: Image, mask: npt.NDArray[np.uint8]) -> _Plan:
    hole = mask > 0
    fill = choose(image, hole)
    if fill != "patch":
        return _Plan(image, mask, fill, image, hole)
    filled, left = lattice_fill(image, hole)
    if not left.any():
        fill = "lattice"
    elif left.sum() < hole.sum():
        fill = "lattice+patch"
    return _Plan(image, mask, fill, filled, left)


def _to_uint8(values: npt.NDArray[np.float32], image: Image, hole: npt.NDArray[np.bool_]) -> Image:
    """``image`` with its ``hole`` pixels set from ``values`` (rounded, clipped)."""
    out = image.copy()
    out[hole] = np.clip(np.round(values[hole]), 0, 255).astype(np.uint8)
    return out
