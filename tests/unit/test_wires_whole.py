"""Wires removed end to end by phase 3: to the frame's edges, across short gaps, light ones too —
and nothing found in a clean sky or in a branch against it. Small images made here."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.cleanup_data import catenary, jpeg_roundtrip, wire_coverage
from worker.frame import Frame, SourceInfo
from worker.phases import PhaseContext, cleanup
from worker.profile import EditSettings

H, W = 300, 480
VISIBLE = 12.0


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A clear sky graded from deep to pale blue over the top 65 %, textured brown ground below."""
    rng = np.random.default_rng(3)
    img = np.zeros((H, W, 3), np.float32)
    t = np.linspace(0.0, 1.0, H)[:, None]
    sky = np.array([70.0, 120.0, 200.0]) * (1 - t[..., None]) + np.array([150.0, 185.0, 230.0]) * t[..., None]
    img[:] = sky
    ground = np.array([110.0, 85.0, 60.0]) + rng.normal(0.0, 14.0, size=(H - 195, W, 1))
    img[195:] = ground
    return jpeg_roundtrip(np.clip(np.round(img), 0, 255).astype(np.uint8))


def luma(image: np.ndarray) -> np.ndarray:
    return np.asarray(image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def paint(image: np.ndarray, cov: np.ndarray, grey: float) -> np.ndarray:
    out = image.astype(np.float32) * (1 - cov[..., None]) + grey * cov[..., None]
    return jpeg_roundtrip(np.clip(np.round(out), 0, 255).astype(np.uint8))


def phase3(image: np.ndarray) -> tuple[np.ndarray, dict]:
    frame = Frame("p", "p.jpg", image.copy(), SourceInfo("JPEG", W, H))
    cleanup.run([frame], PhaseContext(edit=EditSettings.resolve({})))
    return frame.image, frame.report["cleanup"]


def sagging(y_low: float, sag: float, x_from: float = -0.05, x_to: float = 1.05) -> np.ndarray:
    return catenary(W, y_low, W / 2.0, W * W / (8.0 * sag), x_from=x_from, x_to=x_to, n=400)


def still_visible(out: np.ndarray, clean: np.ndarray, wired: np.ndarray, where: np.ndarray) -> float:
    visible = where & (np.abs(luma(wired) - luma(clean)) > VISIBLE)
    left = visible & (np.abs(luma(out) - luma(clean)) > VISIBLE)
    return float(left.sum()) / max(1, int(visible.sum()))


def test_a_sagging_wire_is_removed_to_both_edges_of_the_frame(scene: np.ndarray) -> None:
    cov = wire_coverage((H, W), sagging(110.0, 30.0), 3.0)
    wired = paint(scene, cov, 20.0)
    out, report = phase3(wired)
    assert len(report["regions"]) == 1
    assert still_visible(out, scene, wired, cov >= 0.1) <= 0.05
    # The last columns too: no stub where the wire leaves the frame.
    for cols in (slice(0, 6), slice(W - 6, W)):
        edge = np.zeros((H, W), bool)
        edge[:, cols] = cov[:, cols] >= 0.1
        assert edge.any()
        assert still_visible(out, scene, wired, edge) == 0.0


def test_a_short_gap_in_a_wire_is_bridged_and_nothing_far_from_it_changes(scene: np.ndarray) -> None:
    pts = sagging(100.0, 25.0)
    left, right = pts[pts[:, 0] < 200], pts[pts[:, 0] > 212]  # a 12 px gap (hidden behind something thin)
    cov = np.maximum(wire_coverage((H, W), left, 4.0), wire_coverage((H, W), right, 4.0))
    wired = paint(scene, cov, 15.0)
    out, report = phase3(wired)
    assert len(report["regions"]) == 1  # one wire, not two pieces
    x0, _, x1, _ = report["regions"][0]["box"]
    assert x0 == 0 and x1 == W
    assert still_visible(out, scene, wired, cov >= 0.1) <= 0.05
    course = wire_coverage((H, W), pts, 4.0) > 0
    import cv2

    near = cv2.dilate(course.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    assert not (out != wired).any(axis=2)[~near].any()


def test_a_light_wire_against_a_darker_sky_is_removed(scene: np.ndarray) -> None:
    cov = wire_coverage((H, W), sagging(70.0, 20.0), 3.0)
    wired = paint(scene, cov, 245.0)
    out, report = phase3(wired)
    assert len(report["regions"]) == 1
    assert report["regions"][0]["tone"] == "light"
    assert still_visible(out, scene, wired, cov >= 0.1) <= 0.1


def test_a_clean_sky_gradient_gives_no_region(scene: np.ndarray) -> None:
    out, report = phase3(scene)
    assert report["regions"] == [] and report["reason"] == "nothing to remove"
    assert np.array_equal(out, scene)


def test_a_tree_branch_against_the_sky_is_not_a_wire(scene: np.ndarray) -> None:
    """A bough from the frame's edge: crooked, thick at the trunk and tapering, with twigs — not a wire."""
    rng = np.random.default_rng(5)
    cov = np.zeros((H, W), np.float32)
    x, y, angle = -5.0, 120.0, -0.25
    nodes = [(x, y)]
    while x < 330.0:  # limbs of 20–40 px, each bent by up to ±30° from the last
        angle = float(np.clip(angle + rng.uniform(-0.5, 0.5), -0.6, 0.3))
        step = rng.uniform(20.0, 40.0)
        x, y = x + step * np.cos(angle), y + step * np.sin(angle)
        nodes.append((x, y))
    for i in range(len(nodes) - 1):
        thick = 9.0 - 7.0 * i / len(nodes)  # tapering
        seg = np.array(nodes[i : i + 2])
        cov = np.maximum(cov, wire_coverage((H, W), seg, thick))
        for f in (0.5, 1.0):  # twigs, up and down, at every fork
            base = seg[0] + f * (seg[1] - seg[0])
            ang = rng.uniform(0.6, 1.4) * (1 if rng.random() < 0.5 else -1)
            length = rng.uniform(12.0, 35.0)
            twig = np.array([base, base + length * np.array([np.cos(ang), -np.sin(ang)])])
            cov = np.maximum(cov, wire_coverage((H, W), twig, 1.5))
    wired = paint(scene, cov, 40.0)
    _, report = phase3(wired)
    assert report["regions"] == []
