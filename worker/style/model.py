"""A trained style: what phase 1 applies, and its model file.

Two methods, one protocol (:class:`Style`; phase 1 uses ``name``, ``luts_for`` and
:func:`~worker.style.render.render`, the CLI ``apply(image, device) -> image``):

* ``lut3d`` — :class:`LutStyle`, the image-adaptive 3D LUT trained from
  before/after pairs (``worker/style/train.py``, ``worker/models/lut3d.py``);
* ``histogram`` — :class:`~worker.style.histogram.HistogramStyle`, a global
  tone/colour transfer learned from reference photos alone.

Model file
----------
``save(style) -> bytes`` / ``load(data) -> Style``. The bytes are a
``torch.save`` archive of plain containers and tensors, read back with
``torch.load(weights_only=True)`` (no pickled code runs)::

    {"format": "apelier-style", "version": 1 | 2, "method": "lut3d" | "histogram",
     "config": {...}, "state": {name: tensor}, "metadata": {...},
     "coverage": {"version": 1, ...}}   # lut3d trained from pairs; absent in older files

Version 2 is written only for a ``lut3d`` model with an input LUT (a Lightroom
preset the pairs refined, ``config.input_lut``), which a version-1 worker could
not apply; every other model is still written as version 1.

``metadata`` carries the training metrics (held-out PSNR and ΔE2000, identity
baseline, pairs used, epochs, time). A file that is not such an archive, from a
newer format version, or with weights of the wrong shape raises
:class:`~worker.errors.ModelFileError`, whose message says to retrain.

``coverage`` (:class:`~worker.style.confidence.Coverage`) is what the training pairs looked like,
for each photo's confidence. It has a version of its own and leaves the file's ``version`` as it
was: a worker that predates it ignores the key and applies the look; a file without it (older), or
with a newer record, loads with ``coverage=None`` and its photos get no confidence.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from worker.errors import ModelFileError
from worker.frame import Image
from worker.models import lut3d
from worker.style.confidence import Coverage, StyleEdit
from worker.style.histogram import HistogramStyle
from worker.style.render import Each, one_by_one, render

FORMAT = "apelier-style"
VERSION = 2  # the newest this worker reads and writes (see the module docstring)


class Style(Protocol):
    """A style that can be applied (phase 1), saved, and exported as a ``.cube``."""

    name: str
    method: str
    metadata: dict[str, Any]

    def apply(self, image: Image, device: str) -> Image: ...

    def lut_for(self, image: Image, device: str = "cpu") -> Tensor:
        """The ``3×D×D×D`` LUT this photo gets."""
        ...

    def luts_for(self, images: Sequence[Image], device: str = "cpu", each: Each = one_by_one) -> list[Tensor]:
        """:meth:`lut_for` of each photo: the per-photo CPU work through ``each``, a model called once."""
        ...

    def edits_for(self, images: Sequence[Image], device: str = "cpu", each: Each = one_by_one) -> list[StyleEdit]:
        """:meth:`luts_for`, each with the photo's confidence (None: the style has none to give)."""
        ...

    def cube(self) -> npt.NDArray[np.float32]:
        """A ``3×D×D×D`` LUT (``[c, b, g, r]``, [0, 1]) for an average photo."""
        ...

    def to_archive(self) -> dict[str, Any]: ...


