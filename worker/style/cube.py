"""``.cube`` 3D LUT files (Adobe/Resolve "Cube LUT Specification 1.0"), written and read.

The format Lightroom (as a profile via Photoshop), Photoshop (Color Lookup),
DaVinci Resolve and ffmpeg (``lut3d`` filter) load::

    TITLE "Apelier look"
    LUT_3D_SIZE 33
    DOMAIN_MIN 0.0 0.0 0.0
    DOMAIN_MAX 1.0 1.0 1.0
    0.000000 0.000000 0.000000        ← one "R G B" line per grid point,
    ...                                  red index fastest, then green, then blue

In memory a LUT is ``3×D×D×D`` float indexed ``[channel, b, g, r]`` in [0, 1]
(``worker/models/lut3d.py``), so the file's line order is the array's
``(b, g, r)`` order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

LutArray = npt.NDArray[np.float32]

MAX_SIZE = 256


class CubeError(ValueError):
    """The text is not a 3D ``.cube`` LUT this reader understands."""


def write_cube(lut: npt.ArrayLike, title: str = "Apelier look") -> str:
    """A ``3×D×D×D`` LUT as ``.cube`` text (values clipped to [0, 1], six decimals)."""
    arr = np.asarray(lut, dtype=np.float64)
    if arr.ndim != 4 or arr.shape[0] != 3 or not (arr.shape[1] == arr.shape[2] == arr.shape[3]):
        raise ValueError(f"a LUT must be 3×D×D×D, got {arr.shape}")
    size = arr.shape[1]
    rows = np.clip(arr, 0.0, 1.0).transpose(1, 2, 3, 0).reshape(-1, 3)
    safe_title = title.replace('"', "'").replace("\n", " ")
    header = [
        f'TITLE "{safe_title}"',
        "# written by apelier-worker",
        f"LUT_3D_SIZE {size}",
        "DOMAIN_MIN 0.0 0.0 0.0",
        "DOMAIN_MAX 1.0 1.0 1.0",
    ]
    body = "\n".join(f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in rows)
    return "\n".join(header) + "\n" + body + "\n"


def read_cube(text: str) -> LutArray:
    """Parse ``.cube`` text into a ``3×D×D×D`` float32 LUT; anything unsupported raises :class:`CubeError`."""
    size: int | None = None
    lo = np.zeros(3)
    hi = np.ones(3)
    values: list[tuple[float, float, float]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head = line.split()[0]
        if head == "TITLE":
            continue
        if head == "LUT_3D_INPUT_RANGE":  # Resolve's spelling of the domain
            a, b = _floats(line, number, 2)
            lo, hi = np.full(3, a), np.full(3, b)
            continue
        if head == "LUT_1D_SIZE":
            raise CubeError("this is a 1D .cube LUT; only 3D LUTs are supported")
        if head == "LUT_3D_SIZE":
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or not 2 <= int(parts[1]) <= MAX_SIZE:
                raise CubeError(f"line {number}: LUT_3D_SIZE must be an integer from 2 to {MAX_SIZE}")
            size = int(parts[1])
            continue
        if head == "DOMAIN_MIN":
            lo = np.array(_floats(line, number, 3))
            continue
        if head == "DOMAIN_MAX":
            hi = np.array(_floats(line, number, 3))
            continue
        if head[0].isalpha():
            continue  # other keywords (e.g. vendor extensions) carry no table data
        r, g, b = _floats("x " + line, number, 3)
        values.append((r, g, b))
    return _table(size, lo, hi, values)


def _table(
    size: int | None, lo: npt.NDArray[Any], hi: npt.NDArray[Any], values: list[tuple[float, float, float]]
) -> LutArray:
    """The parsed rows as a ``3×D×D×D`` LUT, once the header and the rows are checked to agree."""
    if size is None:
        raise CubeError("no LUT_3D_SIZE line: not a 3D .cube file")
    if len(values) != size**3:
        raise CubeError(f"LUT_3D_SIZE {size} needs {size**3} rows, found {len(values)}")
    if not np.all(hi > lo):
        raise CubeError("DOMAIN_MAX must be above DOMAIN_MIN")
    if not (np.allclose(lo, 0.0) and np.allclose(hi, 1.0)):
        raise CubeError("only the 0..1 input domain is supported (DOMAIN_MIN 0 0 0, DOMAIN_MAX 1 1 1)")
    table = np.asarray(values, dtype=np.float32)
    if not np.isfinite(table).all():
        raise CubeError("the table holds non-finite values")
    lut: LutArray = np.ascontiguousarray(table.reshape(size, size, size, 3).transpose(3, 0, 1, 2))
    return lut


def _floats(line: str, number: int, count: int) -> list[float]:
    parts = line.split()[1:]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise CubeError(f"line {number}: expected {count} numbers, got {line!r}") from None
    if len(vals) != count:
        raise CubeError(f"line {number}: expected {count} numbers, got {len(vals)}")
    return vals
