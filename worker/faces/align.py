"""Face alignment: 5 landmarks → the 512² crop every face model here expects (FFHQ alignment).

The FFHQ 5-point template (eye centres, nose tip, mouth corners of a 512² FFHQ face,
as used by CodeFormer, GFPGAN and facexlib) defines where a face sits in the crop. A
similarity transform (rotation, uniform scale, translation) maps the detected
landmarks onto it, estimated robustly (least median of squares) as the official
pipeline does, so a restorer sees exactly the framing it was trained on.

Downscaling a big face (a 2,000-px portrait face to 512) with bilinear sampling would
alias; the photo region is first area-averaged to about twice the crop's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from worker.frame import Face, Image

FACE_SIZE = 512
FFHQ_TEMPLATE = np.array(
    [
        [192.98138, 239.94708],  # left eye
        [318.90277, 240.1936],  # right eye
        [256.63416, 314.01935],  # nose tip
        [201.26117, 371.41043],  # mouth, left corner
        [313.08905, 371.15118],  # mouth, right corner
    ],
    dtype=np.float32,
)
# The grey the official pipeline pads with when the crop reaches past the photo's edge.
BORDER_RGB = (132, 133, 135)

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Alignment:
    """``matrix`` maps photo pixels to crop pixels; ``inverse`` maps back."""

    matrix: Matrix  # 2×3
    inverse: Matrix  # 2×3

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel (> 1: the face is enlarged into the crop)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def footprint(self) -> float:
        """Side, in photo pixels, of the square the 512² crop covers."""
        return FACE_SIZE / self.scale

    def crop_corners(self) -> npt.NDArray[np.float64]:
        """The crop's four corners in photo coordinates (4×2)."""
        s = float(FACE_SIZE)
        corners = np.array([[0, 0, 1], [s, 0, 1], [s, s, 1], [0, s, 1]], dtype=np.float64)
        return corners @ self.inverse.T


def estimate(landmarks: npt.ArrayLike) -> Alignment:
    """The similarity transform taking 5 landmarks (x, y) onto the FFHQ template."""
    points = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    found: Any = cv2.estimateAffinePartial2D(points, FFHQ_TEMPLATE, method=cv2.LMEDS)[0]
    if found is None:  # degenerate sample sets: fall back to the least-squares fit
        found = cv2.estimateAffinePartial2D(points, FFHQ_TEMPLATE, method=0)[0]
    if found is None or not np.isfinite(found).all() or abs(np.linalg.det(found[:, :2])) < 1e-12:
        raise ValueError("landmarks do not define a face alignment")
    matrix = np.asarray(found, dtype=np.float64)
    return Alignment(matrix, np.asarray(cv2.invertAffineTransform(matrix), dtype=np.float64))


def align_face(face: Face) -> Alignment:
    return estimate(face.landmarks)


def warp_face(image: Image, alignment: Alignment, size: int = FACE_SIZE) -> Image:
    """The aligned size² RGB crop of ``image`` (grey where the crop extends past the photo)."""
    matrix = alignment.matrix * (size / FACE_SIZE)
    source: Image = image
    shrink = 1.0 / (alignment.scale * size / FACE_SIZE)  # photo pixels per crop pixel
    x0, y0, x1, y1 = bounds(alignment.crop_corners(), image.shape[1], image.shape[0])
    n = int(shrink // 2)  # an integer factor: OpenCV's fast area-averaging path
    if n >= 2 and x1 - x0 >= n and y1 - y0 >= n:
        # Area-average the face's region by n (to 2–4 photo px per crop px) before the bilinear warp.
        x1, y1 = x0 + (x1 - x0) // n * n, y0 + (y1 - y0) // n * n
        region = image[y0:y1, x0:x1]
        size_n = ((x1 - x0) // n, (y1 - y0) // n)
        source = np.asarray(cv2.resize(region, size_n, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        # Region pixel centre (i + 0.5)·n − 0.5 + x0 in the photo ← pixel i of the reduced region.
        to_photo = np.array([[n, 0, x0 + (n - 1) / 2], [0, n, y0 + (n - 1) / 2]], dtype=np.float64)
        matrix = _compose(matrix, to_photo)
    warped = cv2.warpAffine(
        source,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BORDER_RGB,
    )
    return np.asarray(warped, dtype=np.uint8)


def _compose(a: Matrix, b: Matrix) -> Matrix:
    """``a ∘ b`` for 2×3 affine matrices (apply b first)."""
    a3 = np.vstack([a, [0.0, 0.0, 1.0]])
    b3 = np.vstack([b, [0.0, 0.0, 1.0]])
    return (a3 @ b3)[:2]


def bounds(points: npt.NDArray[np.float64], width: int, height: int) -> tuple[int, int, int, int]:
    """Integer bounding box of ``points`` (n×2), grown by 2 px, clipped to the photo (may be empty)."""
    x0 = int(np.clip(np.floor(points[:, 0].min()) - 2, 0, width))
    y0 = int(np.clip(np.floor(points[:, 1].min()) - 2, 0, height))
    x1 = int(np.clip(np.ceil(points[:, 0].max()) + 2, 0, width))
    y1 = int(np.clip(np.ceil(points[:, 1].max()) + 2, 0, height))
    return x0, y0, max(x0, x1), max(y0, y1)
