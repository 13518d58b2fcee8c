"""The models a worker holds for its whole life, loaded once at start.

Phases receive the bundle through :class:`worker.phases.PhaseContext`; they
never load a model themselves. Each slot is a small protocol (``worker/models/protocols.py``)
so a phase can be tested with a stand-in (an identity restorer, a tiny TorchScript inpainter).
A slot left ``None`` means that capability is off, and ``notes`` says why in a
line the operator can act on (missing weights, licence not accepted, …).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.cleanup.opencv_inpaint import OpenCVInpainter
from worker.errors import ConfigError, ModelFileError
from worker.faces import detect as faces
from worker.faces import restorer as face_restorer
from worker.models import registry
from worker.models.device import resolve_device
from worker.models.lama import load_lama
from worker.models.protocols import FaceDetector, FaceParser, FaceRestorer, Inpainter
from worker.service.config import Settings


@dataclass
class ModelBundle:
    device: str = "cpu"
    # The torch device that decodes JPEGs and encodes the deliverables (``WORKER_IMAGE_CODEC``,
    # worker/imaging/device.py); None: the CPU path (OpenCV, Pillow).
    codec_device: str | None = None
    face_detector: FaceDetector | None = None
    face_restorer: FaceRestorer | None = None
    face_parser: FaceParser | None = None  # CodeFormer paste-back masks; None = feathered oval
    inpainter: Inpainter | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, str | None]:
        return {
            "device": self.device,
            "image_codec": f"torch on {self.codec_device}" if self.codec_device else "cpu",
            "face_detector": getattr(self.face_detector, "name", None),
            "face_restorer": getattr(self.face_restorer, "name", None),
            "face_parser": getattr(self.face_parser, "name", None),
            "inpainter": getattr(self.inpainter, "name", None),
        }


def load(settings: Settings) -> ModelBundle:
    """Load every model the settings ask for, once. Missing weights degrade, they do not fail."""
    device = resolve_device(settings.device)
    bundle = ModelBundle(device=device, codec_device=image_codec(settings.image_codec, device))
    # The face detector (phase 0) and restorer (phase 2) slots, then the inpainter (phase 3).
    bundle.face_detector, note = faces.load_detector(settings.models_dir, bundle.device)
    bundle.notes.append(note)
    bundle.face_restorer, bundle.face_parser, note = face_restorer.load_restorer(settings, bundle.device)
    bundle.notes.append(note)
    bundle.inpainter, note = _load_inpainter(settings, bundle.device)
    bundle.notes.append(note)
    return bundle


def image_codec(choice: str, device: str) -> str | None:
    """``WORKER_IMAGE_CODEC`` on a worker whose models run on ``device`` → the torch device that decodes
    and encodes JPEGs, or None for the CPU path: ``auto`` = the GPU when there is one, ``torch`` = the
    models' device even on the CPU (tests and comparisons), ``cpu`` = never."""
    if choice == "torch" or (choice == "auto" and device == "cuda"):
        return device
    return None


def _load_inpainter(settings: Settings, device: str) -> tuple[Inpainter, str]:
    """LaMa from ``models_dir/big-lama.pt`` (hash verified) on a GPU, or when asked for; else the
    classical fill (membrane, lattice or patches, :mod:`worker.cleanup.opencv_inpaint`) — and why."""
    fallback = OpenCVInpainter("auto")  # the membrane on a wire over the sky, lattice or patches elsewhere
    classical = "inpainter: classical (membrane, lattice, patch fill)"
    if settings.inpainter == "opencv":
        return fallback, f"{classical} (WORKER_INPAINTER=opencv)"
    if not registry.is_present("big-lama", settings.models_dir):
        if settings.inpainter == "lama":
            raise ConfigError(
                "WORKER_INPAINTER=lama but big-lama.pt is not in WORKER_MODELS_DIR; "
                "run `apelier-worker models fetch big-lama`"
            )
        return fallback, f"{classical} — LaMa weights absent (apelier-worker models fetch big-lama)"
    if settings.inpainter == "auto" and device != "cuda":
        return fallback, (
            f"{classical} — big-lama.pt found but no GPU (LaMa takes ~20 s per crop on a CPU; "
            "WORKER_INPAINTER=lama forces it)"
        )
    try:
        return load_lama(registry.verify("big-lama", settings.models_dir), device), "inpainter: LaMa (big-lama)"
    except ModelFileError as exc:
        if settings.inpainter == "lama":
            raise
        return fallback, f"{classical} — LaMa unusable ({exc.message})"
