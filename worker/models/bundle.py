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
from typing import Protocol

import numpy as np
import numpy.typing as npt

from worker.frame import Face, Image
from worker.models import registry
from worker.service.config import Settings


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


@dataclass
class ModelBundle:
    device: str = "cpu"
    face_detector: FaceDetector | None = None
    face_restorer: FaceRestorer | None = None
    face_parser: FaceParser | None = None  # CodeFormer paste-back masks; None = feathered oval
    inpainter: Inpainter | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, str | None]:
        return {
            "device": self.device,
            "face_detector": getattr(self.face_detector, "name", None),
            "face_restorer": getattr(self.face_restorer, "name", None),
            "face_parser": getattr(self.face_parser, "name", None),
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
    from worker.faces import detect as faces
    from worker.faces import restorer as face_restorer  # face detector (phase 0) and restorer (phase 2) slots

    bundle.face_detector, note = faces.load_detector(settings.models_dir, bundle.device)
    bundle.notes.append(note)
    bundle.face_restorer, bundle.face_parser, note = face_restorer.load_restorer(settings, bundle.device)
    bundle.notes.append(note)
    bundle.inpainter, note = _load_inpainter(settings, bundle.device)
    bundle.notes.append(note)
    return bundle


def _load_inpainter(settings: Settings, device: str) -> tuple[Inpainter, str]:
    """LaMa from ``models_dir/big-lama.pt`` (hash verified) on a GPU, or when asked for; else OpenCV — and why."""
    from worker.cleanup.opencv_inpaint import OpenCVInpainter
    from worker.errors import ConfigError, ModelFileError
    from worker.models.lama import load_lama

    fallback = OpenCVInpainter("telea")
    if settings.inpainter == "opencv":
        return fallback, "inpainter: OpenCV Telea (WORKER_INPAINTER=opencv)"
    if not registry.is_present("big-lama", settings.models_dir):
        if settings.inpainter == "lama":
            raise ConfigError(
                "WORKER_INPAINTER=lama but big-lama.pt is not in WORKER_MODELS_DIR; "
                "run `apelier-worker models fetch big-lama`"
            )
        return fallback, "inpainter: OpenCV Telea — LaMa weights absent (apelier-worker models fetch big-lama)"
    if settings.inpainter == "auto" and device != "cuda":
        return fallback, (
            "inpainter: OpenCV Telea — big-lama.pt found but no GPU (LaMa takes ~20 s per crop on a CPU; "
            "WORKER_INPAINTER=lama forces it)"
        )
    try:
        return load_lama(registry.verify("big-lama", settings.models_dir), device), "inpainter: LaMa (big-lama)"
    except ModelFileError as exc:
        if settings.inpainter == "lama":
            raise
        return fallback, f"inpainter: OpenCV Telea — LaMa unusable ({exc.message})"
