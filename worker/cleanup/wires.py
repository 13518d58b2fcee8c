"""Power lines against the sky: thin, long, gently sagging dark curves that cross the sky.

Method (all classical, no learned weights; ≤ 300 ms for a 24 MP photo on two cores, see
``benchmarks/cleanup_speed.py``):

1. Work on the shared downscaled copy (:class:`~worker.cleanup.working.WorkingImage`).
2. *Ridges*: a grey-level black-hat (closing minus image) with a square a little wider than
   the widest wire responds to thin dark structures only — not to edges (a roof line, the
   horizon) nor to wide dark objects (a pole, a tree trunk).
3. Keep ridge pixels next to the sky (:mod:`worker.cleanup.sky`), thin them to their crest and
   find straight segments with a probabilistic Hough transform.
4. *Chain* segments that continue one another (close ahead, aligned), then *follow* each chain
   pixel by pixel along the crest (a catenary steepens toward its pole), and join candidates
   that are two visible stretches of one wire hidden between by a tree or a rock.
5. Fit each candidate with a low-order polynomial across its main direction and accept it
   only when **every** test holds: long relative to the frame, well supported along its
   course over the sky, smooth (small fit residual, gentle sag), not steep, thin, a sharp dip,
   darker than the sky by the same amount on both sides (a wire, not the boundary between sky
   and something else), with sky on both sides, and *uncluttered*: short dark crests beside it
   (the twigs of a bare tree, a lattice tower) reject it, while crests that run alongside for
   a while (other conductors of a bundle, a crossing wire) do not. The thresholds depend on
   the profile's ``cleanup_level`` (:data:`LEVELS`).
6. *Continue* each accepted wire beyond the sky (:mod:`worker.cleanup.wire_continuation`): along
   its own curve, in front of trees, towers, roofs or rock, only where the same thin line — as
   narrow, as dark or as grey as over the sky — is seen, bridging short gaps and stopping where
   it is lost. Where the line is not seen, the wire is left in.
7. Draw the mask at **full resolution**, tile by tile along the fitted curve: the pixels in a
   narrow band around the curve that are darker than the closed (wire-free) background, only
   along the stretches where the wire is seen, uncluttered and has sky on both sides (other
   accepted wires running alongside are kept out of the background's noise estimate); beyond
   the sky, along the continued stretches, in a band as wide as the wire that follows the
   line's core, refined at full resolution, with a threshold set by the texture beside it. A second
   conductor running just beside the band (seen as one crest with this one at working resolution)
   joins the mask; a mask that reaches the frame's edge is carried past it.
8. *Light wires* (a sunlit conductor against a darker sky): steps 2–7 again on the inverted value
   channel, with a sky found with thin bright lines erased too; a light line along a dark wire (the
   sky between two conductors) and a dark one along a light wire (its JPEG ringing) are dropped.

The output is one :class:`~worker.cleanup.region.Region` per wire (kind ``power_line``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from worker.cleanup.region import Region, crop_to_mask
from worker.cleanup.sky import Sky, find_sky
from worker.cleanup.wire_continuation import ContinueParams, continue_wire, follow_fit, refine_course
from worker.cleanup.working import WorkingImage, value_channel

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


COMPANION_REACH = 2  # × the band's half width: how far beside a wire a second one of its bundle is looked for
COMPANION_MIN_RUN = 0.4  # of the stretch: how far along it that second wire must run to be taken


@dataclass(frozen=True)
class WireParams:
    """Thresholds of the acceptance tests (working-resolution pixels unless said otherwise)."""

    kernel_px: int = 13  # black-hat square: wires up to ~10 px wide at working resolution
    min_contrast: float = 12.0  # grey levels: a wire must be at least this much darker than the sky
    min_sharpness: float = 3.0  # contrast ÷ width: a wire is a sharp dip, not a soft shading edge
    noise_factor: float = 4.0  # …and this many times the sky's own black-hat noise
    min_span: float = 0.35  # fraction of the frame's long edge the wire must span
    corner_span_factor: float = 0.6  # × min_span, for a wire that runs from one edge of the frame to another
    min_support: float = 0.7  # fraction of its course over the sky where the wire is actually seen
    min_over_sky: float = 0.6  # fraction of its course that is over the sky
    max_residual: float = 0.9  # RMS distance (px) of the wire's pixels from the fitted curve
    max_sag: float = 0.12  # deviation of the curve from its chord, as a fraction of the span
    max_angle_deg: float = 50.0  # steeper than this from the horizontal: a pole, a mast, a railing post
    max_width: float = 11.0  # px: wider is a cable-stayed mast, a branch, a contrail shadow
    min_sky_both_sides: float = 0.7  # fraction of the wire with sky just above and just below
    max_asymmetry: float = 0.35  # |above − below| ÷ contrast: a wire has the same sky on both sides
    max_clutter: float = 0.35  # fraction of the wire with other dark crests within clutter_px beside it
    clutter_px: int = 8
    grey_sky_min_span: float = 0.55  # a sky that is not blue (overcast, or a ceiling) needs longer wires
    min_score: float = 0.5
    light_wires: bool = True  # look for light wires (brighter than the sky) too
    # An accepted wire is followed beyond the sky while the same line is seen (None: never).
    continuation: ContinueParams | None = field(default_factory=ContinueParams)


LEVELS: dict[str, WireParams] = {
    "conservative": WireParams(),
    "moderate": WireParams(
        min_span=0.25,
        min_support=0.6,
        min_over_sky=0.5,
        max_angle_deg=60.0,
        min_sky_both_sides=0.65,
        grey_sky_min_span=0.45,
    ),
    "aggressive": WireParams(
        min_span=0.18,
        min_support=0.5,
        min_over_sky=0.4,
        max_residual=1.2,
        max_angle_deg=70.0,
        min_sky_both_sides=0.6,
        max_asymmetry=0.5,
        max_clutter=0.45,
        grey_sky_min_span=0.35,
        min_score=0.4,
    ),
}


@dataclass
class Wire:
    """A wire found at working resolution: ``curve`` are (x, y) points along it (work px)."""

    curve: FloatArray
    clean: BoolArray  # per curve point: seen, uncluttered, with sky on both sides (where the mask goes)
    width: float  # px at working resolution
    contrast: float  # grey levels below the sky, at working resolution
    span: float  # px
    support: float
    over_sky: float
    residual: float
    sky_both_sides: float
    asymmetry: float
    angle_deg: float
    clutter: float
    score: float = 0.0
    rejected: list[str] = field(default_factory=list)
    # per curve point: added by the continuation beyond the sky (empty: not continued)
    continued: BoolArray = field(default_factory=lambda: np.zeros(0, bool))
    continued_bright: BoolArray = field(default_factory=lambda: np.zeros(0, bool))  # …as a bright line
    light: bool = False  # a light wire (brighter than the sky): found and masked on the inverted value

    def measurements(self, scale: float) -> dict[str, Any]:
        return {
            "length_px": round(self.span / scale, 1),
            "width_px": round(self.width / scale, 2),
            "contrast": round(self.contrast, 1),
            "support": round(self.support, 3),
            "over_sky": round(self.over_sky, 3),
            "sky_both_sides": round(self.sky_both_sides, 3),
            "angle_deg": round(self.angle_deg, 1),
            "tone": "light" if self.light else "dark",
            "continued_px": round(float(np.count_nonzero(self.continued)) / scale, 1),
        }


# --------------------------------------------------------------------------------------------
# public


def detect_wires(
    work: WorkingImage,
    level: str = "conservative",
    sky: Sky | None = None,
    *,
    keep_rejected: bool = False,
    params: WireParams | None = None,
) -> list[Wire]:
    """Wires in ``work`` that pass every test of ``level`` (or ``params``); with ``keep_rejected``, the others too."""
    p = params or LEVELS[level]
    sky = sky or find_sky(work)
    if not sky.found:
        return []
    wires = _detect(work, p, sky, work.value, light=False, keep_rejected=keep_rejected)
    if p.light_wires:
        # A sunlit conductor against a darker sky is a bright line: the same tests on the inverted
        # value channel, on a sky found with thin bright lines erased as well.
        light_sky = find_sky(work, light_lines=True)
        if light_sky.found:
            inverted = np.asarray(255 - work.value, dtype=np.uint8)
            light = _detect(work, p, light_sky, inverted, light=True, keep_rejected=keep_rejected)
            reach = p.kernel_px / 2.0 + 1.0
            dark = wires
            # Beside a wire of one tone, the other tone shows too: the strip of sky between two dark
            # wires of a bundle is a light line, the JPEG ringing along a light wire a dark one.
            light = [w for w in light if not _shadows(w, dark, reach, 1.0 / LIGHT_OVER_DARK, along=0.5)]
            wires = [w for w in dark if not _shadows(w, light, reach, LIGHT_OVER_DARK, along=0.2)] + light
    return wires


LIGHT_OVER_DARK = 1.5  # a dark line beside a light wire is its ringing unless ≥ 1 / this × as strong


def _shadows(wire: Wire, others: list[Wire], reach: float, factor: float, *, along: float) -> bool:
    """Does ``wire`` run along an accepted wire of the other tone (within ``reach``, for more than
    ``along`` of its length) whose contrast is at least ``factor`` × its own? Then it is that wire's
    halo, or the sky between two."""
    for other in others:
        if other.rejected or other.contrast < factor * wire.contrast:
            continue
        d = _curve_distance(wire.curve, other.curve)
        if np.mean(d <= reach) > along:
            return True
    return False


def _detect(
    work: WorkingImage, p: WireParams, sky: Sky, value: npt.NDArray[np.uint8], *, light: bool, keep_rejected: bool
) -> list[Wire]:
    """The wires of one polarity: dark lines in ``value`` (the inverted value channel for light wires)."""
    if sky.blue_fraction < 0.5:
        p = replace(p, min_span=max(p.min_span, p.grey_sky_min_span))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (p.kernel_px, p.kernel_px))
    blackhat = np.asarray(cv2.morphologyEx(value, cv2.MORPH_BLACKHAT, kernel), dtype=np.uint8)
    near_sky = cv2.dilate(sky.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    sky_bh = blackhat[::3, ::3][sky.mask[::3, ::3]]  # a sample is plenty for a percentile
    noise = float(np.percentile(sky_bh, 75)) if sky_bh.size else 0.0
    threshold = max(p.min_contrast * 0.5, p.noise_factor * noise)
    ridge = (blackhat >= threshold) & near_sky
    crest = _crest(blackhat, ridge)
    h, w = work.shape
    long_edge = max(h, w)
    segments = _segments(crest, long_edge)
    if not segments:
        return []
    chains = _chain(segments, long_edge)
    maps = _Maps(crest=crest, ridge=ridge, blackhat=blackhat, sky=sky)
    candidates: list[tuple[FloatArray, Wire]] = []
    for chain in chains:
        dx, dy = chain[-1] - chain[0]
        if float(np.hypot(dx, dy)) < 0.25 * p.min_span * long_edge:
            continue  # too short to become a wire even when joined with another stretch
        if math.degrees(math.atan2(abs(float(dy)), abs(float(dx)))) > p.max_angle_deg + 15.0:
            continue  # a mast, a lattice: too steep to be accepted
        points = _follow(chain, crest, p, long_edge)
        if points is None:
            continue
        _, direction, _, _, _ = _frame(points)
        if math.degrees(math.asin(min(1.0, abs(float(direction[1]))))) > p.max_angle_deg + 10.0:
            continue  # a mast, a lattice: too steep to be accepted, even joined with another stretch
        wire = _evaluate(points, maps, p)
        if wire is not None:
            candidates.append((points, wire))
    candidates = _merge_occluded(candidates, maps, p)
    out = _dedupe([wire for _, wire in candidates if keep_rejected or not wire.rejected])
    for wire in out:
        wire.light = light
        if p.continuation is not None and not wire.rejected:
            _continue(value, wire, p.continuation)
    return out


def _continue(value: npt.NDArray[np.uint8], wire: Wire, cp: ContinueParams) -> None:
    """Extend an accepted ``wire`` beyond the sky where the same line is seen (see :mod:`.wire_continuation`)."""
    course = continue_wire(value, wire.curve, wire.clean, wire.width, cp)
    course = follow_fit(value, course, wire.curve, wire.width, p=cp)
    wire.curve, wire.clean = course.points, course.clean
    wire.continued, wire.continued_bright = course.continued, course.bright


@dataclass(frozen=True)
class _Maps:
    """The per-photo maps a candidate is measured on (working resolution)."""

    crest: BoolArray
    ridge: BoolArray
    blackhat: npt.NDArray[np.uint8]
    sky: Sky


def wire_regions(work: WorkingImage, wires: list[Wire], *, tile_px: int = 384) -> list[Region]:
    """One full-resolution :class:`Region` per wire: the dark pixels in a narrow band around its curve."""
    regions: list[Region] = []
    courses = [_taken_course(work, wire) for wire in wires]
    for i, wire in enumerate(wires):
        region = _full_res_mask(work, wire, tile_px, [c for j, c in enumerate(courses) if j != i and c[0]])
        if region is not None:
            regions.append(region)
    return regions


def _taken_course(work: WorkingImage, wire: Wire) -> tuple[list[FloatArray], int]:
    """The full-resolution stretches of ``wire`` that are masked, and a line thickness that covers it."""
    taken = wire.clean | (wire.continued if wire.continued.size == len(wire.curve) else False)
    curve = work.to_full(wire.curve)
    thickness = 2 * math.ceil(max(1.0, wire.width / work.scale) / 2.0 + 1.0) + 1
    return [curve[run] for run in _runs(np.asarray(taken, dtype=bool)) if run.stop - run.start >= 2], thickness


# --------------------------------------------------------------------------------------------
# ridges and segments


def _crest(blackhat: npt.NDArray[np.uint8], ridge: BoolArray) -> BoolArray:
    """Thin ``ridge`` to its crest: pixels that are a local maximum across x or across y."""
    b = blackhat.astype(np.int16)
    pad = np.pad(b, 1, mode="edge")
    up, down = pad[:-2, 1:-1], pad[2:, 1:-1]
    left, right = pad[1:-1, :-2], pad[1:-1, 2:]
    vmax = (b >= up) & (b >= down)
    hmax = (b >= left) & (b >= right)
    return ridge & (vmax | hmax)


def _segments(crest: BoolArray, long_edge: int) -> list[FloatArray]:
    min_len = max(12, round(0.03 * long_edge))
    lines = cv2.HoughLinesP(
        crest.astype(np.uint8) * 255,
        rho=1,
        theta=np.pi / 360,
        threshold=max(10, min_len // 2),
        minLineLength=min_len,
        maxLineGap=max(3, round(0.006 * long_edge)),
    )
    if lines is None:
        return []
    segs = []
    for x1, y1, x2, y2 in np.asarray(lines).reshape(-1, 4).astype(np.float64):
        a, b = np.array([x1, y1]), np.array([x2, y2])
        if (b - a)[0] < 0 or ((b - a)[0] == 0 and (b - a)[1] < 0):
            a, b = b, a
        segs.append(np.stack([a, b]))
    segs.sort(key=lambda s: -float(np.hypot(*(s[1] - s[0]))))
    return segs


def _unit(v: FloatArray) -> FloatArray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 0 else v


def _chain(segments: list[FloatArray], long_edge: int) -> list[FloatArray]:
    """Greedily join segments that continue each other (close ahead, aligned) into polylines."""
    max_gap = 0.6 * long_edge
    n = len(segments)
    if n == 0:
        return []
    starts = np.array([seg[0] for seg in segments])
    ends = np.array([seg[1] for seg in segments])
    dirs = ends - starts
    lengths = np.hypot(dirs[:, 0], dirs[:, 1])
    dirs = dirs / np.maximum(lengths, 1e-9)[:, None]
    cos_max = math.cos(math.radians(12))
    free = np.ones(n, bool)
    chains: list[FloatArray] = []
    for i in range(n):
        if not free[i]:
            continue
        free[i] = False
        pts = [starts[i], ends[i]]
        for forward in (True, False):
            while free.any():
                end = pts[-1] if forward else pts[0]
                prev = pts[-2] if forward else pts[1]
                d = _unit(end - prev)
                # Candidate segments, oriented to continue the chain in this direction.
                a = starts if forward else ends
                seg_dir = dirs if forward else -dirs
                rel = a - end
                ahead = rel @ d
                lateral = np.abs(rel[:, 0] * d[1] - rel[:, 1] * d[0])
                ok = (
                    free
                    & (seg_dir @ d >= cos_max)
                    & (ahead >= -0.5 * lengths)
                    & (ahead <= max_gap)
                    & (lateral <= 2.5 + 0.08 * np.maximum(ahead, 0.0))
                )
                if not ok.any():
                    break
                dist = np.where(ok, np.hypot(rel[:, 0], rel[:, 1]), np.inf)
                best = int(np.argmin(dist))
                free[best] = False
                far = ends[best] if forward else starts[best]
                if forward and float((far - pts[-1]) @ d) > 0:
                    pts.append(far)
                elif not forward and float((far - pts[0]) @ d) > 0:
                    pts.insert(0, far)
        chains.append(np.array(pts))
    return chains


# --------------------------------------------------------------------------------------------
# measuring a candidate


def _frame(points: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """A frame along ``points``: origin, direction (pointing right), normal, and their u, v coordinates."""
    i0, i1 = int(np.argmin(points[:, 0])), int(np.argmax(points[:, 0]))
    direction = _unit(points[i1] - points[i0]) if i0 != i1 else np.array([1.0, 0.0])
    if abs(direction[0]) < 0.2:  # near vertical: order by y instead
        i0, i1 = int(np.argmin(points[:, 1])), int(np.argmax(points[:, 1]))
        direction = _unit(points[i1] - points[i0])
    if direction[0] < 0:
        direction = -direction
    normal = np.array([-direction[1], direction[0]])
    origin = points[i0]
    return origin, direction, normal, (points - origin) @ direction, (points - origin) @ normal


def _follow(chain: FloatArray, crest: BoolArray, p: WireParams, long_edge: int) -> FloatArray | None:
    """The crest pixels of one wire: those along ``chain``, then followed beyond it (x, y points)."""
    h, w = crest.shape
    x0, y0 = np.floor(chain.min(axis=0)).astype(int) - 4
    x1, y1 = np.ceil(chain.max(axis=0)).astype(int) + 5
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    band = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.polylines(band, [np.round(chain - [x0, y0]).astype(np.int32).reshape(-1, 1, 2)], False, 1, thickness=7)
    ys, xs = np.nonzero(band.astype(bool) & crest[y0:y1, x0:x1])
    if xs.size < 10:
        return None
    pts = np.stack([xs + x0, ys + y0], axis=1).astype(np.float64)
    origin, direction, normal, u, v = _frame(pts)
    if float(u.max() - u.min()) < 0.5 * p.min_span * long_edge:
        return None
    _, inliers = _robust_fit(u, v, 2)
    if inliers.sum() < 10:
        return None
    u, v = _track(u[inliers], v[inliers], origin=origin, direction=direction, normal=normal, crest=crest)
    return origin + np.outer(u, direction) + np.outer(v, normal)


def _evaluate(points: FloatArray, maps: _Maps, p: WireParams) -> Wire | None:
    """Fit one curve through ``points`` and run every test on it."""
    h, w = maps.crest.shape
    long_edge = max(h, w)
    sky = maps.sky
    origin, direction, normal, u, v = _frame(points)
    degree = 2 if float(u.max() - u.min()) < 0.4 * long_edge else 3
    coef, inliers = _robust_fit(u, v, degree)
    if inliers.sum() < 10:
        return None
    residual = float(np.sqrt(np.mean((v[inliers] - np.polyval(coef, u[inliers])) ** 2)))
    u0, u1 = float(u[inliers].min()), float(u[inliers].max())
    uu = np.arange(u0, u1 + 1.0, 1.0)
    curve = origin + np.outer(uu, direction) + np.outer(np.polyval(coef, uu), normal)
    inside = (curve[:, 0] >= 0) & (curve[:, 0] <= w - 1) & (curve[:, 1] >= 0) & (curve[:, 1] <= h - 1)
    curve, uu = curve[inside], uu[inside]
    if curve.shape[0] < 10:
        return None
    span = float(uu[-1] - uu[0])
    # Profiles every other pixel along the curve (plenty for medians), repeated back to every pixel.
    prof = _profiles(
        curve[::2],
        uu[::2],
        coef=coef,
        direction=direction,
        normal=normal,
        ridge=maps.ridge,
        blackhat=maps.blackhat,
        sky=sky,
        p=p,
    )
    prof = {k: np.repeat(v, 2, axis=0)[: len(curve)] for k, v in prof.items()}
    on_sky, seen = prof["on_sky"], prof["seen"]
    over_sky = float(on_sky.mean())
    support = float(seen[on_sky].mean()) if on_sky.any() else 0.0
    core = seen & on_sky
    if core.sum() < 5:
        return None
    contrast = float(np.median(prof["peak"][core]))
    width = float(np.median(prof["width"][core]))
    asym = float(np.median(prof["asym"][core])) / max(contrast, 1.0)
    both = float(prof["both"][core].mean())
    clutter = float(prof["clutter"][core].mean())
    # Sag: largest deviation of the curve from its chord.
    chord = _unit(curve[-1] - curve[0])
    sag = float(np.abs((curve - curve[0]) @ np.array([-chord[1], chord[0]])).max()) / max(span, 1.0)
    angle = abs(math.degrees(math.atan2(curve[-1][1] - curve[0][1], curve[-1][0] - curve[0][0])))
    angle = min(angle, 180.0 - angle)
    # Where to mask: seen, uncluttered, with sky on both sides — and short stretches between two
    # such runs where the wire looks the same (a cloud edge the sky mask missed).
    alike = seen & ~prof["clutter"] & (prof["width"] <= 2.0 * width + 1) & (prof["peak"] >= 0.5 * contrast)
    clean = _bridge(alike & on_sky & prof["both"], alike, max_gap=max(8, round(0.05 * long_edge)))
    wire = Wire(
        curve=curve,
        clean=clean,
        width=width,
        contrast=contrast,
        span=span,
        support=support,
        over_sky=over_sky,
        residual=residual,
        sky_both_sides=both,
        asymmetry=asym,
        angle_deg=angle,
        clutter=clutter,
    )
    # A wire that crosses a corner of the frame (enters at one edge, leaves at another) is as long as
    # the frame lets it be: it needs less of the frame's long edge.
    at_edge = [min(x, y, w - 1 - x, h - 1 - y) <= 3.0 for x, y in (curve[0], curve[-1])]
    min_span = p.min_span * (p.corner_span_factor if all(at_edge) else 1.0)
    checks = {
        "span": span >= min_span * long_edge,
        "support": support >= p.min_support,
        "over_sky": over_sky >= p.min_over_sky,
        "residual": residual <= p.max_residual,
        "sag": sag <= p.max_sag,
        "angle": angle <= p.max_angle_deg,
        "width": width <= p.max_width,
        "contrast": contrast >= p.min_contrast,
        "sharpness": contrast >= p.min_sharpness * max(width, 1.0),
        "asymmetry": asym <= p.max_asymmetry,
        "sky": both >= p.min_sky_both_sides,
        "clutter": clutter <= p.max_clutter,
    }
    wire.rejected = [name for name, ok in checks.items() if not ok]
    wire.score = _score(wire, replace(p, min_span=min_span), long_edge)
    if not wire.rejected and wire.score < p.min_score:
        wire.rejected.append("score")
    return wire


def _bridge(flags: BoolArray, allowed: BoolArray, max_gap: int) -> BoolArray:
    """``flags`` with gaps of at most ``max_gap`` between two True runs filled where ``allowed``."""
    out = flags.copy()
    idx = np.flatnonzero(flags)
    if idx.size < 2:
        return out
    for a, b in itertools.pairwise(idx):
        if 1 < b - a <= max_gap + 1 and allowed[a + 1 : b].all():
            out[a + 1 : b] = True
    return out


def _merge_occluded(
    candidates: list[tuple[FloatArray, Wire]], maps: _Maps, p: WireParams
) -> list[tuple[FloatArray, Wire]]:
    """Join candidates that are two visible stretches of one wire (hidden between by a tree, a rock).

    Two candidates join when one smooth curve fits both within the residual limit and they
    do not overlap along it (parallel wires overlap; stretches of one wire follow each other).
    """
    merged = True
    cands = sorted(candidates, key=lambda c: -c[1].span)
    while merged:
        merged = False
        for i in range(len(cands)):
            for j in range(i + 1, len(cands)):
                wi, wj = cands[i][1], cands[j][1]
                if wi.clutter > p.max_clutter or wj.clutter > p.max_clutter:
                    continue
                if abs(wi.angle_deg - wj.angle_deg) > 20.0:
                    continue
                a, b = cands[i][0], cands[j][0]
                both = np.concatenate([a, b])
                _, _, _, u, v = _frame(both)
                ua, ub = u[: len(a)], u[len(a) :]
                overlap = min(ua.max(), ub.max()) - max(ua.min(), ub.min())
                if overlap > 0.1 * min(np.ptp(ua), np.ptp(ub)):
                    continue
                coef, inliers = _robust_fit(u, v, 3)
                if inliers.mean() < 0.95:
                    continue
                rms = float(np.sqrt(np.mean((v[inliers] - np.polyval(coef, u[inliers])) ** 2)))
                if rms > p.max_residual:
                    continue
                wire = _evaluate(both, maps, p)
                if wire is None or len(wire.rejected) > len(cands[i][1].rejected):
                    continue
                cands[i] = (both, wire)
                del cands[j]
                merged = True
                break
            if merged:
                break
    return cands


def _robust_fit(u: FloatArray, v: FloatArray, degree: int) -> tuple[FloatArray, BoolArray]:
    inliers = np.ones(u.shape, bool)
    coef = np.polyfit(u, v, 1)
    for tol in (4.0, 2.0, 1.5):
        if inliers.sum() <= degree + 2:
            break
        coef = np.polyfit(u[inliers], v[inliers], degree)
        inliers = np.abs(v - np.polyval(coef, u)) <= tol
    return coef, inliers


def _track(
    u: FloatArray,
    v: FloatArray,
    *,
    origin: FloatArray,
    direction: FloatArray,
    normal: FloatArray,
    crest: BoolArray,
    max_gap: int = 12,
    window: float = 40.0,
) -> tuple[FloatArray, FloatArray]:
    """Follow the wire beyond its known points (``u``, ``v``), one pixel at a time, both ways.

    Each step predicts the next position from a line fitted to the last ``window`` px of the
    wire and takes the nearest crest pixel within 2 px across it; the walk stops after
    ``max_gap`` steps without one, or at the frame's edge. Following locally, rather than
    extrapolating one global fit, keeps up with a catenary that steepens toward its pole.
    """
    h, w = crest.shape
    ox, oy = float(origin[0]), float(origin[1])
    dx, dy = float(direction[0]), float(direction[1])
    nx, ny = float(normal[0]), float(normal[1])
    order = np.argsort(u)
    us, vs = [float(x) for x in u[order]], [float(x) for x in v[order]]
    for sign in (1.0, -1.0):
        pts_u = us if sign > 0 else us[::-1]
        pts_v = vs if sign > 0 else vs[::-1]
        cur, gap, step = pts_u[-1], 0, 0
        slope, icept = 0.0, pts_v[-1]
        while gap <= max_gap:
            cur += sign
            if step % 8 == 0:
                # Points are appended in walking order, so the recent ones are at the tail.
                tail_u = np.asarray(pts_u[-int(window) :])
                tail_v = np.asarray(pts_v[-int(window) :])
                near = np.abs(tail_u - cur) <= window
                if near.sum() >= 4:
                    slope, icept = _line_fit(tail_u[near], tail_v[near], slope, icept)
            step += 1
            pred = slope * cur + icept
            best = None
            bx, by = ox + cur * dx + pred * nx, oy + cur * dy + pred * ny
            for d in (0, -1, 1, -2, 2):
                xi, yi = round(bx + d * nx), round(by + d * ny)
                if not (0 <= xi < w and 0 <= yi < h):
                    gap = max_gap + 1
                    break
                if crest[yi, xi]:
                    best = pred + d
                    break
            if best is None:
                gap += 1
                continue
            gap = 0
            pts_u.append(cur)
            pts_v.append(best)
        if sign > 0:
            us, vs = pts_u, pts_v
        else:
            us, vs = pts_u[::-1], pts_v[::-1]
    return np.asarray(us), np.asarray(vs)


def _line_fit(u: FloatArray, v: FloatArray, slope: float, icept: float) -> tuple[float, float]:
    """Least-squares line v = slope·u + icept (the previous one when ``u`` has no spread)."""
    mu, mv = float(u.mean()), float(v.mean())
    var = float(((u - mu) ** 2).sum())
    if var <= 1e-9:
        return slope, icept
    k = float(((u - mu) * (v - mv)).sum()) / var
    return k, mv - k * mu


def _profiles(
    curve: FloatArray,
    uu: FloatArray,
    *,
    coef: FloatArray,
    direction: FloatArray,
    normal: FloatArray,
    ridge: BoolArray,
    blackhat: npt.NDArray[np.uint8],
    sky: Sky,
    p: WireParams,
) -> dict[str, npt.NDArray[Any]]:
    """Per point of ``curve``: is the wire seen, over the sky, how dark, how wide, what is beside it.

    Samples the black-hat across the curve (along its local normal) to measure the dip's
    peak and full width at half maximum, then reads the closed (wire-free) value and the
    sky mask a little beyond the wire on both sides.
    """
    h, w = blackhat.shape
    slope = np.polyval(np.polyder(coef), uu)
    tangents = direction[None, :] + slope[:, None] * normal[None, :]
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    normals = np.stack([-tangents[:, 1], tangents[:, 0]], axis=1)
    reach = 2 * p.kernel_px
    offsets = np.arange(-reach, reach + 1, dtype=np.float64)
    xi = np.clip(np.round(curve[:, 0:1] + offsets[None, :] * normals[:, 0:1]).astype(int), 0, w - 1)
    yi = np.clip(np.round(curve[:, 1:2] + offsets[None, :] * normals[:, 1:2]).astype(int), 0, h - 1)
    bh = blackhat[yi, xi].astype(np.float64)  # (points, offsets)
    c = reach
    peak = bh[:, c - 1 : c + 2].max(axis=1)
    # Full width at half maximum, counted on the contiguous run around the centre.
    above = bh >= (peak[:, None] / 2.0)
    left = np.argmin(above[:, c::-1], axis=1)  # first offset (going left) that is below half
    left = np.where(above[:, c::-1].all(axis=1), c + 1, left)
    right = np.argmin(above[:, c:], axis=1)
    right = np.where(above[:, c:].all(axis=1), reach + 1, right)
    width = (left + right - 1).astype(np.float64)
    width_est = float(np.median(width)) if width.size else 1.0
    side = int(min(reach, max(3, math.ceil(width_est / 2.0) + 3)))
    va = sky.closed[yi[:, c - side], xi[:, c - side]].astype(np.float64)
    vb = sky.closed[yi[:, c + side], xi[:, c + side]].astype(np.float64)
    both = sky.mask[yi[:, c - side], xi[:, c - side]] & sky.mask[yi[:, c + side], xi[:, c + side]]
    cx, cy = xi[:, c], yi[:, c]
    near = cv2.dilate(ridge.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    # Clutter: other thin dark things just beside the wire (the twigs of a bare tree, a lattice).
    floor = np.maximum(p.min_contrast * 0.5, 0.25 * peak)
    clutter = _clutter(bh, c, start=side + 1, length=p.clutter_px, floor=floor)
    return {
        "clutter": clutter,
        "seen": near[cy, cx],
        "on_sky": sky.mask[cy, cx],
        "peak": peak,
        "width": width,
        "asym": np.abs(va - vb),
        "both": both,
    }


def _clutter(
    bh: FloatArray, centre: int, *, start: int, length: int, floor: FloatArray, persist: int = 8
) -> npt.NDArray[np.bool_]:
    """Per profile: is there a short dark crest in either flank (``start``…``start+length`` from the centre)?

    A crest is a local maximum of the black-hat across the wire above ``floor``; the wire's own
    fading edge is monotonic and never counts. Crests that continue for ``persist`` profiles in a
    row (drifting at most one offset per profile) are *other wires* running beside or crossing
    at a shallow angle, which is normal for a bundle of conductors. What remains — crests that
    come and go — is clutter: the twigs of a bare tree, a lattice, foliage.
    """
    n, m = bh.shape
    crest = np.zeros((n, m), np.uint8)
    crest[:, 1:-1] = (bh[:, 1:-1] > bh[:, :-2]) & (bh[:, 1:-1] >= bh[:, 2:]) & (bh[:, 1:-1] >= floor[:, None])
    if n == 0 or not crest.any():
        return np.zeros(n, bool)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(crest, connectivity=8)
    short = stats[:, cv2.CC_STAT_HEIGHT] < persist  # extent along the wire (rows = profiles)
    short[0] = False
    loose = short[labels]
    cols = np.r_[centre - start - length : centre - start + 1, centre + start : centre + start + length + 1]
    cols = cols[(cols >= 0) & (cols < m)]
    return np.asarray(loose[:, cols].any(axis=1), dtype=bool)


def _score(wire: Wire, p: WireParams, long_edge: int) -> float:
    """A 0–1 confidence from how comfortably each test passed (for the report and the threshold)."""

    def ramp(x: float, lo: float, hi: float) -> float:
        return float(min(1.0, max(0.0, (x - lo) / (hi - lo)))) if hi > lo else 1.0

    parts = [
        ramp(wire.span / long_edge, p.min_span * 0.5, min(1.0, p.min_span * 2)),
        ramp(wire.support, p.min_support * 0.5, 1.0),
        ramp(wire.sky_both_sides, p.min_sky_both_sides * 0.5, 1.0),
        ramp(wire.contrast, p.min_contrast * 0.5, p.min_contrast * 3),
        1.0 - ramp(wire.asymmetry, p.max_asymmetry * 0.5, p.max_asymmetry * 2),
    ]
    return float(np.prod(parts) ** (1.0 / len(parts)))


def _dedupe(wires: list[Wire]) -> list[Wire]:
    """Drop a wire whose curve runs within 2 px of a longer one's for most of its length."""
    wires = sorted(wires, key=lambda wr: -wr.span)
    kept: list[Wire] = []
    for wire in wires:
        dup = False
        for other in kept:
            d = _curve_distance(wire.curve, other.curve)
            if np.mean(d <= max(2.0, other.width)) > 0.7:
                dup = True
                break
        if not dup:
            kept.append(wire)
    return kept


