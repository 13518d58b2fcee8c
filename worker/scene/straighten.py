"""Measuring how far a photo is tilted: the rotation that levels its horizon or its verticals.

Line segments (LSD, von Gioi et al., IPOL 2012) are found on a grey copy of at most 1024 px
(phase 0 passes the copy it already made). Thin double-edged lines — power lines, cables, wires,
which run at any angle — are dropped. The rest vote in two families:

* near-vertical lines (building edges, door frames, poles). Tilting the camera up or down makes
  them converge, more the further they are from the centre, so their angle is fitted as
  ``roll + k·x`` (robust, weighted by length) and the roll is the intercept at the centre;
* near-horizontal lines (the horizon, a shoreline, a table edge): the length-weighted mode.

The estimate is *confident* only when the evidence is strong (enough line length agreeing,
families agreeing when both are present); a rotation is proposed only when it is also between
:data:`MIN_ROTATION_DEG` and :data:`MAX_ROTATION_DEG`. Otherwise the photo is to be left alone
and ``reason`` says why.

Phase 0 (:mod:`worker.phases.analysis`) measures it, on the working copy it has already made;
phase 4 (:mod:`worker.phases.composition`) acts on it.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from worker.imaging.resize import shrink

MIN_ROTATION_DEG = 0.3  # below this a tilt is invisible; leave the photo alone
MAX_ROTATION_DEG = 8.0  # beyond this the tilt is likely intended (a Dutch angle)
_SEARCH_DEG = 10.0  # lines within this of horizontal/vertical vote
# Confidence: agreeing vertical line length (in frame heights), the longest agreeing horizontal
# line and all agreeing horizontal length (in frame widths).
V_MIN_SUPPORT = 1.0
H_MIN_LONGEST = 0.3
H_MIN_SUPPORT = 0.5
WORK_EDGE = 1024
Pixels = npt.NDArray[Any]


def estimate_tilt(image: Pixels) -> dict[str, Any]:
    """The rotation (degrees, counter-clockwise) that levels ``image``, with the evidence.

    ``rotation_deg`` is 0 unless the estimate is confident and within the allowed range;
    ``estimate_deg`` is the raw estimate (None when there was nothing to measure).
    """
    return measure(cv2.cvtColor(shrink(image, WORK_EDGE), cv2.COLOR_RGB2GRAY))


def measure(grey: Pixels) -> dict[str, Any]:
    """:func:`estimate_tilt` on a grey copy of the photo (of at most :data:`WORK_EDGE` px: the
    thresholds are in fractions of the frame, but line detection is tuned for that size)."""
    h, w = grey.shape
    out: dict[str, Any] = {"rotation_deg": 0.0, "estimate_deg": None, "confident": False}
    if min(h, w) < 64:
        out["reason"] = "too small to measure"
        return out
    segments = _segments(grey)
    if segments.shape[0] == 0:
        out["reason"] = "no straight lines"
        return out
    vertical = _vertical_estimate(segments, w, h)
    horizontal = _horizontal_estimate(segments, w, h)
    out["vertical"], out["horizontal"] = vertical, horizontal
    estimate, reason = _decide(vertical, horizontal)
    if estimate is None:
        out["reason"] = reason
        return out
    out["estimate_deg"] = round(estimate, 2)
    out["confident"] = True
    if abs(estimate) < MIN_ROTATION_DEG:
        out["reason"] = f"already level (within {MIN_ROTATION_DEG}°)"
    elif abs(estimate) > MAX_ROTATION_DEG:
        out["reason"] = f"tilt over {MAX_ROTATION_DEG}° looks intended; left alone"
    else:
        out["rotation_deg"] = round(estimate, 2)
        out["reason"] = f"levelled by the {reason}"
    return out


def _segments(grey: Pixels) -> npt.NDArray[np.float64]:
    """LSD segments as rows (x0, y0, x1, y1, length, angle°), thin double-edged lines removed."""
    lsd = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD)
    found: Any = lsd.detect(grey)[0]  # None when there is no segment at all
    if found is None:
        return np.zeros((0, 6))
    lines = np.asarray(found, dtype=np.float64).reshape(-1, 4)
    dx, dy = lines[:, 2] - lines[:, 0], lines[:, 3] - lines[:, 1]
    length = np.hypot(dx, dy)
    angle = np.degrees(np.arctan2(dy, dx))  # LSD orients each segment by its gradient's polarity
    keep = length >= 0.03 * max(grey.shape)
    seg = np.column_stack([lines, length, angle])[keep]
    if seg.shape[0] == 0:
        return seg
    return seg[~_thin_lines(seg)]


def _thin_lines(seg: npt.NDArray[np.float64], max_gap: float = 6.0) -> npt.NDArray[np.bool_]:
    """Segments with a close, parallel partner of opposite polarity: both edges of a wire."""
    n = seg.shape[0]
    thin = np.zeros(n, dtype=bool)
    order = np.argsort(-seg[:, 4])[:400]  # the longest ones matter; bound the pairwise work
    s = seg[order]
    theta = np.radians(s[:, 5])
    ux, uy = np.cos(theta), np.sin(theta)
    mx, my = (s[:, 0] + s[:, 2]) / 2, (s[:, 1] + s[:, 3]) / 2
    # Opposite polarity: directions about 180° apart.
    opposite = (ux[:, None] * ux[None, :] + uy[:, None] * uy[None, :]) < -0.9996  # within ~1.6°
    # Perpendicular distance between the two lines, and overlap along them.
    perp = np.abs((mx[None, :] - mx[:, None]) * -uy[:, None] + (my[None, :] - my[:, None]) * ux[:, None])
    along = np.abs((mx[None, :] - mx[:, None]) * ux[:, None] + (my[None, :] - my[:, None]) * uy[:, None])
    overlap = along < (s[:, 4][:, None] + s[:, 4][None, :]) / 2
    pairs = opposite & (perp <= max_gap) & overlap
    np.fill_diagonal(pairs, False)
    thin[order[pairs.any(axis=1)]] = True
    return thin


def _deviation(angle: npt.NDArray[np.float64], vertical: bool) -> npt.NDArray[np.float64]:
    """Signed deviation (degrees) of undirected line angles from horizontal or vertical."""
    a = (angle + 90.0) % 180.0 - 90.0  # (-90, 90]
    if vertical:
        return np.where(a > 0, a - 90.0, a + 90.0)
    return a


def _vertical_estimate(seg: npt.NDArray[np.float64], w: int, h: int) -> dict[str, Any]:
    dev = _deviation(seg[:, 5], vertical=True)
    sel = np.abs(dev) <= _SEARCH_DEG
    if sel.sum() < 2:
        return {"lines": int(sel.sum()), "support": 0.0}
    d, length = dev[sel], seg[sel, 4]
    x = ((seg[sel, 0] + seg[sel, 2]) / 2 - w / 2) / w  # -0.5 … 0.5
    # Robust weighted fit d = roll + k·x (keystone), a few reweighting rounds.
    weight = length.copy()
    roll, slope = float(np.average(d, weights=weight)), 0.0
    for _ in range(5):
        A = np.column_stack([np.ones_like(x), x]) * np.sqrt(weight)[:, None]
        sol, *_ = np.linalg.lstsq(A, d * np.sqrt(weight), rcond=None)
        roll, slope = float(sol[0]), float(sol[1])
        resid = d - (roll + slope * x)
        weight = length * (np.abs(resid) <= 0.5)
        if weight.sum() == 0:
            break
    resid = d - (roll + slope * x)
    inliers = np.abs(resid) <= 0.5
    support = float(length[inliers].sum() / h)
    spread = float(np.sqrt(np.average(resid[inliers] ** 2, weights=length[inliers]))) if inliers.any() else 99.0
    return {
        "estimate": round(roll, 3),
        "lines": int(inliers.sum()),
        "support": round(support, 3),
        "keystone": round(slope, 3),
        "spread": round(spread, 3),
        "fraction": round(float(length[inliers].sum() / length.sum()), 3),
    }


def _horizontal_estimate(seg: npt.NDArray[np.float64], w: int, h: int) -> dict[str, Any]:
    dev = _deviation(seg[:, 5], vertical=False)
    sel = np.abs(dev) <= _SEARCH_DEG
    if not sel.any():
        return {"lines": 0, "support": 0.0}
    d, length = dev[sel], seg[sel, 4]
    grid = np.arange(-_SEARCH_DEG, _SEARCH_DEG + 1e-9, 0.02)
    weight = length**2  # long lines (a horizon) outvote many short ones
    density = (weight[None, :] * np.exp(-0.5 * ((grid[:, None] - d[None, :]) / 0.15) ** 2)).sum(axis=1)
    peak = float(grid[int(np.argmax(density))])
    near = np.abs(d - peak) <= 0.4
    estimate = float(np.average(d[near], weights=weight[near]))
    return {
        "estimate": round(estimate, 3),
        "lines": int(near.sum()),
        "support": round(float(length[near].sum() / w), 3),
        "longest": round(float(length[near].max() / w), 3),
        "fraction": round(float(weight[near].sum() / weight.sum()), 3),
    }


def _decide(vertical: dict[str, Any], horizontal: dict[str, Any]) -> tuple[float | None, str]:
    """The estimate to trust, and which lines it came from; None and why not otherwise."""
    v_ok = (
        vertical.get("lines", 0) >= 4
        and vertical.get("support", 0.0) >= V_MIN_SUPPORT
        and vertical.get("fraction", 0.0) >= 0.35
        and abs(vertical.get("keystone", 99.0)) <= 15.0
    )
    h_ok = (
        horizontal.get("longest", 0.0) >= H_MIN_LONGEST
        and horizontal.get("support", 0.0) >= H_MIN_SUPPORT
        and horizontal.get("fraction", 0.0) >= 0.5
    )
    if v_ok and h_ok:
        if abs(vertical["estimate"] - horizontal["estimate"]) <= 0.6:
            total = vertical["support"] + horizontal["support"]
            mixed = (
                vertical["estimate"] * vertical["support"] + horizontal["estimate"] * horizontal["support"]
            ) / total
            return mixed, "verticals and the horizon"
        return None, "vertical and horizontal lines disagree; left alone"
    if v_ok:
        return float(vertical["estimate"]), "verticals"
    if h_ok:
        # A receding railing or a staircase looks like a tilted horizon; a few consistent
        # verticals that disagree are enough to distrust it.
        weak_v = vertical.get("lines", 0) >= 3 and vertical.get("spread", 99.0) <= 0.5
        if weak_v and vertical.get("support", 0.0) >= 0.3 and abs(vertical["estimate"] - horizontal["estimate"]) > 0.5:
            return None, "the verticals disagree with the horizon; left alone"
        return float(horizontal["estimate"]), "horizon"
    return None, "not enough straight lines to be sure; left alone"
