"""The smoothest fill: a membrane stretched over the hole from its border (Laplace's equation).

Each hole pixel ends as the mean of its four neighbours, the known pixels fixed: a gradient goes on
as a gradient, a sky's light as it was, with no streak and no texture. Solved coarse to fine: the
hole's values at half resolution, upsampled, start the finer level's sweeps (red-black
Gauss–Seidel, over-relaxed, on the hole's pixels only), so a hole hundreds of pixels wide settles
in a couple of dozen sweeps per level, and a wire's thin hole in about as many as it is thick.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]
OMEGA = 1.6  # over-relaxation of each sweep (1: Gauss–Seidel)
MARGIN = 16  # px of known pixels around the hole's box that the solution sees


def membrane(image: Floats, mask: Mask, sweeps: int = 24) -> Floats:
    """``image`` (float, H×W×C) with the ``mask`` pixels solving Laplace's equation from the others.

    Solved on the hole's box grown by ``MARGIN`` px only (a wire along a crop is a thin band of it).
    """
    img = np.asarray(image, np.float32)
    out = img.copy()
    if not mask.any():
        return out
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    y0, y1 = max(0, int(rows[0]) - MARGIN), min(h, int(rows[-1]) + MARGIN + 1)
    x0, x1 = max(0, int(cols[0]) - MARGIN), min(w, int(cols[-1]) + MARGIN + 1)
    out[y0:y1, x0:x1] = _solve(np.ascontiguousarray(img[y0:y1, x0:x1]), mask[y0:y1, x0:x1], sweeps)
    return out


def _solve(img: Floats, mask: Mask, sweeps: int) -> Floats:
    if not mask.any():
        return img.copy()
    known = ~mask
    h, w = mask.shape
    if not known.any():
        return np.zeros_like(img)
    if min(h, w) > 8 and mask.sum() > 16:
        size = ((w + 1) // 2, (h + 1) // 2)
        wk = known.astype(np.float32)
        num = cv2.resize(img * wk[..., None], size, interpolation=cv2.INTER_AREA)
        den = cv2.resize(wk, size, interpolation=cv2.INTER_AREA)
        small_mask = den < 0.25  # mostly hole at half resolution
        small = (num.reshape(size[1], size[0], -1) / np.maximum(den, 1e-6)[..., None]).astype(np.float32)
        coarse = _solve(small, small_mask, sweeps)
        start = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR).reshape(img.shape)
    else:
        start = np.broadcast_to(img[known].mean(axis=0), img.shape)
    out = np.where(mask[..., None], start, img).astype(np.float32).reshape(h * w, -1)
    # Red-black over-relaxed sweeps on the hole's pixels only (a wire is a small part of its crop).
    ys, xs = np.nonzero(mask)
    at = ys * w + xs
    nbrs = [np.maximum(ys - 1, 0) * w + xs, np.minimum(ys + 1, h - 1) * w + xs]
    nbrs += [ys * w + np.maximum(xs - 1, 0), ys * w + np.minimum(xs + 1, w - 1)]
    colours = [(ys + xs) % 2 == c for c in (0, 1)]
    groups = [(at[c], [n[c] for n in nbrs]) for c in colours]
    # A thin hole (a wire) settles in about as many sweeps as it is thick.
    thickness = 2.0 * float(cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3).max())
    for _ in range(int(np.clip(thickness, 6, sweeps))):
        for idx, (n0, n1, n2, n3) in groups:
            avg = 0.25 * (out.take(n0, 0) + out.take(n1, 0) + out.take(n2, 0) + out.take(n3, 0))
            out[idx] += OMEGA * (avg - out[idx])
    return out.reshape(img.shape)
