"""Lit EXIT signs: every sign in the six real corridor frames, none in photos without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.cleanup.exit_signs import LEVELS, detect_exit_signs, sign_regions
from worker.cleanup.working import WorkingImage


def frames(shared_data: Path) -> list[tuple[str, np.ndarray]]:
    files = sorted((shared_data / "exit_signs").glob("*.jpg"))
    if not files:
        pytest.skip("no EXIT sign frames in shared data")
    return [(f.name, np.asarray(Image.open(f).convert("RGB"))) for f in files]


def test_every_frame_has_its_sign_found_as_stored_sideways(shared_data: Path) -> None:
    """The frames are stored rotated by 90° (no EXIF): detection must not care."""
    for name, image in frames(shared_data):
        work = WorkingImage(image)
        signs = detect_exit_signs(work)
        assert signs, name
        regions = sign_regions(work, signs)
        assert all(r.kind == "exit_sign" and r.area_px > 0 for r in regions)


def test_rotation_does_not_change_what_is_found(shared_data: Path) -> None:
    for name, image in frames(shared_data):
        upright = np.ascontiguousarray(np.rot90(image, -1))
        assert len(detect_exit_signs(WorkingImage(upright))) == len(detect_exit_signs(WorkingImage(image))), name


def test_the_mask_covers_the_lit_face_and_a_margin(shared_data: Path) -> None:
    import cv2

    _, image = frames(shared_data)[0]
    work = WorkingImage(image)
    (region,) = sign_regions(work, detect_exit_signs(work))
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    x0, y0, x1, y1 = region.box
    lit = (hsv[..., 0] >= 60) & (hsv[..., 0] <= 88) & (hsv[..., 1] >= 150) & (hsv[..., 2] >= 150)
    lit_in_box = lit[y0:y1, x0:x1]
    assert lit_in_box.sum() > 50
    assert (region.mask & lit_in_box).sum() / lit_in_box.sum() > 0.95
    # The lit face, its housing and its glow; not a slab of the wall.
    assert region.area_px < 10 * lit_in_box.sum()
    assert region.area_px < 0.05 * image.shape[0] * image.shape[1]


def test_no_signs_in_photos_without_one(astronaut: np.ndarray, coffee: np.ndarray) -> None:
    from skimage import data
    from sklearn.datasets import load_sample_image

    photos = [astronaut, coffee, data.chelsea(), data.rocket(), load_sample_image("flower.jpg")]
    for level in ("conservative", "moderate"):
        for image in photos:
            assert detect_exit_signs(WorkingImage(np.ascontiguousarray(image)), level) == []


def test_green_foliage_and_red_clothes_are_not_signs(shared_data: Path) -> None:
    """Saturated greens and reds in the face photos and FiveK pairs, at the default level."""
    files = sorted((shared_data / "faces").glob("*")) + sorted((shared_data / "pairs").glob("*/*/*"))
    found = [f.name for f in files if detect_exit_signs(WorkingImage(np.asarray(Image.open(f).convert("RGB"))))]
    assert found == []


def test_red_signs_only_at_aggressive() -> None:
    assert (0, 8) not in LEVELS["conservative"].hues and (0, 8) not in LEVELS["moderate"].hues
    assert (0, 8) in LEVELS["aggressive"].hues
