"""Fill regions of a photo with an inpainter, crop by crop, changing nothing else.

The inpainter (LaMa, or OpenCV as the fallback) never sees the whole photo. For each
region, in order:

1. **Edit mask**: the detector's mask grown by ``feather_px``. Pixels of the detector's
   mask are replaced entirely; the ring around it is blended (weight rising from ~0 at its
   outer edge to 1 at the detector's mask), so no seam shows. Nothing outside the edit
   masks changes — not one bit.
2. **Cells**: a long thin region (a wire across the frame) is cut into a grid of cells of
   ``max_side / context`` px and handled cell by cell, so every crop stays at full
   resolution and the inpainter has context on every side. A compact region (a sign) is
   one cell.
3. **Window**: around the mask pixels of a cell, a window ``context``× their extent (and
   at least ``min_window`` px), inside the photo. Every pixel still waiting to be filled
   (of this region or any other) is masked in it, so a crossing wire is never copied as
   context; pixels already filled are context.
4. If the window is longer than ``max_side``, it is downscaled for the inpainter and only
   the filled pixels are upscaled back. The crop is padded (reflected) to a multiple of 8.
5. The inpainter's output is composited: only the cell's edit-mask pixels are written,
   blended with the feather weight.

An inpainter that picks its fill per crop (the classical fallback:
:class:`worker.cleanup.opencv_inpaint.OpenCVInpainter`) says which through ``fill_for(crop, mask)``;
each region's stats then name the fills that ran on it (``"filled_with": "patch"``, ``"telea"``, …).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from worker.cleanup.region import Region
from worker.frame import Image
from worker.models.protocols import Inpainter

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


@dataclass(frozen=True)
class CropParams:
    max_side: int = 1024  # longest side the inpainter is given (model pixels)
    context: float = 3.0  # window ≥ this × the extent of the mask pixels it fills
    min_window: int = 128  # px (full resolution), so a tiny mask still has context
    feather_px: int = 2  # width of the blended ring around each detector mask
    thin_fill: float = 0.3  # a region filling less of its box than this…
    thin_aspect: float = 4.0  # …or this elongated is thin (a wire): tiled, never downscaled
    multiple: int = 8


@dataclass
class FillStats:
    crops: int = 0
    downscaled_crops: int = 0
    edited_px: int = 0
    model_px: int = 0  # pixels given to the inpainter, padding included
    per_region: list[dict[str, Any]] = field(default_factory=list)
    fills: list[str] = field(default_factory=list)  # per crop, the fill the inpainter chose (if it chooses)


def edit_mask(mask: npt.NDArray[np.bool_], feather_px: int) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]:
    """(edit mask, blend weight) for a detector mask, both padded by ``feather_px`` on every side.

    The weight is 1 on the detector's pixels and falls off across the ring around them.
    """
    f = max(0, int(feather_px))
    if f == 0:
        return mask.copy(), mask.astype(np.float32)
    # One extra row of zeros all round, so the distance transform sees the outside everywhere.
    padded = np.pad(mask, f + 1).astype(np.uint8)
    size = 2 * f + 1
    grown = cv2.dilate(padded, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    # Distance from outside the grown mask: 1 on its outer ring, about f + 1 on the detector's own pixels.
    dist = cv2.distanceTransform(grown, cv2.DIST_L2, 3)
    weight = np.clip(dist / float(f + 1), 0.0, 1.0).astype(np.float32)
    weight[padded.astype(bool)] = 1.0
    weight[~grown.astype(bool)] = 0.0
    grown, weight = grown[1:-1, 1:-1], weight[1:-1, 1:-1]
    return grown.astype(bool), weight


def fill_regions(
    image: Image, regions: Sequence[Region], inpainter: Inpainter, params: CropParams | None = None
) -> tuple[Image, FillStats]:
    """A copy of ``image`` with every region filled; pixels outside the edit masks are untouched."""
    p = params or CropParams()
    stats = FillStats()
    if not regions:
        return image, stats
    H, W = image.shape[:2]
    out = image.copy()
    f = p.feather_px
    # How many regions still have to write each pixel: a pixel is masked in every window until
    # the last region that covers it is done, so no wire ever serves as context for another.
    pending = np.zeros((H, W), np.uint8)
    edits: list[tuple[Box, npt.NDArray[np.bool_], npt.NDArray[np.float32]]] = []
    for region in regions:
        grown, weight = edit_mask(region.mask, f)
        x0, y0, x1, y1 = region.box
        box = (x0 - f, y0 - f, x1 + f, y1 + f)
        grown, weight, box = _clip(grown, weight, box, W, H)
        pending[box[1] : box[3], box[0] : box[2]] += grown.astype(np.uint8)
        edits.append((box, grown, weight))
    tile = max(16, int(p.max_side / p.context))
    for box, grown, weight in edits:
        crops_before, fills_before = stats.crops, len(stats.fills)
        bx0, by0, bx1, by1 = box
        bw, bh = bx1 - bx0, by1 - by0
        thin = grown.mean() < p.thin_fill or max(bw, bh) >= p.thin_aspect * min(bw, bh)
        cell = tile if thin else max(bw, bh)
        for cy in range(by0, by1, cell):
            for cx in range(bx0, bx1, cell):
                c = (cx, cy, min(cx + cell, bx1), min(cy + cell, by1))
                local = grown[c[1] - by0 : c[3] - by0, c[0] - bx0 : c[2] - bx0]
                if not local.any():
                    continue
                ys, xs = np.nonzero(local)
                target = (
                    c[0] + int(xs.min()),
                    c[1] + int(ys.min()),
                    c[0] + int(xs.max()) + 1,
                    c[1] + int(ys.max()) + 1,
                )
                (wx0, wy0, _, _), filled = _fill_window(out, pending, target, inpainter=inpainter, p=p, stats=stats)
                # Write back this cell's pixels of this region only, blended by the feather weight.
                tx0, ty0, tx1, ty1 = target
                sel = grown[ty0 - by0 : ty1 - by0, tx0 - bx0 : tx1 - bx0]
                wgt = weight[ty0 - by0 : ty1 - by0, tx0 - bx0 : tx1 - bx0]
                orig = out[ty0:ty1, tx0:tx1]
                new = filled[ty0 - wy0 : ty1 - wy0, tx0 - wx0 : tx1 - wx0]
                blended = orig.astype(np.float32) * (1.0 - wgt[..., None]) + new.astype(np.float32) * wgt[..., None]
                orig[sel] = np.clip(np.round(blended[sel]), 0, 255).astype(np.uint8)
                pending[ty0:ty1, tx0:tx1] -= sel.astype(np.uint8)
                stats.edited_px += int(sel.sum())
        entry: dict[str, Any] = {"crops": stats.crops - crops_before, "edited_px": int(grown.sum())}
        if len(stats.fills) > fills_before:
            entry["filled_with"] = "+".join(sorted({f for fill in stats.fills[fills_before:] for f in fill.split("+")}))
        stats.per_region.append(entry)
    return out, stats


def _clip(
    grown: npt.NDArray[np.bool_], weight: npt.NDArray[np.float32], box: Box, W: int, H: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32], Box]:
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    sl = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    return grown[sl], weight[sl], (cx0, cy0, cx1, cy1)


def window_around(target: Box, W: int, H: int, p: CropParams) -> Box:
    """A window ``context``× the target's extent (≥ ``min_window``), kept inside the photo."""
    tx0, ty0, tx1, ty1 = target
    extent = max(tx1 - tx0, ty1 - ty0)
    side = max(p.min_window, math.ceil(p.context * extent))
    ww, wh = min(W, side), min(H, side)
    cx, cy = (tx0 + tx1) / 2.0, (ty0 + ty1) / 2.0
    x0 = int(min(max(0, round(cx - ww / 2.0)), W - ww))
    y0 = int(min(max(0, round(cy - wh / 2.0)), H - wh))
    return x0, y0, x0 + ww, y0 + wh


