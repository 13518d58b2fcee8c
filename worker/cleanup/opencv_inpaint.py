"""Classical inpainting with OpenCV: the fallback when LaMa's weights are not installed.

Telea (2004, fast marching) or Navier–Stokes (Bertalmio et al., 2001) from OpenCV
(Apache-2.0). Both propagate the colours around a mask into it: good for thin masks over a
smooth sky (a wire), visibly smooth over texture. They run on the same crops as LaMa (see
:mod:`worker.cleanup.inpaint`), so only the filling differs, and the report names which one ran.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from worker.frame import Image

Method = Literal["telea", "ns"]


class OpenCVInpainter:
    """Implements :class:`worker.models.protocols.Inpainter` with ``cv2.inpaint``."""

    def __init__(self, method: Method = "telea", radius: float = 5.0) -> None:
        self.method = method
        self.radius = float(radius)
        self.name = f"opencv-{method}"
        self._flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS

    def inpaint(self, image: Image, mask: npt.NDArray[np.uint8]) -> Image:
        m = (mask > 0).astype(np.uint8) * 255
        return np.asarray(cv2.inpaint(image, m, self.radius, self._flag), dtype=np.uint8)
