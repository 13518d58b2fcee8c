"""The sky mask that bounds everything the wire detector may touch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from worker.cleanup.sky import find_sky
from worker.cleanup.working import WorkingImage


def read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_a_dusk_sky_behind_launch_towers_is_sky() -> None:
    from skimage import data

    sky = find_sky(WorkingImage(np.ascontiguousarray(data.rocket())))
    assert sky.fraction > 0.6 and sky.blue_fraction > 0.8
    h = sky.mask.shape[0]
    assert sky.mask[: h // 4].mean() > 0.8  # the top of the frame
    assert sky.mask[-h // 10 :].mean() < 0.3  # not the pad and its lights


def test_a_red_butte_reaching_the_top_is_not_sky(shared_data: Path) -> None:
    image = read(shared_data / "pairs/fivek_multi_expert_thumbs_no_input/expertC/a0001-jmac_DSC1459.jpg")
    sky = find_sky(WorkingImage(image))
    h, w = sky.mask.shape
    assert sky.mask[: h // 10, : w // 10].mean() > 0.9  # blue sky, top left
    butte = sky.mask[int(0.1 * h) : int(0.2 * h), int(0.4 * w) : int(0.6 * w)]
    assert butte.mean() < 0.05


def test_white_clouds_join_the_blue_sky(shared_data: Path) -> None:
    """Cloud edges are strong in the red channel; they must not cut the sky into pieces."""
    image = read(shared_data / "pairs/fivek_multi_expert_thumbs_no_input/expertC/a1384-dvf_095.jpg")
    sky = find_sky(WorkingImage(image))
    h = sky.mask.shape[0]
    assert sky.mask[: int(0.4 * h)].mean() > 0.95


def test_a_court_under_a_dark_hedge_is_not_sky(shared_data: Path) -> None:
    image = read(shared_data / "pairs/fivek_deeplpf/before/a4725-DSC_0056.png")
    assert not find_sky(WorkingImage(image)).found


def test_a_studio_backdrop_reads_as_grey_sky(astronaut: np.ndarray) -> None:
    """A mottled grey backdrop looks like an overcast sky; being grey, wires there must be longer."""
    from worker.cleanup.wires import LEVELS

    sky = find_sky(WorkingImage(astronaut))
    assert sky.blue_fraction < 0.5
    assert LEVELS["conservative"].grey_sky_min_span > LEVELS["conservative"].min_span
