"""The models a worker holds for its whole life, loaded once at start.

Phases receive the bundle through :class:`worker.phases.PhaseContext`; they
never load a model themselves. Each slot is a small protocol so a phase can be
tested with a stand-in (an identity restorer, a tiny TorchScript inpainter).
A slot left ``None`` means that capability is off, and ``notes`` says why in a
line the operator can act on (missing weights, licence not accepted, …).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from worker.config import Settings
from worker.frame import Face, Image


class FaceDetector(Protocol):
    name: str

    def detect(self, images: Sequence[Image]) -> list[list[Face]]:
        """Faces per image, in that image's pixel coordinates."""
        ...


class FaceRestorer(Protocol):
    name: str

    def restore(self, faces: npt.NDArray[np.uint8], fidelity: float) -> npt.NDArray[np.uint8]:
        """``faces``: N×512×512×3 RGB uint8 crops aligned to the FFHQ template; returns the same shape."""
        ...


class Inpainter(Protocol):
    name: str

    def inpaint(self, image: Image, mask: npt.NDArray[np.uint8]) -> Image:
        """Fill ``mask`` (H×W, nonzero = fill) in ``image`` (H×W×3); H and W are multiples of 8."""
        ...


@dataclass
class ModelBundle:
    device: str = "cpu"
    face_detector: FaceDetector | None = None
    face_restorer: FaceRestorer | None = None
    inpainter: Inpainter | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, str | None]:
        return {
            "device": self.device,
            "face_detector": getattr(self.face_detector, "name", None),
            "face_restorer": getattr(self.face_restorer, "name", None),
            "inpainter": getattr(self.inpainter, "name", None),
        }


def resolve_device(choice: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    from worker.errors import ConfigError

    if choice == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if choice == "cuda":
        raise ConfigError("WORKER_DEVICE=cuda but torch sees no CUDA device; check the driver or use auto")
    return "cpu"


def load(settings: Settings) -> ModelBundle:
    """Load every model the settings ask for, once. Missing weights degrade, they do not fail."""
    bundle = ModelBundle(device=resolve_device(settings.device))
    bundle.inpainter = _load_inpainter(settings, bundle)
    return bundle


def _load_inpainter(settings: Settings, bundle: ModelBundle) -> Inpainter:
    """LaMa from ``models_dir/big-lama.pt`` when present (on a GPU, or when asked for); else OpenCV."""
    from worker.errors import ConfigError
    from worker.models.lama import FILENAME, load_lama
    from worker.models.opencv_inpaint import OpenCVInpainter

    path = settings.models_dir / FILENAME
    # describe() names the inpainter that runs ("opencv-telea" or "lama"); the model listing says
    # when big-lama.pt is missing. A note is only needed where the choice is not obvious.
    if settings.inpainter == "opencv":
        return OpenCVInpainter("telea")
    if not path.is_file():
        if settings.inpainter == "lama":
            raise ConfigError(f"WORKER_INPAINTER=lama but {path} does not exist; install {FILENAME} there")
        return OpenCVInpainter("telea")
    if settings.inpainter == "auto" and bundle.device != "cuda":
        bundle.notes.append(
            f"{FILENAME} found but no GPU: cleanup inpaints with OpenCV (LaMa takes ~20 s per crop on a CPU; "
            "WORKER_INPAINTER=lama forces it)"
        )
        return OpenCVInpainter("telea")
    _verify_hash("big-lama", settings.models_dir)
    return load_lama(path, bundle.device)


def _verify_hash(name: str, models_dir: Path) -> None:
    """Check the file's hash with ``worker.models.registry`` (md5 for big-lama), when that module exists."""
    import importlib

    try:
        registry = importlib.import_module("worker.models.registry")
    except ModuleNotFoundError:  # the registry lands in its own branch; until then files load unchecked
        return
    registry.verify(name, models_dir)
