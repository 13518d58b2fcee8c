"""The ``histogram`` style: a global tone/colour transfer learned from reference photos alone.

For style profiles that have finished photos by the photographer but no
before/after pairs (``training_method = 'histogram'``). CPU only, instant to
"train", no neural network.

Learned from the references, in CIELAB:

* the **tone curve target** — the luminance (L*) quantile function of each
  reference, averaged over references (their Wasserstein barycentre);
* the **colour target** — the mean and spread of a* and b*, averaged.

Applied to a photo: its own L* quantiles and a*/b* statistics are measured on
a thumbnail, and a per-photo 33³ LUT is built that moves them part of the way
toward the targets (``tone_strength``, ``colour_strength``; a full transfer
flattens every photo to the same histogram). The L* curve is kept monotonic
with bounded slope; a*/b* move by a shift and a gentle scale. The LUT is then
applied like the learned one, at full resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from worker.errors import ModelFileError
from worker.frame import Image
from worker.imaging.colour import lab_to_srgb, srgb_to_lab
from worker.imaging.resize import shrink
from worker.models import lut3d
from worker.style.confidence import StyleEdit
from worker.style.render import Each, one_by_one, render

N_QUANTILES = 33
_LEVELS = np.linspace(0.01, 0.99, N_QUANTILES)
STAT_EDGE = 256  # statistics are measured on a copy this size (references may be shrunk to it on loading)


def _measure(image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(L* quantiles at ``_LEVELS``, [mean a*, mean b*, std a*, std b*]) of a photo's small copy."""
    small = shrink(image, STAT_EDGE)
    lab = srgb_to_lab(small.reshape(-1, 3))
    quant = np.quantile(lab[:, 0], _LEVELS)
    ab = lab[:, 1:]
    stats = np.concatenate([ab.mean(0), ab.std(0)])
    return quant, stats


