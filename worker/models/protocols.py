"""The model slots of :class:`~worker.models.bundle.ModelBundle`, as small protocols.

A phase sees a slot only through its protocol, so it can be tested with a stand-in (an identity
restorer, a tiny TorchScript inpainter), and the implementations (``worker/faces``,
``worker/cleanup``, ``worker/models``) need not import the bundle that holds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from worker.frame import Face, Image


class FaceDetector(Protocol):
    name: str

    def detect(self, images: Sequence[Image]) -> list[list[Face]]:
        """Faces per image, in that image's pixel coordinates."""
        ...


class FaceRestorer(Protocol):
    name: str

    def restore(self, faces: npt.NDArray[np.uint8], fidelity: float, strength: float = 1.0) -> npt.NDArray[np.uint8]:
        """``faces``: N×512×512×3 RGB uint8 crops aligned to the FFHQ template; returns the same shape.

        ``fidelity`` is CodeFormer's w (0 = strongest restoration, 1 = most faithful);
        ``strength`` is the profile's skin smoothing (0–1). Each restorer uses the one it has.
        """
        ...


class FaceParser(Protocol):
    name: str

    def face_mask(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """N×512×512 in [0, 1]: where the aligned crops show face (skin, eyes, brows, nose, lips, ears)."""
        ...


class Inpainter(Protocol):
    name: str

    def inpaint(self, image: Image, mask: npt.NDArray[np.uint8]) -> Image:
        """Fill ``mask`` (H×W, nonzero = fill) in ``image`` (H×W×3); H and W are multiples of 8."""
        ...
