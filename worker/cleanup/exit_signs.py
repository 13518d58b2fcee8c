"""Lit EXIT signs: small, bright, saturated green (or red) rectangles, about 2–3:1.

Method (classical; a few ms on the shared working copy):

1. *Lit colour*: pixels of the sign's hue (green; red too at ``aggressive``) that are both
   saturated and bright. A lit sign's letters are often blown out to near white, so bright
   pixels touching the coloured ones join them (a small closing).
2. Connected regions of that mask are candidates. Each is measured on its minimum-area
   rectangle, so a sign seen at an angle, or a photo stored sideways, is measured the same:
   aspect of the rectangle (long ÷ short side), how much of the rectangle it fills, its size
   relative to the frame, how saturated and bright it is, and how much brighter it is than a
   ring of wall around it (a lit sign glows; a green shirt or a lawn does not).
3. Every test of the profile's ``cleanup_level`` (:data:`LEVELS`) must hold.
4. The mask is the rectangle grown by a margin (the sign's housing and its glow), drawn at
   full resolution.

The output is one :class:`~worker.cleanup.region.Region` per sign (kind ``exit_sign``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from worker.cleanup.region import Region, crop_to_mask
from worker.cleanup.working import WorkingImage

HueRange = tuple[int, int]
GREEN: tuple[HueRange, ...] = ((40, 95),)  # OpenCV hue units (0–179): 80°–190°
RED: tuple[HueRange, ...] = ((0, 8), (172, 179))


@dataclass(frozen=True)
class SignParams:
    hues: tuple[HueRange, ...] = GREEN
    min_sat: int = 90  # 0–255
    min_value: int = 130  # 0–255
    min_area: float = 1.5e-4  # fraction of the frame (a 24 MP frame: ~3,600 px; 360×640: ~35 px)
    max_area: float = 0.02
    min_side_px: float = 4.0  # shortest side of the rectangle, working px
    aspect: tuple[float, float] = (1.25, 4.0)  # long ÷ short side of the minimum-area rectangle
    min_fill: float = 0.3  # of the rectangle covered by the lit colour
    green_hue: tuple[float, float] = (60.0, 88.0)  # median hue of a green sign: LED exit green is ~120–175°
    min_median_sat: int = 150
    min_median_value: int = 140
    min_glow: float = 45.0  # grey levels brighter than the ring around it
    red_min_sat: int = 200  # red signs (aggressive only) must be this saturated…
    red_min_glow: float = 70.0  # …and glow this much
    margin: float = 0.3  # the mask grows the rectangle by this fraction of its short side on each side
    glow_reach: float = 0.8  # the tinted glow around it is taken up to this × its short side further
    glow_min_sat: int = 45
    min_score: float = 0.4


LEVELS: dict[str, SignParams] = {
    "conservative": SignParams(),
    "moderate": SignParams(
        min_area=1e-4, green_hue=(55.0, 92.0), min_median_sat=130, min_glow=30.0, min_median_value=130
    ),
    # Aggressive adds red signs, held to stricter colour and glow tests than green (red is common in
    # a wedding: dresses, flowers, carpets, lips).
    "aggressive": SignParams(
        hues=GREEN + RED,
        min_area=1e-4,
        green_hue=(55.0, 92.0),
        min_median_sat=130,
        min_median_value=130,
        min_glow=30.0,
        red_min_sat=200,
        red_min_glow=70.0,
    ),
}


@dataclass
class Sign:
    """A sign candidate at working resolution."""

    rect: tuple[tuple[float, float], tuple[float, float], float]  # cv2.minAreaRect: centre, size, angle
    area: float  # fraction of the frame
    aspect: float
    fill: float
    saturation: float
    value: float
    glow: float
    colour: str
    hue: float
    ring_sat: float
    score: float = 0.0
    rejected: list[str] = field(default_factory=list)

    def measurements(self) -> dict[str, Any]:
        return {
            "colour": self.colour,
            "aspect": round(self.aspect, 2),
            "fill": round(self.fill, 2),
            "glow": round(self.glow, 1),
        }


def detect_exit_signs(work: WorkingImage, level: str = "conservative", *, keep_rejected: bool = False) -> list[Sign]:
    """Signs in ``work`` that pass every test of ``level``; with ``keep_rejected``, the others too."""
    p = LEVELS[level]
    hsv = work.hsv
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    h, w = work.shape
    frame_area = float(h * w)
    out: list[Sign] = []
    for name, ranges in (("green", GREEN), ("red", RED)):
        wanted = tuple(r for r in ranges if r in p.hues)
        if not wanted:
            continue
        in_hue = np.zeros((h, w), bool)
        for lo, hi in wanted:
            in_hue |= (hue >= lo) & (hue <= hi)
        lit = (in_hue & (sat >= p.min_sat) & (val >= p.min_value)).astype(np.uint8)
        if not lit.any():
            continue
        # Blown-out letters: near-white pixels touching the coloured face belong to it.
        grown = np.asarray(cv2.dilate(lit, np.ones((3, 3), np.uint8)), dtype=np.uint8)
        lit = lit | (grown & (val >= 220)).astype(np.uint8)
        lit = np.asarray(cv2.morphologyEx(lit, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)), dtype=np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(lit, connectivity=8)
        for i in range(1, n):
            area = stats[i, cv2.CC_STAT_AREA]
            if area < max(6.0, 0.3 * p.min_area * frame_area) or area > 2 * p.max_area * frame_area:
                continue
            sign = _measure(
                np.asarray(labels, dtype=np.int32),
                i,
                stat=np.asarray(stats[i], dtype=np.int32),
                hsv=hsv,
                colour=name,
                frame_area=frame_area,
                p=p,
            )
            if keep_rejected or not sign.rejected:
                out.append(sign)
    return out


def sign_regions(work: WorkingImage, signs: list[Sign], level: str = "conservative") -> list[Region]:
    """One full-resolution :class:`Region` per sign: its rectangle grown by the level's margin, plus
    the coloured glow the sign casts on the wall right around it."""
    p = LEVELS[level]
    H, W = work.full_shape
    regions: list[Region] = []
    for sign in signs:
        (cx, cy), (sw, sh), angle = sign.rect
        grow = 2.0 * (p.margin * min(sw, sh) + 1.0)
        rect = ((cx, cy), (sw + grow, sh + grow), angle)
        corners = cv2.boxPoints(rect).astype(np.float64)
        glow = _glow(work, sign, corners, p)
        corners_full = work.to_full(corners)
        x0 = max(0, math.floor(corners_full[:, 0].min()) - 1)
        y0 = max(0, math.floor(corners_full[:, 1].min()) - 1)
        x1 = min(W, math.ceil(corners_full[:, 0].max()) + 2)
        y1 = min(H, math.ceil(corners_full[:, 1].max()) + 2)
        if glow is not None:
            (gx0, gy0, gx1, gy1), _ = glow
            x0, y0 = min(x0, gx0), min(y0, gy0)
            x1, y1 = max(x1, gx1), max(y1, gy1)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, np.round(corners_full - [x0, y0]).astype(np.int32), 1)
        if glow is not None:
            (gx0, gy0, gx1, gy1), gmask = glow
            mask[gy0 - y0 : gy1 - y0, gx0 - x0 : gx1 - x0] |= gmask
        region = crop_to_mask("exit_sign", mask.astype(bool), (x0, y0), sign.score, sign.measurements())
        if region is not None:
            regions.append(region)
    return regions


def _glow(
    work: WorkingImage, sign: Sign, corners: npt.NDArray[np.float64], p: SignParams
) -> tuple[tuple[int, int, int, int], npt.NDArray[np.uint8]] | None:
    """The sign's coloured light on the wall: tinted pixels touching the grown rectangle, within
    ``glow_reach`` × its short side (full-resolution box and mask), or None."""
    (_, _), (sw, sh), _ = sign.rect
    reach = max(2, round(p.glow_reach * min(sw, sh)))
    h, w = work.shape
    x0 = max(0, math.floor(corners[:, 0].min()) - reach)
    y0 = max(0, math.floor(corners[:, 1].min()) - reach)
    x1 = min(w, math.ceil(corners[:, 0].max()) + reach + 1)
    y1 = min(h, math.ceil(corners[:, 1].max()) + reach + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    hsv = work.hsv[y0:y1, x0:x1]
    ranges = GREEN if sign.colour == "green" else RED
    tinted = np.zeros(hsv.shape[:2], bool)
    for lo, hi in ranges:
        tinted |= (hsv[..., 0] >= lo) & (hsv[..., 0] <= hi)
    tinted &= hsv[..., 1] >= p.glow_min_sat
    rect = np.zeros(hsv.shape[:2], np.uint8)
    cv2.fillConvexPoly(rect, np.round(corners - [x0, y0]).astype(np.int32), 1)
    # Grow from the rectangle through tinted pixels only, at most ``reach`` steps.
    region = rect.copy()
    step = np.ones((3, 3), np.uint8)
    for _ in range(reach):
        region = np.asarray(cv2.dilate(region, step), dtype=np.uint8) & (tinted | rect.astype(bool)).astype(np.uint8)
    region = np.asarray(cv2.morphologyEx(region, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)), dtype=np.uint8)
    if not region.any():
        return None
    fx0, fy0 = (round(v) for v in work.to_full(np.array([[x0 - 0.5, y0 - 0.5]]))[0] + 0.5)
    fx1, fy1 = (round(v) for v in work.to_full(np.array([[x1 - 0.5, y1 - 0.5]]))[0] + 0.5)
    H, W = work.full_shape
    fx0, fy0, fx1, fy1 = max(0, fx0), max(0, fy0), min(W, fx1), min(H, fy1)
    if fx1 <= fx0 or fy1 <= fy0:
        return None
    full = cv2.resize(region, (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_NEAREST)
    return (fx0, fy0, fx1, fy1), full.astype(np.uint8)


def _measure(
    labels: npt.NDArray[np.int32],
    index: int,
    *,
    stat: npt.NDArray[np.int32],
    hsv: npt.NDArray[np.uint8],
    colour: str,
    frame_area: float,
    p: SignParams,
) -> Sign:
    x, y, bw, bh, area = (int(v) for v in stat)
    h, w = labels.shape
    pad = max(bw, bh)
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(w, x + bw + pad), min(h, y + bh + pad)
    part = labels[y0:y1, x0:x1] == index
    ys, xs = np.nonzero(part)
    pts = np.stack([xs + x0, ys + y0], axis=1).astype(np.float32)
    rect = cv2.minAreaRect(pts)
    (_, _), (rw, rh), _ = rect
    rw, rh = max(rw, 1.0), max(rh, 1.0)
    long_side, short_side = max(rw, rh), min(rw, rh)
    aspect = long_side / short_side
    fill = area / (rw * rh)
    local = hsv[y0:y1, x0:x1]
    sat = float(np.median(local[..., 1][part]))
    val = float(np.median(local[..., 2][part]))
    # The ring of wall around the sign: within one short side of it, outside a small gap.
    near = cv2.dilate(part.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(2, round(short_side)))
    gap = cv2.dilate(part.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
    ring = near.astype(bool) & ~gap.astype(bool)
    ring_val = float(np.median(local[..., 2][ring])) if ring.any() else 255.0
    ring_sat = float(np.median(local[..., 1][ring])) if ring.any() else 255.0
    glow = val - ring_val
    hue_med = float(np.median(local[..., 0][part]))
    sign = Sign(
        rect=((float(rect[0][0]), float(rect[0][1])), (float(rw), float(rh)), float(rect[2])),
        area=area / frame_area,
        aspect=aspect,
        fill=fill,
        saturation=sat,
        value=val,
        glow=glow,
        colour=colour,
        hue=hue_med,
        ring_sat=ring_sat,
    )
    checks = {
        "area": p.min_area <= sign.area <= p.max_area,
        "size": short_side >= p.min_side_px,
        "aspect": p.aspect[0] <= aspect <= p.aspect[1],
        "fill": fill >= p.min_fill,
        "hue": colour != "green" or p.green_hue[0] <= hue_med <= p.green_hue[1],
        "saturation": sat >= (p.min_median_sat if colour == "green" else p.red_min_sat),
        "value": val >= p.min_median_value,
        "glow": glow >= (p.min_glow if colour == "green" else p.red_min_glow),
    }
    sign.rejected = [name for name, ok in checks.items() if not ok]
    sign.score = _score(sign, p)
    if not sign.rejected and sign.score < p.min_score:
        sign.rejected.append("score")
    return sign


def _score(sign: Sign, p: SignParams) -> float:
    def ramp(x: float, lo: float, hi: float) -> float:
        return float(min(1.0, max(0.0, (x - lo) / (hi - lo)))) if hi > lo else 1.0

    parts = [
        ramp(sign.fill, p.min_fill * 0.5, 0.8),
        ramp(sign.saturation, p.min_median_sat * 0.7, 200.0),
        ramp(sign.value, p.min_median_value * 0.7, 240.0),
        ramp(sign.glow, p.min_glow * 0.5, p.min_glow * 3.0),
        1.0 - ramp(abs(math.log(sign.aspect / 2.4)), 0.4, 1.0),
    ]
    return float(np.prod(parts) ** (1.0 / len(parts)))
