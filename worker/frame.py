"""The data that flows through the phases: one :class:`Frame` per photo.

A frame is created by decoding (``worker.imaging.decode``), then every phase receives a
batch of frames (``list[Frame]``; a single photo is a batch of one) and may

* replace ``frame.image`` with its edited version (same dtype and layout; never write into the
  array it was given: a failed batch is rerun photo by photo from the frames as they were),
* write its decisions, JSON-able, under ``frame.report[<phase name>]`` — the
  report becomes ``photos.ai_edits`` and the ``process`` command's JSON,
* fill the typed fields it owns (``faces`` and ``tilt`` for analysis, ``outputs`` for output).

Phases never touch the database or storage; those live in ``queue.py`` and
``storage.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
"""H×W×3 ``uint8`` RGB in sRGB, EXIF orientation already applied."""


@dataclass(frozen=True)
class Face:
    """A detected face in full-resolution pixel coordinates of the frame's image."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    landmarks: tuple[tuple[float, float], ...]  # 5 points: left eye, right eye, nose, mouth left, mouth right
    score: float

    def to_json(self) -> dict[str, Any]:
        return {
            "box": [round(v, 1) for v in self.box],
            "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
        }

    @property
    def size(self) -> float:
        """Geometric mean of the box's sides, in pixels."""
        x0, y0, x1, y1 = self.box
        return float(max(0.0, x1 - x0) * max(0.0, y1 - y0)) ** 0.5


@dataclass(frozen=True)
class SourceInfo:
    """What the decoder found in the uploaded file."""

    format: str  # "JPEG", "PNG", "HEIF", "RAW:NEF", …
    width: int  # as stored, before orientation
    height: int
    orientation: int = 1  # EXIF orientation tag that was applied (1 = none)
    icc_profile: str | None = None  # description of the embedded profile converted to sRGB
    mode: str = "RGB"  # PIL mode of the file ("CMYK", "I;16", "L", …)
    bit_depth: int = 8
    # What decoding changed that the photographer would not expect (transparency flattened, an invalid
    # EXIF orientation ignored, only the first frame of an animation): one sentence each.
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "orientation": self.orientation,
            "icc_profile": self.icc_profile,
            "mode": self.mode,
            "bit_depth": self.bit_depth,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Encoded:
    """One output file, ready to upload."""

    data: bytes
    content_type: str
    width: int
    height: int


@dataclass(eq=False)
class Frame:
    """One photo on its way through the phases."""

    photo_id: str
    filename: str
    image: Image
    source: SourceInfo
    exif: dict[str, Any] = field(default_factory=dict)  # summary → photos.exif_data
    exif_bytes: bytes | None = None  # the raw EXIF block, for the output files
    faces: list[Face] = field(default_factory=list)
    tilt: dict[str, Any] | None = (
        None  # phase 0's straightening estimate (worker.scene.straighten), acted on in phase 4
    )
    report: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Encoded] = field(default_factory=dict)  # "edited", "web", "thumb", …

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
