"""Paste-back: put a retouched aligned face into the photo with no seam and nothing else touched.

What goes back is the *change* the restorer made, not its pixels: ``restored − crop``
(both 512², aligned), weighted by a soft face mask in crop space, warped into the
photo with the inverse alignment and added there. So

* an unchanged face leaves the photo bit-identical (no resampling of the original);
* a large face (a 2,000-px portrait face, only 512² inside the model) keeps all of its
  full-resolution detail — only the model's correction is upsampled;
* nothing outside the warped mask's support changes: the sum is computed over that
  region of interest only, which also keeps the cost per face independent of the
  photo's megapixels.

Masks: :func:`ellipse_mask` (a feathered oval over the FFHQ-aligned face; needs no
weights) or :func:`parsing_mask` (from face parsing, feathered as the official
CodeFormer pipeline does). Both fall to zero well inside the crop's border.
When the face is small in the photo, the correction is area-averaged to the face's own
resolution before the warp so it does not alias.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import numpy.typing as npt

from worker.face_align import FACE_SIZE, Alignment, bounds
from worker.frame import Image

Mask = npt.NDArray[np.float32]

# The oval, in 512² FFHQ-aligned coordinates: forehead to chin, cheek to cheek (ears and
# hair outside). Chosen on the template (eyes at y≈240, mouth at y≈371) and checked on
# the wheel portraits (docs/retouch.md).
ELLIPSE_CENTRE = (256.0, 290.0)
ELLIPSE_AXES = (150.0, 185.0)


@functools.lru_cache(maxsize=4)
def ellipse_mask(size: int = FACE_SIZE) -> Mask:
    """A feathered face oval in [0, 1] (read-only; cached)."""
    k = size / FACE_SIZE
    mask = np.zeros((size, size), np.float32)
    centre = (round(ELLIPSE_CENTRE[0] * k), round(ELLIPSE_CENTRE[1] * k))
    axes = (round(ELLIPSE_AXES[0] * k * 0.92), round(ELLIPSE_AXES[1] * k * 0.92))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1, lineType=cv2.LINE_AA)
    sigma = 0.035 * size
    mask = np.asarray(cv2.GaussianBlur(mask, (0, 0), sigma), dtype=np.float32)
    mask[mask < 1e-3] = 0.0
    mask.setflags(write=False)
    return mask


def parsing_mask(face: npt.NDArray[np.float32]) -> Mask:
    """Feather a hard face mask (512², 1 on face classes) the way the official pipeline does."""
    size = face.shape[0]
    k = size / FACE_SIZE
    ksize = int(101 * k) | 1
    once = cv2.GaussianBlur(face.astype(np.float32), (ksize, ksize), 11 * k)
    mask = np.asarray(cv2.GaussianBlur(once, (ksize, ksize), 11 * k), dtype=np.float32)
    edge = max(1, round(10 * k))
    mask[:edge] = 0
    mask[-edge:] = 0
    mask[:, :edge] = 0
    mask[:, -edge:] = 0
    return mask


def correction(original: Image, restored: Image, mask: Mask) -> npt.NDArray[np.float32]:
    """``mask × (restored − original)`` in crop space, float32 H×W×3."""
    delta = restored.astype(np.float32) - original.astype(np.float32)
    return delta * mask[..., None]


def paste(
    target: Image, delta: npt.NDArray[np.float32], alignment: Alignment
) -> tuple[int, int, int, int] | None:
    """Add the crop-space correction ``delta`` into ``target`` (in place). Returns the box it touched.

    Only the bounding box of ``delta``'s non-zero support, mapped into the photo, is read
    and written.
    """
    size = delta.shape[0]
    support = np.abs(delta).max(axis=2) > 0
    rows, cols = np.flatnonzero(support.any(axis=1)), np.flatnonzero(support.any(axis=0))
    if not len(rows):
        return None
    s = FACE_SIZE / size
    inverse = alignment.inverse * np.array([[s, s, 1.0], [s, s, 1.0]])  # crop(size) → photo
    left, top, right, bottom = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
    corners = np.array([[left, top, 1], [right, top, 1], [right, bottom, 1], [left, bottom, 1]], np.float64)
    corners = corners @ inverse.T
    height, width = target.shape[:2]
    x0, y0, x1, y1 = bounds(corners, width, height)
    if x1 <= x0 or y1 <= y0:
        return None

    source = delta
    photo_px_per_crop_px = alignment.footprint / size
    if photo_px_per_crop_px < 1.0 / 1.5:
        # Shrink the correction to the face's own resolution first (area average: no aliasing).
        side = max(8, int(np.ceil(alignment.footprint)))
        source = np.asarray(cv2.resize(delta, (side, side), interpolation=cv2.INTER_AREA), dtype=np.float32)
        f = size / side
        inverse = inverse * np.array([[f, f, 1.0], [f, f, 1.0]])
    to_roi = inverse.copy()
    to_roi[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(
        source,
        to_roi,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    target[y0:y1, x0:x1] = cv2.add(target[y0:y1, x0:x1], warped, dtype=cv2.CV_8U)  # rounds, saturates
    return x0, y0, x1, y1
