"""``.cube`` files: a known LUT round-trips, the layout is the standard one, bad files are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.models import lut3d
from worker.style.cube import CubeError, read_cube, write_cube

# A 2-point cube written by hand in the standard layout (red fastest, then green, then blue):
# it swaps red and blue and darkens green by half.
KNOWN = """TITLE "swap"
# comment
LUT_3D_SIZE 2
DOMAIN_MIN 0.0 0.0 0.0
DOMAIN_MAX 1.0 1.0 1.0

0 0 0
0 0 1
0 0.5 0
0 0.5 1
1 0 0
1 0 1
1 0.5 0
1 0.5 1
"""


def test_known_cube_reads_into_the_expected_lut(astronaut: np.ndarray) -> None:
    lut = read_cube(KNOWN)
    assert lut.shape == (3, 2, 2, 2)
    out = lut3d.apply_lut_image_torch(torch.from_numpy(lut), astronaut, "cpu").astype(int)
    expected = np.stack([astronaut[..., 2], np.rint(astronaut[..., 1] * 0.5), astronaut[..., 0]], -1)
    assert np.abs(out - expected).max() <= 1


def test_known_cube_round_trips_through_write() -> None:
    lut = read_cube(KNOWN)
    again = read_cube(write_cube(lut, "swap"))
    assert np.array_equal(lut, again)


def test_33_point_lut_round_trips_within_file_precision() -> None:
    torch.manual_seed(1)
    lut = (lut3d.identity_lut(33) ** 0.8 + 0.02 * torch.rand(3, 33, 33, 33)).clamp(0, 1).numpy()
    text = write_cube(lut, 'my "look"')
    lines = text.splitlines()
    assert "TITLE \"my 'look'\"" in lines[0]
    assert "LUT_3D_SIZE 33" in lines
    assert len([ln for ln in lines if ln and (ln[0].isdigit())]) == 33**3
    # First data rows: red varies fastest.
    first = [tuple(map(float, ln.split())) for ln in lines[5:7]]
    assert first[0] == pytest.approx(tuple(lut[:, 0, 0, 0]), abs=1e-6)
    assert first[1] == pytest.approx(tuple(lut[:, 0, 0, 1]), abs=1e-6)
    back = read_cube(text)
    assert np.abs(back - lut).max() < 1e-6


def test_identity_cube_is_identity() -> None:
    lut = read_cube(write_cube(lut3d.identity_lut(17).numpy()))
    assert np.allclose(lut, lut3d.identity_lut(17).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "LUT_3D_SIZE"),
        ("LUT_1D_SIZE 4\n0 0 0\n", "1D"),
        ("LUT_3D_SIZE 2\n0 0 0\n", "needs 8 rows"),
        ("LUT_3D_SIZE x\n", "integer"),
        ("LUT_3D_SIZE 2\n" + "0 0\n" * 8, "expected 3 numbers"),
        ("LUT_3D_SIZE 2\nDOMAIN_MAX 2 2 2\n" + "0 0 0\n" * 8, "domain"),
        ("LUT_3D_SIZE 2\n" + "0 0 nan\n" * 8, "non-finite"),
    ],
)
def test_bad_cube_files_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(CubeError, match=message):
        read_cube(text)


def test_write_rejects_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="3×D×D×D"):
        write_cube(np.zeros((3, 4, 4, 5)))