@dataclass
class LutStyle:
    """The image-adaptive 3D LUT, ready to apply to full-resolution photos."""

    model: lut3d.AdaptiveLUT3D
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = "lut3d"
    method: str = "lut3d"
    coverage: Coverage | None = None  # what the training pairs looked like (None: no confidence)

    def lut_for(self, image: Image, device: str = "cpu") -> Tensor:
        """This photo's fused LUT (``3×D×D×D``), predicted from its thumbnail."""
        return self.luts_for([image], device)[0]

    def luts_for(self, images: Sequence[Image], device: str = "cpu", each: Each = one_by_one) -> list[Tensor]:
        """The photos' LUTs: their thumbnails made through ``each`` (the CPU part), one model call for all."""
        return [edit.lut for edit in self._edits(images, device, each, assess=False)]

    def edits_for(self, images: Sequence[Image], device: str = "cpu", each: Each = one_by_one) -> list[StyleEdit]:
        """The photos' LUTs and, with a coverage record, their confidence (from the same thumbnails)."""
        return self._edits(images, device, each, assess=self.coverage is not None)

    def _edits(self, images: Sequence[Image], device: str, each: Each, *, assess: bool) -> list[StyleEdit]:
        model = self.model.to(device).eval()
        if not assess and (model.encoder is None or not bool(model.adaptive)):
            thumbs = [torch.zeros(3, 1, 1) for _ in images]  # one LUT for every photo: no thumbnails needed
        else:
            thumbs = each(lut3d.thumbnail, images)
        with torch.no_grad():
            batch = torch.stack(thumbs).to(device)
            luts: Tensor = model(batch)
        if not assess or self.coverage is None:
            return [StyleEdit(lut) for lut in luts]
        confidences = self.coverage.assess(batch, luts)
        return [StyleEdit(lut, c) for lut, c in zip(luts, confidences, strict=True)]

    def apply(self, image: Image, device: str = "cpu") -> Image:
        return render(self.lut_for(image, device), image, device)

    def cube(self) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            lut = self.model.cpu().eval().average_lut()
        return lut.clamp(0.0, 1.0).numpy().astype(np.float32)

    def to_archive(self) -> dict[str, Any]:
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        archive = {
            "method": self.method,
            "config": asdict(self.model.config),
            "state": state,
            "metadata": self.metadata,
        }
        if self.coverage is not None:
            archive["coverage"] = self.coverage.to_archive()
        return archive


def save(style: Style) -> bytes:
    """The model file's bytes (see the module docstring)."""
    archive: dict[str, Any] = {"format": FORMAT, **style.to_archive()}
    archive["version"] = VERSION if archive.get("config", {}).get("input_lut") else 1
    # Metadata goes through JSON so the file holds only plain types that weights_only accepts.
    archive["metadata"] = json.loads(json.dumps(archive["metadata"], default=str))
    buf = io.BytesIO()
    torch.save(archive, buf)
    return buf.getvalue()


def load(data: bytes, *, source: str = "style model") -> Style:
    """Read a model file written by :func:`save`; anything else raises :class:`ModelFileError`."""
    if not data:
        raise ModelFileError(f"{source} is empty; retrain the style or re-upload the model file")
    try:
        archive = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # not a zip, truncated, or a foreign torch/pickle file (UnpicklingError)
        raise ModelFileError(
            f"{source} is not an Apelier style model (unreadable: {type(exc).__name__}); retrain the style"
        ) from None
    if not isinstance(archive, Mapping) or archive.get("format") != FORMAT:
        raise ModelFileError(f"{source} is not an Apelier style model (no format tag); retrain the style")
    version = archive.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ModelFileError(
            f"{source} has format version {version!r}, newer than this worker's {VERSION}; upgrade the worker"
        )
    method = archive.get("method")
    metadata = archive.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{source} has malformed metadata; retrain the style")
    state = archive.get("state")
    if not isinstance(state, Mapping):
        raise ModelFileError(f"{source} has no weights; retrain the style")
    config = archive.get("config") or {}
    if method == "lut3d":
        try:
            cfg = lut3d.LUT3DConfig.from_json(config)
        except (TypeError, ValueError):
            raise ModelFileError(f"{source} has a malformed configuration; retrain the style") from None
        coverage = Coverage.from_archive(archive.get("coverage"), source)
        return LutStyle(lut3d.load_state(cfg, state), metadata, coverage=coverage)
    if method == "histogram":
        return HistogramStyle.from_state(state, config, metadata)
    raise ModelFileError(f"{source} uses an unknown style method {method!r}; upgrade the worker or retrain")


def save_file(style: Style, path: Path) -> None:
    """Write the model file atomically (a partial file never replaces a good one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(save(style))
    tmp.replace(path)


def load_file(path: Path) -> Style:
    if not path.is_file():
        raise ModelFileError(f"style model {path} does not exist; train one with `apelier-worker style train`")
    return load(path.read_bytes(), source=f"style model {path}")
