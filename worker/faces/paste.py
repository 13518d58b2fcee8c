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
import math
import threading

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from worker.faces.align import FACE_SIZE, Alignment, bounds
from worker.frame import Image

Mask = npt.NDArray[np.float32]
# One GPU paste-back at a time, whatever the thread (phase 2 pastes photos on the photo threads):
# its float64 sampling grid for a large face takes a few hundred MB of GPU memory.
_DEVICE_PASTE = threading.Lock()

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


# parsing_mask blurs on a copy of FEATHER_SIDE² (a quarter of a 512² crop): the official blurs (σ 11 px
# at 512², twice) leave nothing finer than that, and a 101-px kernel over 512² cost ~10 ms a face on the CPU.
FEATHER_SIDE = 128


def parsing_mask(face: npt.NDArray[np.float32]) -> Mask:
    """Feather a hard face mask (512², 1 on face classes) the way the official pipeline does.

    Two Gaussian blurs (kernel 101, σ 11 at 512²), run on a copy area-reduced by a whole factor to
    about :data:`FEATHER_SIDE` px and enlarged back: within 0.004 of the full-size blurs, ~20× cheaper.
    The mask is first mirrored out by the kernel's reach at full size (as the official blurs see past
    the border), so a face that touches the crop's edge is feathered the same way.
    """
    size = face.shape[0]
    reduction = max(1, size // FEATHER_SIDE)
    k = size / FACE_SIZE / reduction
    pad = reduction * math.ceil(50 * size / FACE_SIZE / reduction)  # the 101-px kernel's reach, whole reductions
    mirrored = cv2.copyMakeBorder(np.asarray(face, np.float32), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    side = mirrored.shape[0] // reduction
    small = cv2.resize(mirrored, (side, mirrored.shape[1] // reduction), interpolation=cv2.INTER_AREA)
    ksize = int(101 * k) | 1
    once = cv2.GaussianBlur(small, (ksize, ksize), 11 * k)
    twice = cv2.GaussianBlur(once, (ksize, ksize), 11 * k)
    p = pad // reduction
    mask = np.asarray(cv2.resize(twice[p:-p, p:-p], (size, size), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    edge = max(1, round(10 * size / FACE_SIZE))
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
    target: Image, delta: npt.NDArray[np.float32], alignment: Alignment, device: str = "cpu"
) -> tuple[int, int, int, int] | None:
    """Add the crop-space correction ``delta`` into ``target`` (in place). Returns the box it touched.

    Only the bounding box of ``delta``'s non-zero support, mapped into the photo, is read
    and written. On a CUDA ``device`` the warp and the sum run there (the region goes up
    and down once); on the CPU, OpenCV does them.
    """
    size = delta.shape[0]
    s = FACE_SIZE / size
    inverse = alignment.inverse * np.array([[s, s, 1.0], [s, s, 1.0]])  # crop(size) → photo
    source = delta
    if alignment.footprint / size < 1.0 / 1.5:
        # Shrink the correction to the face's own resolution first (area average: no aliasing).
        side = max(8, int(np.ceil(alignment.footprint)))
        source = np.asarray(cv2.resize(delta, (side, side), interpolation=cv2.INTER_AREA), dtype=np.float32)
        f = size / side
        # The centre of source pixel j is crop coordinate f·j + (f − 1)/2 (area bins of f crop pixels).
        inverse = _compose(inverse, np.array([[f, 0.0, (f - 1) / 2], [0.0, f, (f - 1) / 2]]))
    energy = np.einsum("ijk,ijk->ij", source, source)
    left, top, w, h = cv2.boundingRect((energy > 0).astype(np.uint8))
    if w == 0 or h == 0:
        return None
    # Bilinear sampling reaches one source pixel beyond the support on each side: (left - 1, top - 1)
    # to (left + w, top + h) in pixel-centre coordinates.
    left, top, right, bottom = left - 1, top - 1, left + w, top + h
    corners = np.array([[left, top, 1], [right, top, 1], [right, bottom, 1], [left, bottom, 1]], np.float64)
    height, width = target.shape[:2]
    box = bounds(corners @ inverse.T, width, height)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return None
    if device.startswith("cuda"):
        with _DEVICE_PASTE:
            paste_torch(target, source, inverse, box, device)
        return box
    to_roi = inverse.copy()
    to_roi[:, 2] -= (x0, y0)
    w, h = x1 - x0, y1 - y0
    # A big face (each crop pixel covers m ≥ 2 photo pixels): warp at 1/m, then enlarge by
    # exactly m — the correction has no finer detail, and this is several times cheaper.
    m = int(alignment.footprint / source.shape[0]) if source is delta else 1
    if m >= 2:
        shrink = np.array([[1 / m, 0, -(m - 1) / (2 * m)], [0, 1 / m, -(m - 1) / (2 * m)]])
        low = cv2.warpAffine(
            source,
            _compose(shrink, to_roi),
            (-(-w // m), -(-h // m)),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        # Whole levels before enlarging: int16 resizes ~3× faster than float32, and the sum
        # below rounds to whole levels anyway (≤ 1 level from the float result).
        low = np.rint(low).astype(np.int16)
        warped = cv2.resize(low, (low.shape[1] * m, low.shape[0] * m), interpolation=cv2.INTER_LINEAR)[:h, :w]
    else:
        warped = cv2.warpAffine(source, to_roi, (w, h), flags=cv2.INTER_LINEAR)  # zero outside
    target[y0:y1, x0:x1] = cv2.add(target[y0:y1, x0:x1], warped, dtype=cv2.CV_8U)  # rounds, saturates
    return box


def _compose(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``a ∘ b`` for 2×3 affine matrices (apply b first)."""
    return (np.vstack([a, [0.0, 0.0, 1.0]]) @ np.vstack([b, [0.0, 0.0, 1.0]]))[:2]


def paste_torch(
    target: Image,
    source: npt.NDArray[np.float32],
    inverse: npt.NDArray[np.float64],
    box: tuple[int, int, int, int],
    device: str,
) -> None:
    """The warp-and-add of :func:`paste` in torch (bilinear, zero outside, round half to even)."""
    x0, y0, x1, y1 = box
    forward = np.asarray(cv2.invertAffineTransform(inverse), dtype=np.float64)  # photo → source pixels
    src = torch.from_numpy(np.ascontiguousarray(source)).to(device).permute(2, 0, 1).unsqueeze(0)
    ys = torch.arange(y0, y1, device=device, dtype=torch.float64)
    xs = torch.arange(x0, x1, device=device, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    a = torch.from_numpy(forward).to(device)
    sx = a[0, 0] * gx + a[0, 1] * gy + a[0, 2]
    sy = a[1, 0] * gx + a[1, 1] * gy + a[1, 2]
    # Pixel centres at integers (OpenCV) → grid_sample's [-1, 1] with align_corners=False.
    grid = torch.stack([(2 * sx + 1) / src.shape[3] - 1, (2 * sy + 1) / src.shape[2] - 1], dim=-1)
    grid = grid.unsqueeze(0).float()
    warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    region = torch.from_numpy(np.ascontiguousarray(target[y0:y1, x0:x1])).to(device)
    out = (region.float() + warped[0].permute(1, 2, 0)).round_().clamp_(0, 255).to(torch.uint8)
    target[y0:y1, x0:x1] = out.cpu().numpy()
