"""What a detector returns: one region to remove, with its mask, for the report and the inpainter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

RegionKind = Literal["power_line", "exit_sign"]


@dataclass
class Region:
    """A region in full-resolution pixels.

    ``mask`` covers the box ``(x0, y0, x1, y1)`` (x1, y1 exclusive): ``mask.shape == (y1 - y0, x1 - x0)``;
    True marks the pixels to replace. ``details`` holds the detector's measurements (JSON-able).
    """

    kind: RegionKind
    box: tuple[int, int, int, int]
    mask: npt.NDArray[np.bool_]
    score: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def area_px(self) -> int:
        return int(np.count_nonzero(self.mask))

    def paste(self, full: npt.NDArray[np.bool_]) -> None:
        """OR this region's mask into a full-size boolean mask."""
        x0, y0, x1, y1 = self.box
        full[y0:y1, x0:x1] |= self.mask

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "box": [int(v) for v in self.box],
            "score": round(float(self.score), 3),
            "area_px": self.area_px,
            **self.details,
        }


def crop_to_mask(
    kind: RegionKind,
    mask: npt.NDArray[np.bool_],
    offset: tuple[int, int],
    score: float,
    details: dict[str, Any] | None = None,
) -> Region | None:
    """A :class:`Region` from ``mask`` placed at ``offset`` (x, y), trimmed to its nonzero pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))  # faster than nonzero
    if rows.size == 0:
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    ox, oy = offset
    return Region(
        kind,
        (x0 + ox, y0 + oy, x1 + ox, y1 + oy),
        np.ascontiguousarray(mask[y0:y1, x0:x1]),
        score,
        dict(details or {}),
    )
