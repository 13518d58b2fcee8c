"""Matrix/TRC ICC profiles for RGB spaces that files declare without embedding a profile.

A camera set to Adobe RGB usually writes no ICC profile: it marks the file
with EXIF ``ColorSpace = uncalibrated`` and the interoperability index
``R03`` (DCF 2.0 option file). To convert such a photo to sRGB we need the
profile anyway, so this module writes a small ICC v2 display profile from the
colour space's published primaries, white point and transfer curve (ICC.1:2001-04:
header, ``desc``/``cprt``/``wtpt``, ``rXYZ``/``gXYZ``/``bXYZ`` colorants adapted
to the D50 connection space with the Bradford transform, ``rTRC``/``gTRC``/``bTRC``).
LittleCMS (through Pillow's ``ImageCms``) does the conversion itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache

import numpy as np

from worker.imaging.colour import srgb_to_linear

# Bradford cone response matrix (Lam 1985, as used by ICC.1 Annex E).
_BRADFORD = np.array(
    [[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]], dtype=np.float64
)
D50 = (0.3457, 0.3585)
D65 = (0.3127, 0.3290)
_PCS_D50_XYZ = (0.9642, 1.0, 0.8249)  # the ICC connection-space illuminant, exactly as the spec rounds it


@dataclass(frozen=True)
class RGBSpace:
    """An RGB colour space by its chromaticities (x, y) and transfer curve."""

    name: str
    red: tuple[float, float]
    green: tuple[float, float]
    blue: tuple[float, float]
    white: tuple[float, float]
    gamma: float | None  # a pure power law; None: the sRGB piecewise curve


ADOBE_RGB = RGBSpace("Adobe RGB (1998)", (0.64, 0.33), (0.21, 0.71), (0.15, 0.06), D65, 563 / 256)
DISPLAY_P3 = RGBSpace("Display P3", (0.680, 0.320), (0.265, 0.690), (0.150, 0.060), D65, None)
PROPHOTO_RGB = RGBSpace("ProPhoto RGB", (0.7347, 0.2653), (0.1596, 0.8404), (0.0366, 0.0001), D50, 1.8)


def _xyz(xy: tuple[float, float], y_value: float = 1.0) -> np.ndarray:
    x, y = xy
    return np.array([x * y_value / y, y_value, (1 - x - y) * y_value / y], dtype=np.float64)


def rgb_to_xyz_matrix(space: RGBSpace) -> np.ndarray:
    """The 3×3 matrix from linear RGB to XYZ under the space's own white (Y of white = 1)."""
    primaries = np.stack([_xyz(space.red), _xyz(space.green), _xyz(space.blue)], axis=1)
    scale = np.linalg.solve(primaries, _xyz(space.white))
    return primaries * scale


def bradford(src_white: np.ndarray, dst_white: np.ndarray) -> np.ndarray:
    """Chromatic adaptation matrix (XYZ → XYZ) from ``src_white`` to ``dst_white``."""
    src = _BRADFORD @ src_white
    dst = _BRADFORD @ dst_white
    return np.linalg.inv(_BRADFORD) @ np.diag(dst / src) @ _BRADFORD


def _s15f16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(xyz: np.ndarray | tuple[float, float, float]) -> bytes:
    return b"XYZ " + b"\0" * 4 + b"".join(_s15f16(float(v)) for v in xyz)


def _curve_tag(gamma: float | None) -> bytes:
    if gamma is not None:
        return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    x = np.linspace(0.0, 1.0, 1024)
    y = srgb_to_linear(x)
    table = np.round(y * 65535).astype(">u2").tobytes()
    return b"curv" + b"\0" * 4 + struct.pack(">I", 1024) + table


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    body = b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_text)) + ascii_text
    body += struct.pack(">II", 0, 0)  # no Unicode description
    body += struct.pack(">HB", 0, 0) + b"\0" * 67  # no ScriptCode description
    return body


def _text_tag(text: str) -> bytes:
    return b"text" + b"\0" * 4 + text.encode("ascii") + b"\0"


@cache
def rgb_profile(space: RGBSpace) -> bytes:
    """An ICC v2 display profile (bytes) for ``space``."""
    to_xyz = rgb_to_xyz_matrix(space)
    white = _xyz(space.white)
    to_d50 = bradford(white, np.array(_PCS_D50_XYZ))
    colorants = to_d50 @ to_xyz  # columns: red, green, blue in the D50 connection space
    curve = _curve_tag(space.gamma)
    tags: list[tuple[bytes, bytes]] = [
        (b"desc", _desc_tag(space.name)),
        (b"cprt", _text_tag("No copyright, use freely")),
        (b"wtpt", _xyz_tag(white)),
        (b"rXYZ", _xyz_tag(colorants[:, 0])),
        (b"gXYZ", _xyz_tag(colorants[:, 1])),
        (b"bXYZ", _xyz_tag(colorants[:, 2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    entries, blobs = [], []
    shared: dict[bytes, int] = {}
    for signature, data in tags:
        if data in shared:  # the three curves share one copy, as most profiles do
            entries.append(struct.pack(">4sII", signature, shared[data], len(data)))
            continue
        shared[data] = offset
        entries.append(struct.pack(">4sII", signature, offset, len(data)))
        padded = data + b"\0" * (-len(data) % 4)
        blobs.append(padded)
        offset += len(padded)
    body = struct.pack(">I", len(tags)) + b"".join(entries) + b"".join(blobs)
    size = 128 + len(body)
    header = struct.pack(
        ">I4sI4s4s4s12s4s4sIIIII4s12s4s16s28s",
        size,
        b"\0\0\0\0",  # preferred CMM: none
        0x02100000,  # version 2.1
        b"mntr",
        b"RGB ",
        b"XYZ ",
        struct.pack(">6H", 2024, 1, 1, 0, 0, 0),
        b"acsp",
        b"\0\0\0\0",
        0,  # flags
        0,  # manufacturer
        0,  # model
        0,  # attributes (high)
        0,  # attributes (low)
        b"\0\0\0\0",  # rendering intent: perceptual
        b"".join(_s15f16(v) for v in _PCS_D50_XYZ),
        b"\0\0\0\0",  # creator
        b"\0" * 16,  # profile id: not computed (allowed in v2)
        b"\0" * 28,
    )
    assert len(header) == 128
    return header + body
