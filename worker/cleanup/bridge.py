"""Straight lines and edges continued across a hole: a ceiling grid's lines, a door frame, a brick course.

A patch fill copies texture well but rarely carries a thin line across a hole much wider than its
patches. So before it runs, every straight edge that enters the hole **and comes out on the other
side, the same** is drawn through it:

1. Line segments (LSD, in OpenCV) in the crop, outside the hole, that end at the hole and point
   into it, at least ``min_length`` long.
2. Each is extended along its own direction through the hole to where it comes out, and kept only
   if the same line is seen there: another such segment ends where it comes out, within 6° of it
   and ``max_shift`` + 1 px of its line; and across the line, the profile just before the hole and
   the one just after it (grey levels over ``±half_width`` px, averaged over ``profile_px`` along
   the line) correlate (≥ ``min_corr``, the far one shifted by ≤ ``max_shift`` px to allow for the
   segment's angle), with contrast, the same contrast (within 2×) and the same level. A line that
   ends under the hole, or a soft edge of a cloud that merely looks alike, is left to the fill.
3. The band of ``±half_width`` px around the bridge is filled along the line: each row (a fixed
   distance from the line) interpolates linearly between its known pixels on either side. Any
   profile — a thin dark line, a double rail, a step from wall to ceiling — goes on unchanged,
   its colour blending from one end to the other.

The band's pixels are then part of the context of the patch fill (never its sources).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from worker.frame import Image

Floats = npt.NDArray[np.float32]
PARALLEL_COS = float(np.cos(np.deg2rad(6.0)))  # segments on both sides of the hole within 6° of one another
Point = tuple[float, float]  # x, y


@dataclass(frozen=True)
class BridgeParams:
    min_length: float = 10.0  # px: LSD segments shorter than this are not lines
    near_px: float = 4.0  # a segment must end within this of the hole
    half_width: int = 4  # px either side of a bridged line that are drawn
    profile_px: int = 6  # px along the line averaged into each side's profile
    min_corr: float = 0.8  # the two sides' profiles must correlate this well…
    min_contrast: float = 4.0  # …and vary by this much (grey levels, standard deviation)
    max_shift: int = 3  # px: the far side's profile may be this far off the extended segment
    max_bridges: int = 32


@dataclass(frozen=True)
class Bridge:
    a: Point  # last known point before the hole, on the line
    b: Point  # first known point after it
    corr: float


def bridge_lines(
    image: Image, mask: npt.NDArray[np.bool_], params: BridgeParams | None = None
) -> tuple[Floats, npt.NDArray[np.bool_], list[Bridge]]:
    """(the image with the bridged bands drawn in, float; which hole pixels they set; the bridges)."""
    p = params or BridgeParams()
    out = image.astype(np.float32)
    drawn = np.zeros(mask.shape, bool)
    if not mask.any() or mask.all():
        return out, drawn, []
    # Where bridges cross, each pixel takes the one that departs most from a smooth fill (Telea):
    # the line, not the plain background another bridge carries there.
    smooth = np.asarray(cv2.inpaint(np.ascontiguousarray(image), mask.astype(np.uint8), 3, cv2.INPAINT_TELEA), np.uint8)
    found = find_bridges(smooth, mask, p)
    base = smooth.astype(np.float32)
    best = np.full(mask.shape, -1.0, np.float32)
    for bridge in found:
        ys, xs, values = _draw(out, mask, bridge, p)
        strength = np.abs(values - base[ys, xs]).sum(axis=1)
        take = strength > best[ys, xs]
        out[ys[take], xs[take]] = values[take]
        best[ys[take], xs[take]] = strength[take]
        drawn[ys, xs] = True
    return out, drawn, found


def find_bridges(smooth: Image, mask: npt.NDArray[np.bool_], p: BridgeParams) -> list[Bridge]:
    """The bridges, best first. ``smooth``: the image with the hole smoothed over (Telea), so that
    segments stop at the hole whatever it held."""
    m8 = mask.astype(np.uint8)
    grey = cv2.cvtColor(smooth, cv2.COLOR_RGB2GRAY)
    to_hole = np.asarray(cv2.distanceTransform(1 - m8, cv2.DIST_L2, 3), np.float32)
    detected = cv2.createLineSegmentDetector().detect(grey)[0]
    lines = np.zeros((0, 4)) if detected is None else np.asarray(detected, np.float64).reshape(-1, 4)
    grey_f = grey.astype(np.float32)
    # Segments that end at the hole and point into it: (near end, unit direction into the hole).
    ends: list[tuple[Point, Point]] = []
    for x1, y1, x2, y2 in lines:
        length = float(np.hypot(x2 - x1, y2 - y1))
        if length < p.min_length:
            continue
        d1, d2 = _at(to_hole, x1, y1), _at(to_hole, x2, y2)
        if min(d1, d2) > p.near_px or _at(to_hole, (x1 + x2) / 2, (y1 + y2) / 2) <= 0:
            continue
        (fx, fy), (nx, ny) = ((x1, y1), (x2, y2)) if d2 <= d1 else ((x2, y2), (x1, y1))
        ends.append(((nx, ny), ((nx - fx) / length, (ny - fy) / length)))
    found: list[Bridge] = []
    for k, (near, u) in enumerate(ends):
        chord = _through(mask, near, u, p.near_px)
        if chord is None:
            continue
        a, b = chord
        # Evidence on the far side too: a segment there, ending at the hole, along the same line.
        if not any(j != k and _continues(a, b, u, other, p) for j, other in enumerate(ends)):
            continue
        bridge = _verify(grey_f, mask, a, b, p)
        if bridge is not None and not any(_same(bridge, other) for other in found):
            found.append(bridge)
    found.sort(key=lambda br: -br.corr)
    return found[: p.max_bridges]


def _continues(a: Point, b: Point, u: Point, other: tuple[Point, Point], p: BridgeParams) -> bool:
    """Whether ``other`` (near end, direction) is the same line seen beyond the hole: it ends near
    ``b``, points back into the hole (opposite to ``u``) and lies on the line from ``a`` to ``b``."""
    (ox, oy), (vx, vy) = other
    if np.hypot(ox - b[0], oy - b[1]) > p.near_px + 2 * p.max_shift:
        return False
    if u[0] * vx + u[1] * vy > -PARALLEL_COS:
        return False
    length = np.hypot(b[0] - a[0], b[1] - a[1]) + 1e-9
    off = abs((b[0] - a[0]) * (a[1] - oy) - (a[0] - ox) * (b[1] - a[1])) / length
    return bool(off <= p.max_shift + 1.0)


def _at(arr: npt.NDArray[np.float32], x: float, y: float) -> float:
    h, w = arr.shape
    return float(arr[min(h - 1, max(0, round(y))), min(w - 1, max(0, round(x)))])


def _through(mask: npt.NDArray[np.bool_], start: Point, u: Point, near_px: float) -> tuple[Point, Point] | None:
    """Along ``u`` from ``start``: (last known point before the hole, first known point after it)."""
    h, w = mask.shape
    step = 0.5
    n = int(2 * (h + w) / step)
    s = np.arange(n) * step
    xs, ys = start[0] + s * u[0], start[1] + s * u[1]
    inside = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    if not inside.all():
        n = int(np.argmin(inside))
        xs, ys, s = xs[:n], ys[:n], s[:n]
    hole = mask[np.round(ys).astype(int), np.round(xs).astype(int)]
    if not hole.any():
        return None
    first = int(np.argmax(hole))
    if s[first] > near_px + 1.0:
        return None
    after = np.flatnonzero(~hole[first:])
    if after.size == 0:
        return None  # the line runs out of the crop inside the hole
    last = first + int(after[0])
    a = (float(xs[max(0, first - 1)]), float(ys[max(0, first - 1)]))
    return a, (float(xs[last]), float(ys[last]))


def _frame(a: Point, b: Point, half: int, margin: int) -> tuple[npt.NDArray[np.float64], int, int]:
    """Affine map from a frame (column = along the line from ``margin`` px before ``a``, row = across
    it, ``half`` px each side) to the image, and the frame's size."""
    length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
    ux, uy = (b[0] - a[0]) / length, (b[1] - a[1]) / length
    nx, ny = -uy, ux
    ox, oy = a[0] - margin * ux - half * nx, a[1] - margin * uy - half * ny
    m = np.array([[ux, nx, ox], [uy, ny, oy]], np.float64)
    return m, int(np.ceil(length)) + 2 * margin + 1, 2 * half + 1