def _curve_distance(a: FloatArray, b: FloatArray) -> FloatArray:
    """For every point of ``a`` (subsampled), the distance to the nearest point of ``b``."""
    sa = a[:: max(1, len(a) // 100)]
    sb = b[:: max(1, len(b) // 200)]
    d = np.sqrt(((sa[:, None, :] - sb[None, :, :]) ** 2).sum(axis=2))
    return np.asarray(d.min(axis=1))


# --------------------------------------------------------------------------------------------
# full-resolution mask


def _full_res_mask(
    work: WorkingImage, wire: Wire, tile_px: int, others: list[tuple[list[FloatArray], int]]
) -> Region | None:
    """``wire``'s mask at full resolution; ``others`` (the other wires) are kept out of the noise estimates."""
    image = work.full
    H, W = image.shape[:2]
    s = work.scale
    width_full = max(1.0, wire.width / s)
    half_band = math.ceil(width_full / 2.0 + max(1.5, wire.residual / s) + 1.0)
    k_full = int(2 * math.ceil(width_full) + 3) | 1
    pad = half_band + k_full
    continued = wire.continued if wire.continued.size == len(wire.curve) else np.zeros(len(wire.curve), bool)
    cbright = wire.continued_bright if wire.continued_bright.size == len(wire.curve) else np.zeros_like(continued)
    curve, (clean, continued, cbright) = _to_edges(
        work.to_full(wire.curve), [wire.clean, continued, cbright], (W, H), 2 * half_band
    )
    x0, y0, x1, y1 = _padded_box(curve, pad, W, H)
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    kernel = np.asarray(cv2.getStructuringElement(cv2.MORPH_RECT, (k_full, k_full)), dtype=np.uint8)
    ring_kernel = np.ones((2 * half_band + 1, 2 * half_band + 1), np.uint8)
    threshold = max(3.0, 0.12 * wire.contrast)
    search_full = 1.0 / s + 1.0  # the course beyond the sky is known to ±1 working px
    # Walk the curve in pieces of ~tile_px full-resolution px.
    lengths = np.r_[0.0, np.cumsum(np.hypot(*np.diff(curve, axis=0).T))]
    n_tiles = max(1, math.ceil(lengths[-1] / tile_px))
    bounds = np.searchsorted(lengths, np.linspace(0, lengths[-1], n_tiles + 1))
    # Every point that a tile can mask from: a tile without one adds nothing to the mask.
    marked = clean | continued if continued.size else clean
    for a, b in _tile_slices(curve, bounds, tile_px):
        piece = curve[a:b]
        if piece.shape[0] < 2 or not marked[a:b].any():
            continue
        tx0, ty0, tx1, ty1 = _padded_box(piece, pad, W, H)
        crop = image[ty0:ty1, tx0:tx1]
        value = value_channel(crop)
        if wire.light:
            value = np.asarray(255 - value, dtype=np.uint8)
        bh = np.asarray(cv2.morphologyEx(value, cv2.MORPH_BLACKHAT, kernel), dtype=np.uint8)
        # Other wires running alongside are not the background's noise.
        neighbours = _neighbours(others, value.shape, (tx0, ty0), pad)
        band = np.zeros(value.shape, np.uint8)
        wide = np.zeros(value.shape, np.uint8)
        for run in _runs(clean[a:b]):
            pts = np.round(piece[run] - [tx0, ty0]).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(band, [pts], False, 1, thickness=2 * half_band + 1)
            cv2.polylines(wide, [pts], False, 1, thickness=2 * (COMPANION_REACH * half_band) + 1)
        if band.any():
            mask[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] |= _sky_mask(
                bh, band, wide, neighbours, ring_kernel=ring_kernel, threshold=threshold, width=width_full
            )
        if continued.size:
            seg = slice(a, b)
            for bright in (False, True):
                flags = continued[seg] & (cbright[seg] if bright else ~cbright[seg])
                if flags.any():
                    m = _continued_mask(
                        value,
                        bh,
                        piece - [tx0, ty0],
                        flags,
                        sky_band=band,
                        neighbours=neighbours,
                        bright=bright,
                        width=width_full,
                        search=search_full,
                        threshold=threshold,
                        kernel=kernel,
                    )
                    mask[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] |= m
    details = wire.measurements(s)
    return crop_to_mask("power_line", mask, (x0, y0), wire.score, details)


def _tile_slices(curve: FloatArray, bounds: npt.NDArray[np.intp], tile_px: int) -> list[tuple[int, int]]:
    """The ``curve[a:b]`` of each mask tile: cut every ``tile_px`` of arc length (``bounds``), one point
    shared with the tile before, and split at a jump (the separator before :func:`follow_fit`'s points,
    whose every tile would otherwise be the same points on a frame-wide box); each slice once."""
    steps = np.hypot(*np.diff(curve, axis=0).T)
    jumps = np.flatnonzero(steps > tile_px / 2.0) + 1  # a jump lies between curve[j - 1] and curve[j]
    out: list[tuple[int, int]] = []
    for t in range(len(bounds) - 1):
        a, b = max(0, int(bounds[t]) - 1), int(min(len(curve), bounds[t + 1] + 1))
        for j in jumps[(jumps > a) & (jumps < b)]:
            out.append((a, int(j)))
            a = int(j)
        out.append((a, b))
    return list(dict.fromkeys(out))


def _to_edges(
    curve: FloatArray, flags: list[BoolArray], size: tuple[int, int], reach: float
) -> tuple[FloatArray, list[BoolArray]]:
    """``curve`` (full-resolution points) with an end that stops within ``reach`` of the frame's edge
    carried on straight past it (the last pixels of a wire that leaves the frame), ``flags`` with it."""
    w, h = size
    for at_start in (True, False):
        if len(curve) < 3:
            break
        end, prev = (
            (curve[0], curve[min(len(curve) - 1, 4)]) if at_start else (curve[-1], curve[max(0, len(curve) - 5)])
        )
        if min(end[0], end[1], w - 1 - end[0], h - 1 - end[1]) > reach:
            continue
        step = _unit(end - prev)
        extra = end + np.outer(np.arange(1.0, reach + 1.0), step)
        i = 0 if at_start else -1
        if at_start:
            curve = np.concatenate([extra[::-1], curve])
            flags = [np.r_[np.full(len(extra), f[i]), f] for f in flags]
        else:
            curve = np.concatenate([curve, extra])
            flags = [np.r_[f, np.full(len(extra), f[i])] for f in flags]
    return curve, flags


def _sky_mask(
    bh: npt.NDArray[np.uint8],
    band: npt.NDArray[np.uint8],
    wide: npt.NDArray[np.uint8],
    neighbours: npt.NDArray[np.uint8],
    *,
    ring_kernel: npt.NDArray[np.uint8],
    threshold: float,
    width: float,
) -> BoolArray:
    """One tile's mask over the sky: the dark pixels in ``band``, and a second wire beside it in ``wide``.

    The band only covers stretches with sky on both sides (``wire.clean``), so no sky test here.
    Threshold: a fraction of the wire's own darkness here, and above the sky's noise (its black-hat
    just outside the band, where JPEG blocks and grain show).
    """
    inside = band.astype(bool)
    outside = cv2.dilate(band, ring_kernel).astype(bool) & ~inside & ~neighbours.astype(bool)
    noise = _percentile_u8(bh[outside], 75)
    peak = _percentile_u8(bh[inside], 98)
    local = max(threshold, 0.1 * peak, 1.5 * noise)
    m = ((bh >= local) & inside).astype(np.uint8)
    # Close pinholes along the wire, within the band.
    m = np.asarray(cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)), dtype=np.uint8) & band
    # A companion must be as dark as the wire itself (a roof or rock edge just below the sky line is weaker).
    return m.astype(bool) | _companions(bh >= max(local, 0.5 * peak), wide, band, neighbours, width)


def _companions(
    dark: BoolArray,
    wide: npt.NDArray[np.uint8],
    band: npt.NDArray[np.uint8],
    neighbours: npt.NDArray[np.uint8],
    width: float,
) -> BoolArray:
    """A second wire running beside this one, a few px off (a bundle's conductors seen as one crest
    at working resolution): the thin dark runs in ``wide`` beside ``band`` that run along most of it."""
    out = np.zeros(dark.shape, bool)
    # As dark as the wire (the caller's threshold): not the faint JPEG ringing that runs beside it.
    beside = dark & wide.astype(bool) & ~neighbours.astype(bool) & ~band.astype(bool)
    if not beside.any():
        return out
    ys, xs = np.nonzero(band)
    along = max(int(np.ptp(xs)), int(np.ptp(ys))) + 1
    _, labels, stats, _ = cv2.connectedComponentsWithStats(beside.astype(np.uint8), connectivity=8)
    extent = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    keep = (extent >= COMPANION_MIN_RUN * along) & (stats[:, cv2.CC_STAT_AREA] <= extent * (2.0 * width + 3.0))
    keep[0] = False
    if keep.any():
        out = np.asarray(keep[labels], dtype=bool)
        out = np.asarray(cv2.dilate(out.astype(np.uint8), np.ones((3, 3), np.uint8)), dtype=bool) & wide.astype(bool)
    return out


def _padded_box(points: FloatArray, pad: int, width: int, height: int) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1`` (end-exclusive) around ``points``, ``pad`` px wider on every side, inside the image."""
    return (
        max(0, math.floor(points[:, 0].min()) - pad),
        max(0, math.floor(points[:, 1].min()) - pad),
        min(width, math.ceil(points[:, 0].max()) + pad + 1),
        min(height, math.ceil(points[:, 1].max()) + pad + 1),
    )


def _neighbours(
    others: list[tuple[list[FloatArray], int]], shape: tuple[int, ...], origin: tuple[int, int], pad: int
) -> npt.NDArray[np.uint8]:
    """The other wires (runs of full-resolution points, each with its thickness) drawn on a tile of
    ``shape`` whose top-left corner is ``origin``; those within ``pad`` px of it count."""
    neighbours = np.zeros(shape, np.uint8)
    th, tw = shape[:2]
    for runs, thick in others:
        for run_pts in runs:
            local = run_pts - list(origin)
            near = (local[:, 0] > -pad) & (local[:, 0] < tw + pad)
            near &= (local[:, 1] > -pad) & (local[:, 1] < th + pad)
            if near.sum() >= 2:
                pts = np.round(local[near]).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(neighbours, [pts], False, 1, thickness=thick)
    return neighbours


def _continued_mask(
    value: npt.NDArray[np.uint8],
    blackhat: npt.NDArray[np.uint8],
    piece: FloatArray,
    flags: BoolArray,
    *,
    sky_band: npt.NDArray[np.uint8],
    neighbours: npt.NDArray[np.uint8],
    bright: bool,
    width: float,
    search: float,
    threshold: float,
    kernel: npt.NDArray[np.uint8],
) -> BoolArray:
    """The mask of one tile's continued stretches (``flags`` along ``piece``, tile coordinates).

    Beyond the sky the background is textured, so the band is narrow and follows the line's own
    core (refined here, at full resolution), and the threshold is set by the texture beside it
    (the black-hat in a ring around the band) as well as by the line's darkness here. A grey wire
    in front of something darker is a bright line: the same on the inverted image.
    """
    signal = (255 - value) if bright else value
    resp = cv2.morphologyEx(signal, cv2.MORPH_BLACKHAT, kernel) if bright else blackhat
    half = math.ceil(width / 2.0)
    band = np.zeros(value.shape, np.uint8)
    for run in _runs(flags):
        centre = refine_course(signal, piece[run], width, search)
        cv2.polylines(band, [np.round(centre).astype(np.int32).reshape(-1, 1, 2)], False, 1, thickness=2 * half + 1)
    band &= 1 - sky_band
    inside = band.astype(bool)
    if not inside.any():
        return inside
    ring = np.ones((4 * half + 3, 4 * half + 3), np.uint8)
    outside = cv2.dilate(band, ring).astype(bool) & ~inside & ~(sky_band | neighbours).astype(bool)
    noise = _percentile_u8(resp[outside], 75)
    peak = _percentile_u8(resp[inside], 90)
    local = max(threshold, 0.3 * peak, 1.5 * noise)
    m = ((resp >= local) & inside).astype(np.uint8)
    m = np.asarray(cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)), dtype=np.uint8) & band
    return np.asarray(m, dtype=bool)


def _percentile_u8(values: npt.NDArray[np.uint8], q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) for uint8 values, from a histogram (0 if empty)."""
    if values.size == 0:
        return 0.0
    cum = np.cumsum(np.bincount(values, minlength=256))
    pos = q / 100.0 * (values.size - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    v_lo = float(np.searchsorted(cum, lo, side="right"))
    v_hi = float(np.searchsorted(cum, hi, side="right"))
    return v_lo + (v_hi - v_lo) * (pos - lo)


def _runs(flags: BoolArray) -> list[slice]:
    """Slices of the consecutive True stretches of ``flags``."""
    padded = np.r_[False, flags, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
