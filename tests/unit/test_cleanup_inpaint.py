"""Crop, pad, feather and write-back around each region (worker.cleanup.inpaint)."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from worker.cleanup.inpaint import CropParams, edit_mask, fill_regions, window_around
from worker.cleanup.opencv_inpaint import OpenCVInpainter
from worker.cleanup.region import Region


class Spy:
    """An inpainter that fills with one colour and records every crop it is given."""

    name = "spy"

    def __init__(self, colour: tuple[int, int, int] = (255, 0, 255)) -> None:
        self.colour = np.array(colour, np.uint8)
        self.shapes: list[tuple[int, int]] = []

    def inpaint(self, image: npt.NDArray[np.uint8], mask: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        self.shapes.append(image.shape[:2])
        out = image.copy()
        out[mask > 0] = self.colour
        return out


def wire_region(shape: tuple[int, int], y: int, width: int = 3) -> Region:
    """A horizontal band across the whole frame: a wire's mask."""
    w = shape[1]
    mask = np.zeros((width, w), bool)
    mask[:] = True
    return Region("power_line", (0, y, w, y + width), mask, 0.9)


def outside_edit_masks(shape: tuple[int, int], regions: list[Region], feather: int) -> npt.NDArray[np.bool_]:
    full = np.zeros(shape, np.uint8)
    for r in regions:
        x0, y0, x1, y1 = r.box
        full[y0:y1, x0:x1] |= r.mask.astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * feather + 1, 2 * feather + 1))
    return ~cv2.dilate(full, k).astype(bool)


def test_pixels_outside_the_dilated_masks_are_bit_identical(astronaut: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    regions = []
    for _ in range(5):
        x0, y0 = int(rng.integers(0, 400)), int(rng.integers(0, 400))
        mask = rng.random((60, 90)) > 0.6
        regions.append(Region("exit_sign", (x0, y0, x0 + 90, y0 + 60), mask, 0.8))
    out, _ = fill_regions(astronaut, regions, OpenCVInpainter("telea"))
    outside = outside_edit_masks(astronaut.shape[:2], regions, CropParams().feather_px)
    np.testing.assert_array_equal(out[outside], astronaut[outside])
    assert (out != astronaut).any()
    assert out is not astronaut


def test_detected_pixels_are_replaced_entirely_and_the_ring_is_blended(coffee: np.ndarray) -> None:
    region = Region("exit_sign", (100, 100, 140, 120), np.ones((20, 40), bool), 0.9)
    spy = Spy()
    out, stats = fill_regions(coffee, [region], spy)
    assert (out[100:120, 100:140] == spy.colour).all()
    ring = out[98, 100:140].astype(int)  # 2 px above: in the feather ring
    assert not (ring == spy.colour).all(axis=1).any()
    assert (ring != coffee[98, 100:140]).any(axis=1).all()
    assert stats.edited_px == int(edit_mask(region.mask, 2)[0].sum())


def test_every_crop_is_padded_to_a_multiple_of_8(coffee: np.ndarray) -> None:
    spy = Spy()
    region = Region("exit_sign", (13, 27, 50, 44), np.ones((17, 37), bool), 0.9)
    fill_regions(coffee, [region], spy)
    assert spy.shapes and all(h % 8 == 0 and w % 8 == 0 for h, w in spy.shapes)


def test_a_wire_across_a_wide_photo_is_tiled_never_the_whole_photo() -> None:
    photo = np.full((2000, 6000, 3), 180, np.uint8)
    spy = Spy()
    params = CropParams()
    out, stats = fill_regions(photo, [wire_region((2000, 6000), 700)], spy, params)
    assert stats.crops >= 6000 // 1024
    assert all(max(h, w) <= params.max_side + 7 for h, w in spy.shapes)
    assert stats.downscaled_crops == 0  # thin pieces fit at full resolution
    assert (out[700:703] == spy.colour).all()


def test_a_large_compact_region_is_downscaled_and_only_its_pixels_come_back() -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (3000, 3000, 3), dtype=np.uint8)
    mask = np.zeros((600, 600), bool)
    mask[100:500, 100:500] = True
    region = Region("exit_sign", (1200, 1200, 1800, 1800), mask, 0.9)
    spy = Spy()
    params = CropParams(max_side=512)
    out, stats = fill_regions(photo, [region], spy, params)
    assert stats.downscaled_crops >= 1
    assert all(max(h, w) <= 512 for h, w in spy.shapes)
    outside = outside_edit_masks(photo.shape[:2], [region], params.feather_px)
    np.testing.assert_array_equal(out[outside], photo[outside])
    inner = out[1310:1690, 1310:1690]
    assert np.abs(inner.astype(int) - spy.colour.astype(int)).max() <= 2


def test_crossing_regions_never_see_each_other_as_context(coffee: np.ndarray) -> None:
    """While one region is filled, the other's pending pixels are masked too."""
    seen_masks: list[int] = []

    class Counting(Spy):
        def inpaint(self, image: npt.NDArray[np.uint8], mask: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
            seen_masks.append(int(mask.sum()))
            return super().inpaint(image, mask)

    h, w = coffee.shape[:2]
    a = Region("power_line", (0, 200, w, 203), np.ones((3, w), bool), 0.9)
    b = Region("power_line", (300, 0, 303, h), np.ones((h, 3), bool), 0.9)
    out, _ = fill_regions(coffee, [a, b], Counting())
    assert seen_masks[0] > 3 * w  # the first window also masks the crossing wire
    assert (out[200:203] == Counting().colour).all() and (out[:, 300:303] == Counting().colour).all()


def test_window_is_three_times_the_mask_and_inside_the_photo() -> None:
    p = CropParams()
    x0, y0, x1, y1 = window_around((10, 10, 110, 40), 5000, 3000, p)
    assert (x0, y0) == (0, 0) and x1 - x0 == 300 and y1 - y0 == 300
    x0, y0, x1, y1 = window_around((4900, 2950, 4990, 2990), 5000, 3000, p)
    assert x1 == 5000 and y1 == 3000 and x0 <= 4900 and y0 <= 2950