def _rows(
    values: Floats, known: npt.NDArray[np.bool_], margin: int, span: int, profile_px: int
) -> tuple[Floats, Floats, npt.NDArray[np.bool_]]:
    """Per row of a frame: the mean of the ``profile_px`` known samples before the hole and after it."""
    before = values[:, :margin]
    after = values[:, margin + span :]
    kb, ka = known[:, :margin], known[:, margin + span :]
    kb = kb & (np.cumsum(kb[:, ::-1], axis=1)[:, ::-1] <= profile_px)  # the nearest ones
    ka = ka & (np.cumsum(ka, axis=1) <= profile_px)
    nb, na = kb.sum(axis=1), ka.sum(axis=1)
    ok = (nb >= 2) & (na >= 2)
    pb = (before * kb).sum(axis=1) / np.maximum(nb, 1)
    pa = (after * ka).sum(axis=1) / np.maximum(na, 1)
    return pb.astype(np.float32), pa.astype(np.float32), ok


def _verify(grey: Floats, mask: npt.NDArray[np.bool_], a: Point, b: Point, p: BridgeParams) -> Bridge | None:
    """The bridge from ``a`` to ``b`` (shifted across by ≤ ``max_shift``) whose two sides match best, if good enough."""
    best: Bridge | None = None
    margin = p.profile_px + 2
    half = p.half_width + p.max_shift
    for shift in range(-p.max_shift, p.max_shift + 1):
        length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
        if length < 1.0:
            return None
        nx, ny = -(b[1] - a[1]) / length, (b[0] - a[0]) / length
        b2 = (b[0] + shift * nx, b[1] + shift * ny)
        m, fw, fh = _frame(a, b2, half, margin)
        span = fw - 2 * margin
        vals = np.asarray(cv2.warpAffine(grey, m, (fw, fh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP), np.float32)
        hole = cv2.warpAffine(
            mask.astype(np.uint8), m, (fw, fh), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=1
        ).astype(bool)
        pb, pa, ok = _rows(vals, ~hole, margin, span, p.profile_px)
        core = slice(p.max_shift, p.max_shift + 2 * p.half_width + 1)
        pb, pa, ok = pb[core], pa[core], ok[core]
        if ok.sum() < 2 * p.half_width:
            continue
        xb, xa = pb[ok] - pb[ok].mean(), pa[ok] - pa[ok].mean()
        sb, sa = float(xb.std()), float(xa.std())
        if min(sb, sa) < p.min_contrast or max(sb, sa) > 2.0 * min(sb, sa):
            continue  # no structure, or not the same contrast on both sides
        if abs(float(pb[ok].mean() - pa[ok].mean())) > 1.5 * max(sb, sa) + 10.0:
            continue  # not the same surfaces on both sides
        corr = float((xb * xa).sum() / (np.sqrt((xb * xb).sum() * (xa * xa).sum()) + 1e-6))
        if corr >= p.min_corr and (best is None or corr > best.corr):
            best = Bridge(a, b2, corr)
    return best


def _same(x: Bridge, y: Bridge) -> bool:
    """Two bridges of one line (found from either side, or from both edges of a thin line)."""

    def dist(pt: Point, br: Bridge) -> float:
        (ax, ay), (bx, by) = br.a, br.b
        length = np.hypot(bx - ax, by - ay) + 1e-9
        return float(abs((bx - ax) * (ay - pt[1]) - (ax - pt[0]) * (by - ay)) / length)

    return max(dist(x.a, y), dist(x.b, y)) < 1.5


def _draw(
    image: Floats, mask: npt.NDArray[np.bool_], br: Bridge, p: BridgeParams
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], Floats]:
    """The hole pixels of the band around ``br`` (ys, xs) and their values: each row of the band
    interpolated between its two sides."""
    margin = p.profile_px + 2
    half = p.half_width
    m, fw, fh = _frame(br.a, br.b, half, margin)
    span = fw - 2 * margin
    vals = np.asarray(cv2.warpAffine(image, m, (fw, fh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP), np.float32)
    hole = cv2.warpAffine(
        mask.astype(np.uint8), m, (fw, fh), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=1
    ).astype(bool)
    before = np.zeros((fh, 3), np.float32)
    after = np.zeros((fh, 3), np.float32)
    ok = np.zeros(fh, bool)
    for c in range(3):  # the same rows are usable in every channel
        before[:, c], after[:, c], ok = _rows(vals[..., c], ~hole, margin, span, p.profile_px)
    # Columns margin … margin + span - 1 lie between a and b: interpolate each row along them.
    t = np.clip((np.arange(fw, dtype=np.float32) - margin) / max(1, span - 1), 0.0, 1.0)
    frame = before[:, None, :] * (1 - t[None, :, None]) + after[:, None, :] * t[None, :, None]
    ys, xs = np.nonzero(mask)
    inv = cv2.invertAffineTransform(m)
    fx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    fy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    sel = (fx >= margin) & (fx <= margin + span - 1) & (fy >= 0) & (fy <= fh - 1)
    rows = np.clip(np.round(fy[sel]).astype(int), 0, fh - 1)
    sel[sel] &= ok[rows]
    if not sel.any():
        return ys[:0], xs[:0], np.zeros((0, 3), np.float32)
    maps_x = np.ascontiguousarray(fx[sel].astype(np.float32)[:, None])
    maps_y = np.ascontiguousarray(fy[sel].astype(np.float32)[:, None])
    sampled = cv2.remap(frame, maps_x, maps_y, cv2.INTER_LINEAR)[:, 0, :]
    return ys[sel], xs[sel], np.asarray(sampled, np.float32)
