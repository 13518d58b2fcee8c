"""Measuring how far a photo is tilted: the rotation that levels its horizon or its verticals.

Measured on a copy of at most 1024 px (phase 0 passes the grey and colour copies it already made),
from two kinds of evidence:

* **verticals** (building edges, door frames, poles, a rocket): LSD line segments (von Gioi et al.,
  IPOL 2012) within 20° of vertical, thin double-edged lines (wires, cables) dropped. Tilting the
  camera up or down makes verticals converge, so they vote for a *vanishing point*: each pair of
  the longest proposes one (possibly at infinity), the point most segment length points at wins
  and is refined on its inliers, and the roll is the angle from vertical of the line from the
  image centre to it;
* **the horizon** (a sea, a lake's far shore, flat land, a row of steps): edge pixels vote, by
  polarity, for straight near-horizontal lines (a Hough transform over angle and offset); the
  longest line whose two sides differ the same way all along it — in colour, so a grey sea under a
  grey sky still counts, while a wire, a cable or a painted court line, with the same thing on
  both sides, does not — and that no wire runs along is fitted by least squares.

The estimate is *confident* only when the evidence is strong: enough vertical length agreeing on
one vanishing point that is not too near (a steep ceiling shot is not a roll), or a horizon that
runs across the frame (≥ 80 % from first to last column), straight (≤ 0.6 px from its fit) and
through enough columns; and the two agree (within 0.6°) when both are present or the other is
nearly strong enough; or, both only half as strong, they agree within 0.3°. A rotation is proposed
only when it is also between
:data:`MIN_ROTATION_DEG` and :data:`MAX_ROTATION_DEG`. Otherwise the photo is to be left alone
and ``reason`` says why: portraits, foliage, rocks and animals have no such lines.

Phase 0 (:mod:`worker.phases.analysis`) measures it, on the working copies it has already made;
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
_SEARCH_DEG = 10.0  # lines within this of horizontal vote for the horizon
_V_SEARCH_DEG = 20.0  # segments within this of vertical vote for the vertical vanishing point
_V_INLIER_DEG = 0.5  # a segment points at a vanishing point when within this
_V_MAX_SEGMENTS = 120
_V_SIDEWAYS_DEG = 30.0  # "verticals" converging to a point this far to the side: a photo on its side
_H_BAND = 0.003  # of the long edge: the bands either side of a horizon start this far from it
_H_MIN_SIDES_DIFFER = 0.5  # share of its columns where they differ the same way
_H_CANDIDATES = 6
_H_STEP_DEG, _H_BIN_PX = 0.1, 2.0  # the vote's grid: angle, and offset on the working copy
_H_MIN_GRADIENT = 8.0  # Sobel response of a horizon pixel (a step of ~8 grey levels)
# Confidence: agreeing vertical line length (in frame heights), the longest agreeing horizontal
# line and all agreeing horizontal length (in frame widths).
V_MIN_SUPPORT = 0.9
V_MIN_LINES = 4
V_MIN_FRACTION = 0.35
V_MIN_VP_DISTANCE = 1.5  # verticals converging nearer than this (frame heights) are not upright lines
H_MIN_COVERAGE = 0.4  # of the frame's width: columns the horizon runs through
H_MIN_COVERAGE_STRAIGHT = 0.35  # … or this much, when it is very straight
H_STRAIGHT_RMS_PX = 0.5
H_MAX_RMS_PX = 0.6  # px from its fitted line, on the working copy
H_MIN_SPAN = 0.8  # of the frame's width, from its first column to its last
AGREE_DEG = 0.6
WORK_EDGE = 1024
Pixels = npt.NDArray[Any]


def estimate_tilt(image: Pixels) -> dict[str, Any]:
    """The rotation (degrees, counter-clockwise) that levels ``image``, with the evidence.

    ``rotation_deg`` is 0 unless the estimate is confident and within the allowed range;
    ``estimate_deg`` is the raw estimate (None when there was nothing to measure).
    """
    small = shrink(image, WORK_EDGE)
    return measure(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), small)


def measure(grey: Pixels, colour: Pixels | None = None) -> dict[str, Any]:
    """:func:`estimate_tilt` on a grey copy of the photo (of at most :data:`WORK_EDGE` px: the
    thresholds are in fractions of the frame, but line detection is tuned for that size)."""
    h, w = grey.shape
    out: dict[str, Any] = {"rotation_deg": 0.0, "estimate_deg": None, "confident": False}
    if min(h, w) < 64:
        out["reason"] = "too small to measure"
        return out
    segments, wires = _segments(grey)
    vertical = _vertical_estimate(segments, w, h)
    horizontal = _horizon_estimate(grey, wires, colour)
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


def _segments(grey: Pixels) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """LSD segments as rows (x0, y0, x1, y1, length, angle°): those that are not, and those that
    are, one edge of a thin double-edged line (a wire, a cable)."""
    lsd = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD)
    found: Any = lsd.detect(grey)[0]  # None when there is no segment at all
    if found is None:
        return np.zeros((0, 6)), np.zeros((0, 6))
    lines = np.asarray(found, dtype=np.float64).reshape(-1, 4)
    dx, dy = lines[:, 2] - lines[:, 0], lines[:, 3] - lines[:, 1]
    length = np.hypot(dx, dy)
    angle = np.degrees(np.arctan2(dy, dx))  # LSD orients each segment by its gradient's polarity
    keep = length >= 0.03 * max(grey.shape)
    seg = np.column_stack([lines, length, angle])[keep]
    thin = _thin_lines(seg) if seg.shape[0] else np.zeros(0, dtype=bool)
    return seg[~thin], seg[thin]


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
    """The vertical vanishing point by consensus of near-vertical segments, and the roll it gives.

    Each pair of the longest near-vertical segments proposes a vanishing point (their lines'
    intersection, possibly at infinity); the one that the most segment length points at (within
    :data:`_V_INLIER_DEG`) wins and is refined on its inliers. The roll is the angle, from vertical,
    of the line from the image centre to that point: on an upright camera tilted up or down the
    verticals converge towards a point straight above or below the centre.
    """
    dev = _deviation(seg[:, 5], vertical=True)
    sel = np.abs(dev) <= _V_SEARCH_DEG
    if sel.sum() < 2:
        return {"lines": int(sel.sum()), "support": 0.0}
    s = seg[sel]
    s = s[np.argsort(-s[:, 4])][:_V_MAX_SEGMENTS]
    scale = float(max(w, h))
    p0 = np.column_stack([(s[:, 0] - w / 2) / scale, (s[:, 1] - h / 2) / scale, np.ones(len(s))])
    p1 = np.column_stack([(s[:, 2] - w / 2) / scale, (s[:, 3] - h / 2) / scale, np.ones(len(s))])
    lines = np.cross(p0, p1)
    lines /= np.linalg.norm(lines[:, :2], axis=1, keepdims=True)
    mid = (p0[:, :2] + p1[:, :2]) / 2
    direction = p1[:, :2] - p0[:, :2]
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    length = s[:, 4]
    n = len(s)
    i, j = np.triu_indices(min(n, 30), k=1)
    candidates = np.cross(lines[i], lines[j])
    candidates = np.vstack([candidates, [[0.0, 1.0, 0.0]]])  # verticals all parallel
    norms = np.linalg.norm(candidates, axis=1)
    candidates = candidates[norms > 1e-12] / norms[norms > 1e-12, None]
    errors = _pointing_error(candidates, mid, direction)  # candidates × segments, degrees
    scores = (length[None, :] * (errors <= _V_INLIER_DEG)).sum(axis=1)
    best = candidates[int(np.argmax(scores))]
    inliers = _pointing_error(best[None, :], mid, direction)[0] <= _V_INLIER_DEG
    if inliers.sum() >= 2:  # refine: the point closest to all inlier lines, weighted by length
        weighted = lines[inliers] * np.sqrt(length[inliers])[:, None]
        best = np.linalg.svd(weighted)[2][-1]
        inliers = _pointing_error(best[None, :], mid, direction)[0] <= _V_INLIER_DEG
    vx, vy, vz = best
    if abs(vz) > 1e-9:
        vx, vy = vx / vz, vy / vz
        distance = float(np.hypot(vx, vy))
    else:
        distance = float("inf")
    roll = float(_deviation(np.array([np.degrees(np.arctan2(vy, vx))]), vertical=True)[0])
    support = float(length[inliers].sum() / h)
    x_spread = float(np.ptp(mid[inliers, 0]) * scale / w) if inliers.any() else 0.0
    return {
        "estimate": round(roll, 3),
        "lines": int(inliers.sum()),
        "support": round(support, 3),
        "fraction": round(float(length[inliers].sum() / length.sum()), 3),
        "vp_distance": round(distance * scale / h, 2) if np.isfinite(distance) else None,
        "x_spread": round(x_spread, 3),
    }


def _pointing_error(
    points: npt.NDArray[np.float64], mid: npt.NDArray[np.float64], direction: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Angle (degrees) between each segment and the line from its midpoint to each point (homogeneous)."""
    to = points[:, None, :2] - mid[None, :, :] * points[:, None, 2:3]  # direction towards the point, sign free
    norm = np.linalg.norm(to, axis=2)
    cos = np.abs((to * direction[None, :, :]).sum(axis=2)) / np.maximum(norm, 1e-12)
    return np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))