@dataclass
class HistogramStyle:
    """Reference statistics and the strengths of the transfer."""

    tone_target: npt.NDArray[np.float64]  # L* at _LEVELS
    colour_target: npt.NDArray[np.float64]  # mean a*, mean b*, std a*, std b*
    tone_strength: float = 0.7
    colour_strength: float = 0.3
    lut_size: int = 33
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = "histogram"
    method: str = "histogram"

    def lut_for_stats(self, quant: npt.NDArray[np.float64], stats: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        """The LUT (``3×D×D×D``) that moves a photo with these statistics toward the targets."""
        ident = lut3d.identity_lut(self.lut_size).numpy().astype(np.float64)  # [c, b, g, r]
        rgb = ident.transpose(1, 2, 3, 0).reshape(-1, 3)
        lab = srgb_to_lab(rgb)
        lab[:, 0] = self._tone_curve(quant)(lab[:, 0])
        s = self.colour_strength
        for i in range(2):
            mean_in, std_in = stats[i], max(stats[2 + i], 1e-3)
            mean_ref, std_ref = self.colour_target[i], self.colour_target[2 + i]
            scale = float(np.clip(std_ref / std_in, 0.7, 1.4)) ** s
            lab[:, 1 + i] = (lab[:, 1 + i] - mean_in) * scale + mean_in + s * (mean_ref - mean_in)
        out = lab_to_srgb(lab).reshape(self.lut_size, self.lut_size, self.lut_size, 3).transpose(3, 0, 1, 2)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _tone_curve(self, quant: npt.NDArray[np.float64]) -> Any:
        """Monotonic L* → L* curve: identity moved ``tone_strength`` of the way to quantile matching."""
        x = np.concatenate([[0.0], np.maximum.accumulate(quant), [100.0]])
        y = np.concatenate([[0.0], self.tone_target, [100.0]])
        # Merge quantiles too close to interpolate between (flat regions of the histogram); x then rises strictly.
        keep = np.concatenate([[True], np.diff(x) > 0.25])
        x, y = x[keep], y[keep]
        blended = x + self.tone_strength * (y - x)
        # Bounded slope: between 1/3 and 3, so no band of tones is crushed or torn apart.
        slopes = np.clip(np.diff(blended) / np.maximum(np.diff(x), 1e-6), 1.0 / 3.0, 3.0)
        curve_y = np.concatenate([[0.0], np.cumsum(slopes * np.diff(x))])
        curve_y *= 100.0 / max(curve_y[-1], 1e-6)
        return lambda v: np.interp(v, x, curve_y)

    def lut_for(self, image: Image, device: str = "cpu") -> Tensor:
        quant, stats = _measure(image)
        return torch.from_numpy(self.lut_for_stats(quant, stats))

    def luts_for(self, images: Sequence[Image], device: str = "cpu", each: Each = one_by_one) -> list[Tensor]:
        return each(self.lut_for, images)  # statistics and curves, on the CPU

    def edits_for(self, images: Sequence[Image], device: str = "cpu", each: Each = one_by_one) -> list[StyleEdit]:
        """:meth:`luts_for`, without a confidence: references alone say nothing about what a look does."""
        return [StyleEdit(lut) for lut in self.luts_for(images, device, each)]

    def apply(self, image: Image, device: str = "cpu") -> Image:
        return render(self.lut_for(image), image, device)

    def cube(self) -> npt.NDArray[np.float32]:
        """The LUT for a photo whose statistics are the references' own average input (identity-like).

        A histogram style adapts to each photo; export one photo's LUT with
        ``export-cube --like PHOTO`` for anything more useful.
        """
        neutral_stats = np.array([0.0, 0.0, *self.colour_target[2:]])
        return self.lut_for_stats(np.interp(_LEVELS, [0.0, 1.0], [0.0, 100.0]), neutral_stats)

    def to_archive(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": {
                "tone_strength": self.tone_strength,
                "colour_strength": self.colour_strength,
                "lut_size": self.lut_size,
            },
            "state": {
                "tone_target": torch.from_numpy(self.tone_target.astype(np.float64)),
                "colour_target": torch.from_numpy(self.colour_target.astype(np.float64)),
            },
            "metadata": self.metadata,
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], config: Mapping[str, Any], metadata: dict[str, Any]
    ) -> HistogramStyle:
        try:
            tone = np.asarray(state["tone_target"].numpy(), dtype=np.float64)
            colour = np.asarray(state["colour_target"].numpy(), dtype=np.float64)
            style = cls(
                tone_target=tone,
                colour_target=colour,
                tone_strength=float(config.get("tone_strength", 0.7)),
                colour_strength=float(config.get("colour_strength", 0.3)),
                lut_size=int(config.get("lut_size", 33)),
                metadata=metadata,
            )
        except (KeyError, AttributeError, TypeError, ValueError):
            raise ModelFileError("histogram style model is malformed; retrain the style") from None
        if tone.shape != (N_QUANTILES,) or colour.shape != (4,) or not 2 <= style.lut_size <= 65:
            raise ModelFileError("histogram style model has the wrong shape; retrain the style")
        if not (np.isfinite(tone).all() and np.isfinite(colour).all()):
            raise ModelFileError("histogram style model holds non-finite values; retrain the style")
        return style


def fit(
    references: Sequence[npt.NDArray[np.uint8]], *, tone_strength: float = 0.7, colour_strength: float = 0.3
) -> HistogramStyle:
    """Learn the targets from finished photos (any sizes; at least one)."""
    if not references:
        raise ValueError("the histogram style needs at least one reference photo")
    quants, stats = zip(*(_measure(np.asarray(r)) for r in references), strict=True)
    tone = np.mean(quants, axis=0)
    colour = np.mean(stats, axis=0)
    return HistogramStyle(
        tone_target=tone,
        colour_target=colour,
        tone_strength=tone_strength,
        colour_strength=colour_strength,
        metadata={"method": "histogram", "references_used": len(references)},
    )