def _fill_window(
    image: Image,
    pending: npt.NDArray[np.uint8],
    target: Box,
    *,
    inpainter: Inpainter,
    p: CropParams,
    stats: FillStats,
) -> tuple[Box, Image]:
    """Inpaint the pending pixels of a window around ``target``: (the window, its filled content)."""
    H, W = image.shape[:2]
    window = window_around(target, W, H, p)
    x0, y0, x1, y1 = window
    crop = image[y0:y1, x0:x1]
    mask = pending[y0:y1, x0:x1] > 0
    ch, cw = crop.shape[:2]
    scale = min(1.0, p.max_side / max(ch, cw))
    if scale < 1.0:
        size = (max(8, round(cw * scale)), max(8, round(ch * scale)))
        model_in = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        # Any coverage by the mask counts: the fill must reach every pending pixel.
        small = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
        model_mask = cv2.dilate(small.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        stats.downscaled_crops += 1
    else:
        model_in, model_mask = crop, mask
    result = _inpaint_padded(model_in, model_mask, inpainter, p.multiple, stats)
    if scale < 1.0:
        result = np.asarray(cv2.resize(result, (cw, ch), interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
    stats.crops += 1
    return window, result


def _inpaint_padded(
    crop: Image, mask: npt.NDArray[np.bool_], inpainter: Inpainter, multiple: int, stats: FillStats
) -> Image:
    """Pad ``crop`` to a multiple of ``multiple`` (reflect), inpaint, un-pad; unmasked pixels are kept."""
    h, w = crop.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        img = cv2.copyMakeBorder(crop, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
        # The mask is reflected with the photo: a wire that leaves the frame is masked in the padding
        # too, or its mirror image there would be context, and the fill would carry it back to the edge.
        m = np.pad(mask, ((0, ph), (0, pw)), mode="reflect")
    else:
        img, m = crop, mask
    m8 = m.astype(np.uint8)
    padded: Image = np.ascontiguousarray(img, dtype=np.uint8)
    fill_for = getattr(inpainter, "fill_for", None)
    chosen = fill_for(padded, m8) if fill_for is not None else None
    if chosen is not None:
        stats.fills.append(str(chosen))
    result = inpainter.inpaint(padded, m8)
    if result.shape != padded.shape or result.dtype != np.uint8:
        raise ValueError(f"inpainter {inpainter.name} returned {result.shape} {result.dtype} for {padded.shape} uint8")
    stats.model_px += int(padded.shape[0] * padded.shape[1])
    result = result[:h, :w]
    return np.where(mask[..., None], result, crop).astype(np.uint8)