def _horizon_estimate(grey: Pixels, wires: npt.NDArray[np.float64], colour: Pixels | None = None) -> dict[str, Any]:
    """The longest straight near-horizontal boundary between two regions, the same change all along.

    Edge pixels (a local maximum of the vertical gradient down their column, oriented within
    :data:`_SEARCH_DEG` of horizontal) vote, by polarity, for lines at each angle of a grid. The
    lines crossing the most columns are tried in turn: the first whose two sides differ the same
    way along most of it (a wire or a painted line has the same brightness on both sides) is
    refined by a least-squares fit to its pixels. A line that runs along ``wires`` (thin
    double-edged LSD segments) is skipped. ``coverage`` is the fraction of the frame's
    width it runs through.
    """
    h, w = grey.shape
    g = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    mag = np.abs(gy)
    peak = np.zeros_like(mag, dtype=bool)
    peak[1:-1] = (mag[1:-1] >= mag[:-2]) & (mag[1:-1] > mag[2:])
    edge = peak & (mag >= _H_MIN_GRADIENT) & (np.abs(gx) <= np.tan(np.radians(_SEARCH_DEG + 2)) * mag)
    edge[:, :2] = edge[:, -2:] = False
    ys, xs = np.nonzero(edge)
    if len(xs) < 0.2 * w:
        return {"coverage": 0.0}
    polarity = (gy[ys, xs] > 0).astype(np.int32)
    xf, yf = xs.astype(np.float64), ys.astype(np.float64)
    x32, y32 = xs.astype(np.float32), ys.astype(np.float32)
    reach = int(np.ceil((h + w) / _H_BIN_PX)) + 2
    found: list[tuple[int, float, float, int]] = []  # (columns, angle, offset, polarity)
    for theta in np.arange(-_SEARCH_DEG, _SEARCH_DEG + 1e-9, _H_STEP_DEG):
        t = np.radians(theta)
        rho = y32 * np.float32(np.cos(t) / _H_BIN_PX) - x32 * np.float32(np.sin(t) / _H_BIN_PX)
        index = (rho + np.float32(reach // 2 + 0.5)).astype(np.int32) * 2 + polarity
        counts = np.bincount(index, minlength=reach * 2 + 2)
        for k in np.argpartition(counts, -3)[-3:]:
            found.append((int(counts[k]), float(theta), float((k // 2 - reach // 2) * _H_BIN_PX), int(k % 2)))
    found.sort(reverse=True)
    tried: list[tuple[float, float]] = []
    for count, angle, offset, pol in found:
        if count < H_MIN_COVERAGE / 2 * w or len(tried) >= _H_CANDIDATES:
            break
        if any(abs(angle - t0) < 1.0 and abs(offset - r0) < 3 * _H_BIN_PX for t0, r0 in tried):
            continue
        tried.append((angle, offset))
        line = _fit_line(xf, yf, polarity == pol, angle=angle, offset=offset)
        if line is None:
            continue
        a, b, x, rms = line
        if (
            _sides_differ(colour if colour is not None else g, a, b, x) < _H_MIN_SIDES_DIFFER
            or _along_wires(wires, a, b, w) >= 0.25
        ):
            continue
        columns = np.unique(np.round(x).astype(np.int64))
        return {
            "estimate": round(float(np.degrees(np.arctan(a))), 3),
            "coverage": round(len(columns) / w, 3),
            "span": round(float(np.ptp(x)) / w, 3),
            "height": round(float(a * w / 2 + b) / h, 3),
            "rms_px": round(rms, 3),
        }
    return {"coverage": 0.0}


def _fit_line(
    xf: npt.NDArray[np.float64],
    yf: npt.NDArray[np.float64],
    selected: npt.NDArray[np.bool_],
    *,
    angle: float,
    offset: float,
) -> tuple[float, float, npt.NDArray[np.float64], float] | None:
    """``y = a·x + b`` fitted to the ``selected`` edge pixels near a voted line (``angle`` in degrees,
    ``offset`` in px), their x, and the fit's RMS residual in px."""
    t = np.radians(angle)
    near = (np.abs(yf * np.cos(t) - xf * np.sin(t) - offset) <= 2.5) & selected
    if near.sum() < 10:
        return None
    x, y = xf[near], yf[near]
    for _ in range(3):  # drop the pixels far from the fit
        a, b = np.polyfit(x, y, 1)
        keep = np.abs(y - (a * x + b)) <= 1.2
        if keep.sum() < 10:
            return None
        x, y = x[keep], y[keep]
    a, b = np.polyfit(x, y, 1)
    return float(a), float(b), x, float(np.sqrt(np.mean((y - (a * x + b)) ** 2)))


def _along_wires(wires: npt.NDArray[np.float64], a: float, b: float, w: int) -> float:
    """How much of the frame's width ``wires`` cover within 4 px and 1° of the line ``y = a·x + b``."""
    if wires.shape[0] == 0:
        return 0.0
    mx, my = (wires[:, 0] + wires[:, 2]) / 2, (wires[:, 1] + wires[:, 3]) / 2
    off = np.abs(my - (a * mx + b))
    turn = np.abs(_deviation(wires[:, 5], vertical=False) - np.degrees(np.arctan(a)))
    along = (off <= 4.0) & (turn <= 1.0)
    return float(np.abs(wires[along, 2] - wires[along, 0]).sum() / w)


def _sides_differ(image: Pixels, a: float, b: float, x: npt.NDArray[np.float64]) -> float:
    """The share of the line's columns where the bands just below and just above it differ (by at
    least 3 levels, in colour when ``image`` has it) the way they differ along most of the line,
    and so do the bands beyond those: a boundary between two regions, not a wire, a cable or a
    painted line (a sea horizon the same grey as the sky is still another colour)."""
    h, w = image.shape[:2]
    pixels = image.reshape(h, w, -1).astype(np.float32)
    cols = np.round(x).astype(np.int64)[:, None]
    y = (a * x + b)[:, None]
    near = max(2, round(_H_BAND * max(h, w)))
    agree = np.ones(len(x), dtype=bool)
    for start in (near, 3 * near):
        offsets = np.arange(start, 3 * start)[None, :]
        above = pixels[np.clip(np.round(y - offsets).astype(np.int64), 0, h - 1), cols].mean(axis=1)
        below = pixels[np.clip(np.round(y + offsets).astype(np.int64), 0, h - 1), cols].mean(axis=1)
        diff = below - above  # columns × channels
        typical = np.median(diff, axis=0)
        size = np.linalg.norm(diff, axis=1)
        same_way = (diff @ typical) >= 0.5 * size * max(float(np.linalg.norm(typical)), 1e-6)
        agree &= (size >= 3.0) & same_way
    return float(np.mean(agree))


def _decide(vertical: dict[str, Any], horizontal: dict[str, Any]) -> tuple[float | None, str]:
    """The estimate to trust, and which lines it came from; None and why not otherwise."""
    v_ok = (
        vertical.get("lines", 0) >= V_MIN_LINES
        and vertical.get("support", 0.0) >= V_MIN_SUPPORT
        and vertical.get("fraction", 0.0) >= V_MIN_FRACTION
        and (vertical.get("vp_distance") is None or vertical["vp_distance"] >= V_MIN_VP_DISTANCE)
    )
    # A horizon runs from one side of the frame to the other (however much is hidden between),
    # and is straight; an edge that stops short may be a wall receding in perspective.
    coverage, rms = horizontal.get("coverage", 0.0), horizontal.get("rms_px", 99.0)
    across = horizontal.get("span", 0.0) >= H_MIN_SPAN and rms <= H_MAX_RMS_PX
    h_ok = across and (coverage >= H_MIN_COVERAGE or (coverage >= H_MIN_COVERAGE_STRAIGHT and rms <= H_STRAIGHT_RMS_PX))
    h_some = across and coverage >= H_MIN_COVERAGE / 2
    v_some = (
        vertical.get("lines", 0) >= 3
        and vertical.get("support", 0.0) >= V_MIN_SUPPORT / 2
        and vertical.get("fraction", 0.0) >= V_MIN_FRACTION
    )
    if vertical.get("lines", 0) >= V_MIN_LINES and abs(vertical.get("estimate", 0.0)) > _V_SIDEWAYS_DEG:
        return None, "the near-vertical lines converge steeply (a photo on its side?); left alone"
    if v_ok and h_ok:
        if abs(vertical["estimate"] - horizontal["estimate"]) <= AGREE_DEG:
            return (vertical["estimate"] + horizontal["estimate"]) / 2, "verticals and the horizon"
        return None, "vertical and horizontal lines disagree; left alone"
    if v_ok:
        if h_some and abs(vertical["estimate"] - horizontal["estimate"]) > AGREE_DEG:
            return None, "a long horizontal line disagrees with the verticals; left alone"
        return float(vertical["estimate"]), "verticals"
    if h_ok:
        # A receding railing or a staircase looks like a tilted horizon; a few consistent
        # verticals that disagree are enough to distrust it.
        if v_some and abs(vertical["estimate"] - horizontal["estimate"]) > AGREE_DEG:
            return None, "the verticals disagree with the horizon; left alone"
        return float(horizontal["estimate"]), "horizon"
    # Neither is strong enough alone, but two independent kinds of evidence that agree closely are.
    v_fair = (
        vertical.get("lines", 0) >= V_MIN_LINES
        and vertical.get("support", 0.0) >= V_MIN_SUPPORT / 2
        and vertical.get("fraction", 0.0) >= 0.25
        and (vertical.get("vp_distance") is None or vertical["vp_distance"] >= V_MIN_VP_DISTANCE)
    )
    h_fair = horizontal.get("span", 0.0) >= 0.6 and coverage >= 0.3 and rms <= H_MAX_RMS_PX
    if v_fair and h_fair and abs(vertical["estimate"] - horizontal["estimate"]) <= AGREE_DEG / 2:
        return (vertical["estimate"] + horizontal["estimate"]) / 2, "verticals and the horizon together"
    return None, "not enough straight lines to be sure; left alone"
