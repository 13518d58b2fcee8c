"""An accepted wire is followed beyond the sky where the same line is seen — and nothing else is taken."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from benchmarks.cleanup_data import catenary, jpeg_roundtrip, wire_coverage
from worker.cleanup.region import Region
from worker.cleanup.sky import find_sky
from worker.cleanup.wire_continuation import _reach
from worker.cleanup.wires import LEVELS, WireParams, detect_wires, wire_regions
from worker.cleanup.working import WorkingImage

WITHOUT = replace(LEVELS["conservative"], continuation=None)


@pytest.fixture(scope="module")
def china() -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return np.ascontiguousarray(load_sample_image("china.jpg"))


@pytest.fixture(scope="module")
def rocket() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.rocket())


def paint(image: np.ndarray, coverages: list[np.ndarray], grey: float = 25.0) -> np.ndarray:
    """``image`` with dark lines of the given coverages (0–1) painted over it, JPEG round-tripped."""
    out = image.astype(np.float32)
    for cov in coverages:
        out = out * (1 - cov[..., None]) + grey * cov[..., None]
    return jpeg_roundtrip(np.clip(np.round(out), 0, 255).astype(np.uint8))


def mask_of(image: np.ndarray, params: WireParams | None = None) -> tuple[np.ndarray, list[Region]]:
    work = WorkingImage(image)
    regions = wire_regions(work, detect_wires(work, "conservative", find_sky(work), params=params))
    full = np.zeros(image.shape[:2], bool)
    for r in regions:
        r.paste(full)
    return full, regions


def china_wire(shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """Points of a wire that crosses the sky above the pagoda and runs into the tree on the right."""
    w = shape[1]
    return catenary(w, 170 * scale, 1.2 * w, w * w / (8.0 * 40 * scale))


@pytest.mark.parametrize(("scale", "thickness"), [(1.0, 3.0), (2.5, 4.0)])
def test_a_wire_running_into_a_tree_is_followed_over_the_tree(
    china: np.ndarray, scale: float, thickness: float
) -> None:
    """At 2.5× the course found on the working copy is refined at full resolution."""
    image = china if scale == 1 else cv2.resize(china, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    h, w = image.shape[:2]
    cov = wire_coverage((h, w), china_wire(image.shape, scale), thickness)
    wired = paint(image, [cov])
    truth = cov >= 0.1
    over_tree = truth.copy()
    over_tree[:, : int(0.92 * w)] = False  # the tree's crown, right of the sky the wire crosses
    mask, regions = mask_of(wired)
    before, _ = mask_of(wired, WITHOUT)
    assert regions
    assert (before & over_tree).sum() <= 0.1 * over_tree.sum()  # the detector alone leaves it in…
    assert (mask & over_tree).sum() >= 0.5 * over_tree.sum()  # …the continuation takes it
    added = mask & ~before
    assert (added & truth).sum() >= 0.8 * added.sum()  # and what it adds is the wire
    assert max(r.details["continued_px"] for r in regions) > 0


def segment(wire: np.ndarray, x0: float, angle_deg: float, length: float, dy: float = 0.0) -> np.ndarray:
    """A straight line from the wire's course at ``x0`` (shifted ``dy``), at ``angle_deg`` from the horizontal."""
    y0 = float(np.interp(x0, wire[:, 0], wire[:, 1])) + dy
    t = np.radians(angle_deg)
    return np.array([[x0, y0], [x0 + length * np.cos(t), y0 + length * np.sin(t)]])


def others_taken(image: np.ndarray, wire: np.ndarray, others: list[np.ndarray]) -> tuple[int, int, float]:
    """Paint the wire and the other lines; (pixels of the others, how many of them are masked, wire recall)."""
    h, w = image.shape[:2]
    wcov = wire_coverage((h, w), wire, 3.0)
    covs = [wire_coverage((h, w), o, 3.0) for o in others]
    mask, _ = mask_of(paint(image, [wcov, *covs]))
    near_wire = cv2.dilate((wcov >= 0.1).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    other = np.zeros((h, w), bool)
    for c in covs:
        other |= c >= 0.1
    other &= ~near_wire
    truth = wcov >= 0.1
    return int(other.sum()), int((mask & other).sum()), float((mask & truth).sum() / truth.sum())


def test_branches_leaving_the_wire_in_the_tree_are_not_taken(china: np.ndarray) -> None:
    wire = china_wire(china.shape)
    branches = [segment(wire, 600, 35, 70), segment(wire, 615, -40, 60)]
    n, taken, recall = others_taken(china, wire, branches)
    assert n > 200
    assert taken == 0
    assert recall > 0.8


def test_a_railing_beside_where_the_wire_would_go_is_not_taken(china: np.ndarray) -> None:
    """The wire ends at the tree; a parallel dark line a few pixels off its course goes on: left alone."""
    wire = china_wire(china.shape)
    ends = wire[wire[:, 0] <= 585]
    for dy in (8.0, -7.0):
        railing = wire[wire[:, 0] >= 592] + [0.0, dy]
        n, taken, _ = others_taken(china, ends, [railing])
        assert n > 150
        assert taken == 0, dy


def test_the_continuation_stops_where_the_wire_ends(rocket: np.ndarray) -> None:
    """A wire that ends in front of the sky is not extended past its end (only by a gap's length at most)."""
    h, w = rocket.shape[:2]
    full = catenary(w, 100, w / 2, w * w / (8.0 * 20))
    part = full[full[:, 0] <= 0.55 * w]
    mask, regions = mask_of(paint(rocket, [wire_coverage((h, w), part, 3.0)]))
    assert len(regions) == 1
    assert not mask[:, int(0.55 * w) + 3 :].any()


def test_reach_bridges_short_gaps_and_stops_at_long_ones() -> None:
    clean = np.zeros(60, bool)
    clean[:10] = True
    seen = np.zeros(60, bool)
    seen[10:15] = True  # right after the sky
    seen[18:25] = True  # after a 3-point gap: a run of 7
    seen[40:45] = True  # after a 15-point gap: too far
    out = _reach(clean, seen, gap=5, min_run=4)
    assert out[10:25].all()  # the gap of 3 is bridged
    assert not out[25:].any()


def test_reach_needs_a_run_after_a_gap() -> None:
    """A branch crossing the course shows for a point or two: it does not carry the walk on."""
    clean = np.zeros(40, bool)
    clean[:10] = True
    seen = np.zeros(40, bool)
    seen[13:15] = True  # 2 points after a gap of 3
    seen[17:19] = True
    out = _reach(clean, seen, gap=5, min_run=4)
    assert not out.any()
    seen[20:30] = True  # a long run within reach of the last accepted point? No: 10 past the sky.
    assert not _reach(clean, seen, gap=5, min_run=4).any()
    seen[10] = True  # the line seen right at the sky's end: the walk goes on through short gaps
    seen[11:13] = True
    out = _reach(clean, seen, gap=5, min_run=4)
    assert out[10:30].all()


def test_reach_walks_both_ways_between_two_stretches_over_the_sky() -> None:
    clean = np.zeros(50, bool)
    clean[:10] = True
    clean[40:] = True
    seen = np.zeros(50, bool)
    seen[10:20] = True
    seen[32:40] = True  # seen from the other side
    out = _reach(clean, seen, gap=5, min_run=4)
    assert out[10:20].all() and out[32:40].all()
    assert not out[20:32].any()  # 12 points without evidence: not bridged
