"""Downscaling: fast for analysis, high quality for deliverables.

OpenCV's area filter is very fast at an exact factor of two (a 24 MP photo halves in
~4 ms on two cores) and slow at arbitrary factors (~170 ms to 1024 px). So both
helpers halve with the area filter while the image is at least twice the target,
then finish with one resample on the small image:

* :func:`shrink` finishes with the area filter (analysis copies: cheap, no ringing);
* :func:`downscale` finishes with Lanczos-3 at a ratio below 2 (deliverables: crisp, no
  aliasing — the halvings are a box prefilter, as Pillow's ``reducing_gap`` does, only faster).

Neither ever upscales.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage

Array = npt.NDArray[Any]  # uint8, RGB or grey (OpenCV's stubs type results loosely)


def fit_size(width: int, height: int, long_edge: int) -> tuple[int, int]:
    """(width, height) scaled so the longer side is ``long_edge``; unchanged if already smaller."""
    if max(width, height) <= long_edge:
        return width, height
    scale = long_edge / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def halve_while(image: Array, target_w: int, target_h: int, gap: float) -> Array:
    """Halve (area filter, fast) while the image stays at least ``gap`` times the target on both sides."""
    h, w = image.shape[:2]
    while w >= gap * target_w and h >= gap * target_h and w >= 4 and h >= 4:
        image = cv2.resize(image[: h // 2 * 2, : w // 2 * 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    return image


def halve_to(image: Array, long_edge: int) -> Array:
    """Halve (area filter, fast) while the image stays at least ``long_edge`` on its longer side."""
    h, w = image.shape[:2]
    tw, th = fit_size(w, h, long_edge)
    return halve_while(image, tw, th, 2.0)


def shrink(image: Array, long_edge: int) -> Array:
    """A fast area-filtered copy with the longer side ``long_edge`` (for measuring, not delivering)."""
    h, w = image.shape[:2]
    tw, th = fit_size(w, h, long_edge)
    if (tw, th) == (w, h):
        return image
    small = halve_while(image, tw, th, 2.0)
    if small.shape[1] == tw and small.shape[0] == th:
        return small
    return cv2.resize(small, (tw, th), interpolation=cv2.INTER_AREA)


def downscale(image: Array, long_edge: int) -> Array:
    """A high-quality copy (box prefilter + Lanczos-3) with the longer side ``long_edge``."""
    h, w = image.shape[:2]
    tw, th = fit_size(w, h, long_edge)
    if (tw, th) == (w, h):
        return image
    small = np.ascontiguousarray(halve_while(image, tw, th, 2.0))
    sh, sw = small.shape[:2]
    mode = "RGB" if small.ndim == 3 else "L"
    pil = PILImage.frombuffer(mode, (sw, sh), small, "raw", mode, 0, 1)
    return np.asarray(pil.resize((tw, th), PILImage.Resampling.LANCZOS, reducing_gap=None))
