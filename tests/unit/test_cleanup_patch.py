"""The patch fill (worker.cleanup.patch_inpaint, worker.cleanup.bridge) and the per-crop choice of the
classical inpainter (worker.cleanup.opencv_inpaint)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from worker.cleanup.bridge import bridge_lines
from worker.cleanup.inpaint import fill_regions
from worker.cleanup.opencv_inpaint import OpenCVInpainter, choose
from worker.cleanup.patch_inpaint import hole_thickness, patch_fill, ring_texture
from worker.cleanup.region import Region

BACKGROUND = 150
LINE = 60


def ceiling(size: int = 160, seed: int = 1) -> np.ndarray:
    """A light, slightly noisy surface crossed by a dark 2 px line (y = 40 + x/2) and a vertical one (x = 100)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), BACKGROUND, np.int16) + rng.integers(-3, 4, (size, size, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    cv2.line(img, (0, 40), (size, 40 + size // 2), (LINE, LINE, LINE), 2)
    cv2.line(img, (100, 0), (100, size), (LINE + 20, LINE + 20, LINE + 20), 1)
    return img


def square(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def line_darkness(img: np.ndarray, mask: np.ndarray) -> float:
    """Mean grey level of the diagonal line's own pixels inside the mask."""
    on_line = np.zeros(mask.shape, np.uint8)
    cv2.line(on_line, (0, 40), (mask.shape[1], 40 + mask.shape[1] // 2), 1, 1)
    sel = mask & on_line.astype(bool)
    return float(img[sel].mean())


def test_only_the_masked_pixels_change() -> None:
    img = ceiling()
    mask = square(img.shape[:2], 55, 105, 60, 120)
    out = patch_fill(img, mask)
    np.testing.assert_array_equal(out[~mask], img[~mask])
    assert (out[mask] != img[mask]).any()


def test_a_straight_line_goes_on_through_the_hole() -> None:
    """The line's pixels under the hole come out dark, where Telea leaves a smear of the background."""
    img = ceiling()
    hole = img.copy()
    mask = square(img.shape[:2], 55, 105, 60, 120)
    hole[mask] = (40, 200, 40)  # what was there (an EXIT sign) must not matter
    out = patch_fill(hole, mask)
    telea = cv2.inpaint(hole, mask.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    assert line_darkness(out, mask) < LINE + 25
    assert line_darkness(telea, mask) > line_darkness(out, mask) + 25
    # …and the crossing vertical line too: darker than the background along x = 100 under the hole.
    assert out[60:100, 100].astype(float).mean() < BACKGROUND - 30


def test_a_line_that_ends_under_the_hole_is_not_drawn_across() -> None:
    """Evidence on one side only: no bridge, and the far side of the hole stays background."""
    size = 160
    img = np.full((size, size, 3), BACKGROUND, np.uint8)
    cv2.line(img, (0, 80), (90, 80), (LINE, LINE, LINE), 2)  # stops inside the hole (x 60–120)
    mask = square((size, size), 60, 100, 60, 120)
    _, drawn, bridges = bridge_lines(img, mask)
    assert bridges == [] and not drawn.any()
    out = patch_fill(img, mask)
    assert out[78:83, 105:120].astype(float).mean() > BACKGROUND - 25


def test_the_fill_is_deterministic() -> None:
    img = ceiling(seed=4)
    mask = square(img.shape[:2], 50, 110, 50, 115)
    np.testing.assert_array_equal(patch_fill(img, mask), patch_fill(img, mask))


@pytest.mark.parametrize("where", ["corner", "left", "bottom"])
def test_a_mask_touching_the_crop_border_is_filled(where: str) -> None:
    img = ceiling()
    h, w = img.shape[:2]
    box = {"corner": (0, 40, 0, 40), "left": (60, 100, 0, 30), "bottom": (130, h, 70, 110)}[where]
    mask = square((h, w), *box)
    out = patch_fill(img, mask)
    np.testing.assert_array_equal(out[~mask], img[~mask])
    # Filled with the surface around (background or line), never left black or garbage.
    assert out[mask].min() >= LINE - 20 and out[mask].max() <= BACKGROUND + 20


def test_a_hole_with_no_whole_patch_around_it_falls_back_to_telea() -> None:
    img = ceiling(size=40)
    mask = np.ones((40, 40), bool)
    mask[0, :] = False  # one known row: no 7×7 patch of known pixels anywhere
    out = patch_fill(img, mask)
    np.testing.assert_array_equal(out[~mask], img[~mask])
    assert abs(float(out[mask].mean()) - float(img[0].mean())) < 20


def sky(size: int = 200) -> np.ndarray:
    """A smooth vertical gradient, like a clear sky."""
    ramp = np.linspace(170, 220, size, dtype=np.float32)[:, None, None]
    return np.broadcast_to(ramp * np.array([0.8, 0.9, 1.0], np.float32), (size, size, 3)).astype(np.uint8).copy()


def wire_mask(size: int, y: int, width: int = 8) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y : y + width, :] = True
    return mask


def test_the_choice_is_the_membrane_for_a_thin_wire_over_smooth_sky() -> None:
    img = sky()
    mask = wire_mask(200, 90)
    assert hole_thickness(mask) <= 10 and ring_texture(img, mask) < 1.0
    assert choose(img, mask) == "smooth"


def test_the_choice_is_the_patch_fill_over_texture_or_for_a_sign() -> None:
    tiles = sky()
    tiles[:, ::12] = 90  # a tiled ceiling: a line every 12 px across the wire
    assert choose(tiles, wire_mask(200, 150)) == "patch"
    rng = np.random.default_rng(0)
    leaves = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    assert choose(leaves, wire_mask(200, 90)) == "patch"
    assert choose(sky(), square((200, 200), 60, 140, 50, 150)) == "patch"  # a sign: thick


def test_the_classical_inpainter_reports_which_fill_ran_per_region() -> None:
    img = sky(400)
    img[250:, 250:] = ceiling(size=150)  # a corner of ceiling, far from the wire
    wire = Region("power_line", (0, 40, 100, 46), np.ones((6, 100), bool), 0.9)
    sign = Region("exit_sign", (300, 300, 350, 340), np.ones((40, 50), bool), 0.9)
    out, stats = fill_regions(img, [wire, sign], OpenCVInpainter("auto"))
    assert [r["filled_with"] for r in stats.per_region] == ["smooth", "patch"]
    np.testing.assert_array_equal(out[100:290], img[100:290])  # between the two: untouched
    assert OpenCVInpainter("auto").name == "classical"
    _, fixed = fill_regions(img, [wire], OpenCVInpainter("telea"))
    assert "filled_with" not in fixed.per_region[0]  # a fixed method has nothing to choose
