"""The lattice fill (worker.cleanup.lattice_fill): periodic textures filled from their own repeats."""

from __future__ import annotations

import cv2
import numpy as np

from worker.cleanup.inpaint import fill_regions
from worker.cleanup.lattice_fill import LatticeParams, estimate_lattice, lattice_fill
from worker.cleanup.opencv_inpaint import OpenCVInpainter
from worker.cleanup.region import Region


def brick(h: int = 200, w: int = 240, bw: int = 36, bh: int = 14, seed: int = 0) -> np.ndarray:
    """Running-bond brick: bw × bh bricks, 2 px of pale mortar, every other course shifted by half a brick; noisy."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    course = y // bh
    along = (x + (course % 2) * (bw // 2)) % bw
    mortar = (y % bh < 2) | (along < 2)
    img = np.empty((h, w, 3), np.float32)
    img[:] = (150, 70, 50)
    img[mortar] = (200, 200, 190)
    img += rng.normal(0, 6, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def hole_at(shape: tuple[int, ...], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    mask[y0:y1, x0:x1] = True
    return mask


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    d = a[where].astype(np.float64) - b[where].astype(np.float64)
    return float(10 * np.log10(255.0**2 / np.mean(d * d)))


def test_the_lattice_of_running_bond_is_found() -> None:
    img = brick()
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lattice = estimate_lattice(grey, ~hole_at(img.shape, 70, 130, 80, 160), LatticeParams())
    assert lattice is not None
    # The shortest basis of running bond 36 × 14: (±14, 18) in (dy, dx), or one course and a whole brick.
    got = sorted((abs(round(v[0])), abs(round(v[1]))) for v in (lattice.a, lattice.b))
    assert got == [(14, 18), (14, 18)]


def test_a_brick_hole_is_filled_close_to_the_truth_where_telea_is_not() -> None:
    truth = brick()
    mask = hole_at(truth.shape, 70, 130, 80, 160)  # 60 × 80: several bricks and courses
    img = truth.copy()
    img[mask] = (40, 200, 40)  # what was there (an EXIT sign) must not matter
    out, left = lattice_fill(img, mask)
    telea = cv2.inpaint(img, mask.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    assert not left.any()
    np.testing.assert_array_equal(out[~mask], img[~mask])
    assert psnr(out, truth, mask) >= 28.0  # the noise (σ 6) alone allows ~30 dB
    assert psnr(telea, truth, mask) < 20.0


def test_a_smooth_gradient_is_left_to_the_other_fills_and_stays_smooth() -> None:
    y, x = np.mgrid[0:200, 0:240].astype(np.float32)
    img = np.stack([40 + 0.5 * x, 60 + 0.4 * y, 50 + 0.2 * (x + y)], -1).astype(np.uint8)
    mask = hole_at(img.shape, 70, 130, 80, 160)
    _, left = lattice_fill(img, mask)
    assert (left == mask).all()  # nothing repeats: not the lattice fill's
    region = Region("exit_sign", (80, 70, 160, 130), mask[70:130, 80:160], 0.9)
    filled, stats = fill_regions(img, [region], OpenCVInpainter())
    assert stats.per_region[0]["filled_with"] == "patch"
    d = filled.astype(np.float64) - img.astype(np.float64)
    assert np.abs(d).max() <= 8.0  # the patch fill alone is 14 grey levels off here; its mean with the membrane
    smooth = fill_regions(img, [region], OpenCVInpainter("smooth"))[0]
    assert np.abs(smooth.astype(np.float64) - img.astype(np.float64)).max() <= 1.0  # the membrane: exact


def test_a_hole_at_the_edge_of_the_brick_falls_back() -> None:
    img = brick()
    img[:, 125:] = (120, 140, 160)  # brick on the left, a smooth wall on the right
    mask = hole_at(img.shape, 70, 130, 85, 165)  # across the boundary
    out, left = lattice_fill(img, mask)
    assert (left == mask).all()
    np.testing.assert_array_equal(out, img)


def test_the_classical_inpainter_reports_the_lattice_fill() -> None:
    truth = brick()
    mask = hole_at(truth.shape, 70, 130, 80, 160)
    img = truth.copy()
    img[mask] = (40, 200, 40)
    region = Region("exit_sign", (80, 70, 160, 130), np.ones((60, 80), bool), 0.9)
    out, stats = fill_regions(img, [region], OpenCVInpainter("auto"))
    assert stats.per_region[0]["filled_with"] == "lattice"
    assert psnr(out, truth, mask) >= 27.0
