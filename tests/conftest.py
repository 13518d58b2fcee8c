"""Shared fixtures: real photos from the wheels and from ../shared/data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def jpeg_bytes(array: np.ndarray, **save_kwargs: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=92, **save_kwargs)
    return buf.getvalue()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.asarray(data.astronaut())


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    from skimage import data

    return np.asarray(data.coffee())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
