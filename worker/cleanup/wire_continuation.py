"""Continuing a confirmed wire beyond the sky, along its own curve, while the same thin dark line is seen.

:mod:`worker.cleanup.wires` accepts a wire only where it crosses the sky, with every test passed
there. A real wire does not stop where the sky does: it goes on in front of a tree line, a
tower, a roof or a rock, usually to the frame's edge. This module follows an *accepted* wire
out of the sky; it never creates a wire, and it adds a stretch only where there is local
evidence of the same line:

1. *Where*: inside the wire's fitted course (between two stretches over the sky) the fitted
   curve itself; beyond its ends, the curve is extended step by step (a chunk of ``chunk_px``
   at a time), each chunk predicted by a quadratic fitted to the last ``window_px`` of the
   wire — so a catenary that steepens toward its pole is followed — and re-fitted on what
   the chunk found.
2. *Evidence*, per point of that course, on a profile of the value channel across it: the
   darkest sample within ``search_px`` of the predicted position must be darker than **both**
   sides (beyond the wire's own half width; per side the brightest of four groups of samples,
   so a second wire alongside or a strip of sky before a tree line does not hide it) by
   ``min_dip``, by a fraction of the wire's dip over the sky scaled to the new background, and
   by several times the roughness of those sides (foliage, gravel, the texture of a rock hide a
   wire: nothing there is taken); the dip must be about as narrow as the wire (a trunk, a pole
   or a shadow is wider); and its core must have the wire's grey level over the sky, mixed with
   the new background only as much as a wire that thin leaves uncovered (a wire has one
   colour). In front of something darker than itself a grey wire is a *bright* line: the same
   tests on the inverted profile, but the one scaled to the background, the same grey level.
3. *Reach*: starting from the stretches the detector accepted over the sky, the continuation
   takes evidence and bridges stretches without it of at most ``max_gap`` of the long edge
   (a lattice strut, a leaf in front), but after a gap only a run of at least ``min_run_px``
   points of evidence in a row counts (a branch crossing the course shows for a pixel or
   three). Where evidence is lost for longer, the continuation stops — and what it found
   beyond is not taken.

4. *The whole curve* (:func:`follow_fit`): the detector's fit over the sky is followed as one
   curve to the frame's edges and across every gap, and taken where the same evidence (with a
   lower roughness factor, the core on the course) shows the line in runs of a few points.

The result is a per-point flag along an extended course; the full-resolution mask is drawn
there by :func:`worker.cleanup.wires.wire_regions` with a stricter, local threshold. Faces are
protected later by the phase, as for every region.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ContinueParams:
    """Thresholds of the continuation (working-resolution pixels unless said otherwise)."""

    max_gap: float = 0.02  # of the long edge: the longest stretch without evidence that is bridged
    min_run_px: int = 4  # points of evidence in a row needed to go on after a gap
    search_px: int = 2  # how far across the predicted course the line's core may be
    min_dip: float = 6.0  # grey levels below both sides…
    dip_fraction: float = 0.3  # …and this fraction of the wire's dip over the sky, scaled to the background…
    noise_factor: float = 3.0  # …and this many times the roughness of the two sides
    max_width_factor: float = 2.0  # the dip's width at half depth ≤ this × the wire's width + 2 px
    core_tolerance: float = 0.15  # × the wire's dip over the sky: how far its core may be from the expected value
    min_core_tolerance: float = 8.0  # grey levels
    chunk_px: int = 24
    window_px: int = 120


@dataclass
class Course:
    """An extended course of a wire: ``points`` (x, y), and per point whether it is taken."""

    points: FloatArray
    clean: BoolArray  # the detector's own stretches (over the sky, every test passed)
    continued: BoolArray  # added by the continuation
    bright: BoolArray  # continued where the line is brighter than what is behind it


def continue_wire(
    value: npt.NDArray[np.uint8],
    curve: FloatArray,
    clean: BoolArray,
    width: float,
    p: ContinueParams | None = None,
) -> Course:
    """Extend ``curve`` (x, y points 1 px apart, ``clean`` where the detector took it) where the line is seen."""
    p = p or ContinueParams()
    h, w = value.shape
    long_edge = max(h, w)
    vf = value.astype(np.float32)
    none = np.zeros(len(curve), bool)
    empty = Course(curve, clean, none, none)
    if len(curve) < 10 or not clean.any():
        return empty
    dark, bright = _evidence(vf, curve, _tangents(curve), width, p)
    ref_dip = float(np.median(dark.dip[clean]))
    ref_core = float(np.median(dark.core[clean]))
    ref_side = float(np.median(dark.side[clean]))
    ref_background = float(np.median(dark.background[clean]))
    if ref_dip <= 0 or ref_side <= 0:
        return empty
    accept = _Acceptance(
        min_dip=p.min_dip,
        dip_per_level=p.dip_fraction * ref_dip / ref_side,
        ref_core=ref_core,
        ref_background=ref_background,
        opacity=min(1.0, ref_dip / ref_side),
        core_tolerance=max(p.min_core_tolerance, p.core_tolerance * ref_dip),
        max_width=p.max_width_factor * width + 2.0,
        noise_factor=p.noise_factor,
    )
    seen_dark, seen_bright = accept(dark, bright)
    gap = max(6, round(p.max_gap * long_edge))
    # Beyond both ends: follow the wire in chunks.
    before = _extend(vf, curve, width=width, p=p, accept=accept, gap=gap, forward=False)
    after = _extend(vf, curve, width=width, p=p, accept=accept, gap=gap, forward=True)
    points = np.concatenate([before[0][::-1], curve, after[0]])
    seen = np.concatenate([before[1][::-1], seen_dark | seen_bright, after[1]])
    is_bright = np.concatenate([before[2][::-1], seen_bright, after[2]])
    pad_b, pad_a = np.zeros(len(before[0]), bool), np.zeros(len(after[0]), bool)
    clean_all = np.concatenate([pad_b, clean, pad_a])
    continued = _reach(clean_all, seen & ~clean_all, gap, p.min_run_px) & ~clean_all
    # A bridged gap takes the polarity of the evidence before it.
    bright_all = _carry(is_bright, seen) & continued
    return Course(points, clean_all, continued, bright_all)


def _carry(flags: BoolArray, defined: BoolArray) -> BoolArray:
    """``flags`` where ``defined``, elsewhere the last defined value before (False before the first)."""
    idx = np.where(defined, np.arange(len(flags)), -1)
    last = np.maximum.accumulate(idx) if len(idx) else idx
    return np.asarray(np.where(last >= 0, flags[np.maximum(last, 0)], False), dtype=bool)


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Evidence:
    offset: FloatArray  # where the core is, across the course (px)
    core: FloatArray
    dip: FloatArray
    side: FloatArray  # the darker of the two sides, what the dip is measured from
    background: FloatArray  # the mean of the two sides
    noise: FloatArray
    width: FloatArray


@dataclass(frozen=True)
class _Acceptance:
    """Is the line at a point the same wire as over the sky? (see :func:`continue_wire`)"""

    min_dip: float
    dip_per_level: float  # the dip expected per grey level of background (a wire darkens in proportion)
    ref_core: float  # the wire's core over the sky…
    ref_background: float  # …and the sky beside it
    opacity: float  # the least fraction of a pixel the wire can cover at its core (1: a thick wire)
    core_tolerance: float
    max_width: float
    noise_factor: float

    def __call__(self, dark: _Evidence, bright: _Evidence) -> tuple[BoolArray, BoolArray]:
        """(seen as a dark line, seen as a bright line) per point."""
        seen_dark = self._common(dark) & (dark.dip >= self.dip_per_level * dark.side)
        # In front of something darker than itself (foliage, a shaded wall) a grey wire is a bright
        # line: the same tests on the inverted profile, but its dip is not set by the background.
        return seen_dark, self._common(bright) & ~seen_dark

    def _common(self, ev: _Evidence) -> BoolArray:
        """A dip deep enough, above the sides' roughness, as narrow as the wire, with the wire's core."""
        # One wire has one colour: its core is what it was over the sky, mixed with the new
        # background in the proportion the wire leaves uncovered (none for a thick wire).
        mix = (1.0 - self.opacity) * (ev.background - self.ref_background)
        return np.asarray(
            (ev.dip >= self.min_dip)
            & (ev.dip >= self.noise_factor * ev.noise)
            & (np.abs(ev.core - (self.ref_core + mix)) <= self.core_tolerance)
            & (ev.width <= self.max_width),
            dtype=bool,
        )


def _tangents(points: FloatArray) -> FloatArray:
    t = np.gradient(points, axis=0)
    n = np.linalg.norm(t, axis=1, keepdims=True)
    return np.asarray(t / np.maximum(n, 1e-9))


def _evidence(
    vf: npt.NDArray[np.float32], points: FloatArray, tangents: FloatArray, width: float, p: ContinueParams
) -> tuple[_Evidence, _Evidence]:
    """Per point, the line as a dark dip and as a bright ridge (a grey wire in front of dark foliage)."""
    n = len(points)
    edge = math.ceil(max(0.5, width / 2.0))  # the wire's half width
    s = p.search_px
    reach = s + edge + 11  # the core within ±s, and 12 samples beyond the edge on each side
    offs = np.arange(-reach, reach + 1, dtype=np.float64)
    normals = np.stack([-tangents[:, 1], tangents[:, 0]], axis=1)
    mx = (points[:, 0:1] + offs[None, :] * normals[:, 0:1]).astype(np.float32)
    my = (points[:, 1:2] + offs[None, :] * normals[:, 1:2]).astype(np.float32)
    prof = np.asarray(
        cv2.remap(vf, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), dtype=np.float64
    ).reshape(n, -1)
    dark = _measure(prof, reach, s, edge)
    b = _measure(-prof, reach, s, edge)
    bright = _Evidence(b.offset, -b.core, b.dip, -b.side, -b.background, b.noise, b.width)
    return dark, bright


def _brighter_group(samples: FloatArray) -> FloatArray:
    """Per row of samples (near to far, a multiple of 3), the 3 consecutive ones that are brightest on average."""
    groups = samples.reshape(len(samples), -1, 3)
    best = np.argmax(groups.mean(axis=2), axis=1)
    return np.asarray(groups[np.arange(len(samples)), best])


def _measure(prof: FloatArray, c: int, s: int, edge: int) -> _Evidence:
    """The darkest sample within ``s`` of the centre ``c`` of each profile, and what is around it."""
    n = len(prof)
    rows = np.arange(n)
    j = np.argmin(prof[:, c - s : c + s + 1], axis=1) + (c - s)
    core = prof[rows, j]
    # Each side: of 4 groups of 3 samples from the wire's edge outwards, the brightest (the nearest
    # may hold the wire's soft edge, or a strip of sky before a tree line; the next ones a second
    # wire running alongside).
    left = _brighter_group(prof[rows[:, None], j[:, None] - edge - np.arange(12)[None, :]])
    right = _brighter_group(prof[rows[:, None], j[:, None] + edge + np.arange(12)[None, :]])
    lm, rm = left.mean(axis=1), right.mean(axis=1)
    level = np.minimum(lm, rm)
    dip = level - core
    noise = np.maximum(left.std(axis=1), right.std(axis=1))
    # Width at half depth, on the contiguous run around the core.
    k = edge + 3
    idx = np.clip(j[:, None] + np.arange(-k, k + 1)[None, :], 0, prof.shape[1] - 1)
    below = prof[rows[:, None], idx] <= (core + dip / 2.0)[:, None]
    lrun = np.where(below[:, k::-1].all(axis=1), k + 1, np.argmin(below[:, k::-1], axis=1))
    rrun = np.where(below[:, k:].all(axis=1), k + 1, np.argmin(below[:, k:], axis=1))
    return _Evidence(
        offset=(j - c).astype(np.float64),
        core=core,
        dip=dip,
        side=level,
        background=(lm + rm) / 2.0,
        noise=noise,
        width=(lrun + rrun - 1).astype(np.float64),
    )


def _extend(  # noqa: PLR0915 - one walk outwards; its state (the fit's points, the gap) lives across chunks
    vf: npt.NDArray[np.float32],
    curve: FloatArray,
    *,
    width: float,
    p: ContinueParams,
    accept: _Acceptance,
    gap: int,
    forward: bool,
) -> tuple[FloatArray, BoolArray, BoolArray]:
    """Points beyond one end of ``curve`` (walking away from it): (points, seen, seen as a bright line)."""
    h, w = vf.shape
    nothing = (np.zeros((0, 2)), np.zeros(0, bool), np.zeros(0, bool))
    known = curve if forward else curve[::-1]
    # Local frame at the end: u along the wire's last stretch (walking outwards), v across.
    tail = known[-min(len(known), p.window_px) :]
    d = tail[-1] - tail[0]
    norm = float(np.hypot(d[0], d[1]))
    if norm < 5.0:
        return nothing
    direction = d / norm
    normal = np.array([-direction[1], direction[0]])
    origin = tail[-1]
    ku = list((tail - origin) @ direction)
    kv = list((tail - origin) @ normal)
    pts_out: list[FloatArray] = []
    seen_out: list[BoolArray] = []
    bright_out: list[BoolArray] = []
    u_last, since, done = 0.0, 0, False
    while not done:
        us = u_last + np.arange(1, p.chunk_px + 1, dtype=np.float64)
        au, av = np.asarray(ku[-p.window_px :]), np.asarray(kv[-p.window_px :])
        coef = np.polyfit(au, av, 2 if float(np.ptp(au)) >= 30.0 else 1)
        vs = np.polyval(coef, us)
        pts = origin + np.outer(us, direction) + np.outer(vs, normal)
        inside = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
        if not inside.all():
            keep = int(np.argmin(inside))
            us, vs, pts = us[:keep], vs[:keep], pts[:keep]
            done = True
        if len(us) == 0:
            break
        slope = np.polyval(np.polyder(coef), us)
        tang = direction[None, :] + slope[:, None] * normal[None, :]
        tang /= np.linalg.norm(tang, axis=1, keepdims=True)
        dark, bright = _evidence(vf, pts, tang, width, p)
        ok_dark, ok_bright = accept(dark, bright)
        ok = ok_dark | ok_bright
        offset = np.where(ok_dark, dark.offset, bright.offset)
        n = len(us)
        for i in range(len(us)):
            if ok[i]:
                since = 0
                ku.append(float(us[i]))
                kv.append(float(vs[i] + offset[i]))
            else:
                since += 1
                if since > gap:
                    n, done = i + 1, True
                    break
        pts_out.append(pts[:n])
        seen_out.append(ok[:n])
        bright_out.append(ok_bright[:n])
        u_last = float(us[n - 1])
    if not pts_out:
        return nothing
    points = np.concatenate(pts_out)
    seen = np.concatenate(seen_out)
    bright_seen = np.concatenate(bright_out)
    # Nothing beyond the last evidence is kept.
    last = int(np.flatnonzero(seen)[-1]) + 1 if seen.any() else 0
    return points[:last], seen[:last], bright_seen[:last]


def _reach(clean: BoolArray, evidence: BoolArray, gap: int, min_run: int) -> BoolArray:
    """The points reached from the ``clean`` stretches through ``evidence``, bridging gaps of ≤ ``gap`` points.

    The walk goes outwards from both ends of every clean stretch, point by point, and stops at
    the next clean point, the end, or after more than ``gap`` points without evidence it can
    take. Right after taken evidence any evidence is taken; after a gap, only a run of at least
    ``min_run`` points in a row (a branch crossing the course shows for a point or two).
    """
    n = len(clean)
    out = np.zeros(n, bool)
    padded = np.r_[False, clean, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        for step, start in ((1, int(b)), (-1, int(a) - 1)):
            last = start - step  # the last point taken (the clean stretch's end)
            i = start
            while 0 <= i < n and not clean[i] and abs(i - last) - 1 <= gap:
                if evidence[i] and (abs(i - last) == 1 or _run_length(evidence, i, step, min_run) >= min_run):
                    lo, hi = sorted((last + step, i))
                    out[lo : hi + 1] = True
                    last = i
                i += step
    return out


def _run_length(flags: BoolArray, i: int, step: int, limit: int) -> int:
    """How many points of ``flags`` are True in a row from ``i`` in direction ``step`` (counting up to ``limit``)."""
    run = 0
    while 0 <= i < len(flags) and flags[i] and run < limit:
        run += 1
        i += step
    return run


def refine_course(value: npt.NDArray[np.uint8], points: FloatArray, width: float, search: float) -> FloatArray:
    """``points`` (x, y in ``value``'s pixels) moved across the course onto the line's darkest core.

    The course is first resampled to 1 px steps; per point the profile across it (smoothed over
    the line's width) is searched within ``search`` px for its minimum, and the offsets are
    median-filtered along the course, so a dark speck in a texture does not pull the line
    aside — only a shift that the line itself makes for a while does.
    """
    if len(points) < 2:
        return points
    seg = np.hypot(*np.diff(points, axis=0).T)
    length = np.r_[0.0, np.cumsum(seg)]
    if length[-1] < 1.0:
        return points
    t = np.arange(0.0, length[-1] + 0.5, 1.0)
    dense = np.stack([np.interp(t, length, points[:, 0]), np.interp(t, length, points[:, 1])], axis=1)
    tangents = _tangents(dense) if len(dense) > 1 else np.array([[1.0, 0.0]])
    normals = np.stack([-tangents[:, 1], tangents[:, 0]], axis=1)
    s = max(1, math.ceil(search))
    k = max(1, round(width))
    offs = np.arange(-s - k, s + k + 1, dtype=np.float64)
    mx = (dense[:, 0:1] + offs[None, :] * normals[:, 0:1]).astype(np.float32)
    my = (dense[:, 1:2] + offs[None, :] * normals[:, 1:2]).astype(np.float32)
    prof = np.asarray(
        cv2.remap(value.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
        dtype=np.float32,
    ).reshape(len(dense), -1)
    if k > 1:
        prof = np.asarray(cv2.blur(prof, (k, 1)), dtype=np.float32)  # along each profile
    c = s + k
    off = (np.argmin(prof[:, c - s : c + s + 1], axis=1) - s).astype(np.float64)
    win = max(3, 2 * math.ceil(2 * width + 2 * s) + 1)
    if len(off) >= win:
        pad = win // 2
        padded = np.pad(off, pad, mode="edge")
        off = np.median(np.lib.stride_tricks.sliding_window_view(padded, win), axis=1)
    return np.asarray(dense + off[:, None] * normals)


# --------------------------------------------------------------------------------------------
# the whole curve: a certain wire followed along its own fit, to the frame's edges


@dataclass(frozen=True)
class FitParams:
    """The fitted-course pass (:func:`follow_fit`): working-resolution pixels unless said otherwise."""

    min_taken: float = 0.3  # of the long edge: the least length already taken for the fit to be trusted
    max_residual: float = 1.0  # px: RMS distance of the taken points from the fit
    max_extrapolation: float = 0.6  # × the taken length: how far beyond it the fit is followed
    noise_factor: float = 1.5  # the dip ≥ this × the roughness of the sides (the course is known, so lower)
    min_run_px: int = 4  # points of evidence in a row: a crack or a twig crossing the course shows for 1–3
    skip_px: float = 2.0  # points this close to what is already taken are left to it
    max_offset: float = 1.0  # px: how far off the fitted course the line's core may be


def follow_fit(
    value: npt.NDArray[np.uint8],
    course: Course,
    curve: FloatArray,
    width: float,
    *,
    p: ContinueParams | None = None,
    fp: FitParams | None = None,
) -> Course:
    """``course`` with the rest of the wire's whole curve taken where the line is seen on it.

    The detector's own curve (``curve``, fitted to the wire's crest over the sky) is fitted with one
    polynomial across the wire's direction; the fit is followed to the frame's edges (at most ``max_extrapolation``
    of the taken length beyond it) and across every gap. Where the course is known that well, the
    evidence of the line (:func:`continue_wire`'s tests: as dark or as grey as over the sky, as
    narrow) is asked with a lower roughness factor and without a stop after a long gap — a wire in
    front of a rock's cracks or a roof's tiles is then taken where it is seen, and only there (runs of
    ``min_run_px`` points of evidence, with gaps of at most ``max_gap`` between them bridged). The
    new points are appended to the course after a separator point that nothing takes.
    """
    p = p or ContinueParams()
    fp = fp or FitParams()
    h, w = value.shape
    long_edge = max(h, w)
    taken = course.clean | course.continued
    pts = course.points[taken]
    if len(pts) < 20 or not course.clean.any():
        return course
    fit_pts = curve
    origin, direction, normal = _axis(fit_pts)
    u = (fit_pts - origin) @ direction
    v = (fit_pts - origin) @ normal
    length = float(u.max() - u.min())
    if length < fp.min_taken * long_edge:
        return course
    degree = 3 if length >= 0.4 * long_edge else 2
    coef = np.polyfit(u, v, degree)
    rms = float(np.sqrt(np.mean((v - np.polyval(coef, u)) ** 2)))
    if rms > fp.max_residual:
        return course
    reach = fp.max_extrapolation * length
    uu = np.arange(u.min() - reach, u.max() + reach + 1.0, 1.0)
    line = origin + np.outer(uu, direction) + np.outer(np.polyval(coef, uu), normal)
    inside = (line[:, 0] >= 0) & (line[:, 0] <= w - 1) & (line[:, 1] >= 0) & (line[:, 1] <= h - 1)
    line, uu = line[inside], uu[inside]
    if len(line) < 2:
        return course
    # Already taken (within skip_px of a taken point) stays with the course.
    taken_map = np.zeros((h, w), np.uint8)
    ti = np.clip(np.round(pts).astype(int), 0, [w - 1, h - 1])
    taken_map[ti[:, 1], ti[:, 0]] = 1
    r = math.ceil(fp.skip_px)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    taken_map = np.asarray(cv2.dilate(taken_map, disc), dtype=np.uint8)
    li = np.clip(np.round(line).astype(int), 0, [w - 1, h - 1])
    near = taken_map[li[:, 1], li[:, 0]].astype(bool)
    slope = np.polyval(np.polyder(coef), uu)
    tang = direction[None, :] + slope[:, None] * normal[None, :]
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    vf = value.astype(np.float32)
    accept = _reference(vf, course, width, p, noise_factor=fp.noise_factor)
    if accept is None:
        return course
    dark, bright = _evidence(vf, line, tang, width, p)
    ok_dark, ok_bright = accept(dark, bright)
    # The course is known: the line's core must lie on it (a branch leaving the wire drifts off it).
    on_course = np.abs(np.where(ok_dark, dark.offset, bright.offset)) <= fp.max_offset
    seen = (ok_dark | ok_bright) & on_course & ~near
    runs = _long_runs(seen, fp.min_run_px)
    gap = max(6, round(p.max_gap * long_edge))
    taken_new = _bridge_runs(runs, near, gap) & ~near
    if not taken_new.any():
        return course
    bright_new = _carry(ok_bright, ok_dark | ok_bright) & taken_new
    sep = course.points[-1:]
    f1 = np.zeros(1, bool)
    return Course(
        np.concatenate([course.points, sep, line]),
        np.concatenate([course.clean, f1, np.zeros(len(line), bool)]),
        np.concatenate([course.continued, f1, taken_new]),
        np.concatenate([course.bright, f1, bright_new]),
    )


def _axis(points: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Origin, direction (the points' main axis, pointing right or down) and normal."""
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    direction = vt[0] if (vt[0][0] > 0 or (vt[0][0] == 0 and vt[0][1] > 0)) else -vt[0]
    return centre, np.asarray(direction, dtype=np.float64), np.array([-direction[1], direction[0]])


def _reference(
    vf: npt.NDArray[np.float32], course: Course, width: float, p: ContinueParams, *, noise_factor: float
) -> _Acceptance | None:
    """The acceptance of :func:`continue_wire`, referenced on the course's stretches over the sky."""
    pts = course.points[course.clean]
    dark, _ = _evidence(vf, pts, _tangents(pts), width, p)
    ref_dip, ref_side = float(np.median(dark.dip)), float(np.median(dark.side))
    if ref_dip <= 0 or ref_side <= 0:
        return None
    return _Acceptance(
        min_dip=p.min_dip,
        dip_per_level=p.dip_fraction * ref_dip / ref_side,
        ref_core=float(np.median(dark.core)),
        ref_background=float(np.median(dark.background)),
        opacity=min(1.0, ref_dip / ref_side),
        core_tolerance=max(p.min_core_tolerance, p.core_tolerance * ref_dip),
        max_width=p.max_width_factor * width + 2.0,
        noise_factor=noise_factor,
    )


def _long_runs(flags: BoolArray, min_run: int) -> BoolArray:
    """``flags`` keeping only runs of at least ``min_run`` True in a row."""
    padded = np.r_[False, flags, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    out = np.zeros(len(flags), bool)
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a >= min_run:
            out[a:b] = True
    return out


def _bridge_runs(runs: BoolArray, anchors: BoolArray, gap: int) -> BoolArray:
    """``runs`` with the gaps of at most ``gap`` points between two of them (or a run and an anchor) filled."""
    marks = runs | anchors
    idx = np.flatnonzero(marks)
    out = runs.copy()
    for a, b in itertools.pairwise(idx):
        if 1 < b - a <= gap + 1 and (runs[a] or runs[b]):
            out[a + 1 : b] = True
    return out
