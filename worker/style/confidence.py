"""How sure phase 1 is of a photo's look: is the photo, and its result, like what the pairs taught?

A ``lut3d`` style learned from 5–100 before/after pairs does well on photos like them and can go
wrong, silently, on a photo unlike any of them (a dark night scene for a style trained on daylight:
a dark result with a colour cast). At training time :meth:`Coverage.fit` keeps a compact record of
the pairs — a descriptor of each before and each after and the colour occupancy of the befores —
saved in the model file (``"coverage"``, its own version; a model file without it still loads and
gets no confidence). Applying the style, :meth:`Coverage.assess` compares each photo with it, from
the thumbnail the encoder already made (averaged to 64×64), and estimates how far the result may be
from what the photographer would have delivered, in sRGB levels (0–1), from two signals:

* **tone** — the result's black point and white point (5th and 95th percentile of luminance)
  against those of the training afters: how far each lies beyond one spread of the afters' (at
  least 0.03 and 0.05) from their mean, root mean square of the two. A result darker, flatter or
  brighter than anything the photographer delivered is the commonest failure of real edits;
* **colours** — the photo's pixels in colour cells (8×8×8 over sRGB) where the training befores
  had under 0.1 % of their pixels (colours the LUT only extrapolates to), each weighted by how far
  the photo's LUT moves it or by how far it moves the colours the befores had, whichever is more
  (sums over channels; the second because a LUT left near the identity where no pair taught it
  says nothing of where the look would have taken that colour), averaged over all pixels. This
  ranks the errors of a written look on photos of other kinds.

``error = √(tone² + colours²)`` and the confidence is ``1 / (1 + (error / ERROR_SCALE)²)``: 0.5 at
an estimated error of :data:`ERROR_SCALE`, with which the default review threshold (0.5) sends
7 % of the benchmark's photos like the pairs to review (``benchmarks/style_confidence.py``,
``docs/benchmarks.md``). Two more signals are reported with it but do not lower it (they did not
rank results there): the result's colour balance against the afters' (``cast``, in their spreads)
and the photo's exposure outside the befores' range (``exposure``, in stops; it names the reason
when the photo is much darker or brighter than every training photo). Tried and left out: the
predicted weights' and input gains' distance from the training ones, the adaptive part's
disagreement with the global LUT, nearest-neighbour distances of global statistics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.errors import ModelFileError
from worker.models import lut3d

VERSION = 1  # of the coverage record in the model file; a newer one is ignored (no confidence)
DESCRIPTOR = ("exposure", "black", "median", "white", "red_green", "blue_green", "chroma")
"""What is kept of each training photo: log2 of the mean linear luminance, the 5th/50th/95th
percentile of (sRGB) luminance, log2 of the red/green and blue/green linear means, the mean chroma
(max − min channel). ``median`` and ``chroma`` are not used yet: kept so a later worker can use them
without a retrain."""
_EXPOSURE, _BLACK, _WHITE, _RED_GREEN, _BLUE_GREEN = 0, 1, 3, 4, 5
POOL = 4  # the 256² thumbnail averaged to 64², as the encoder sees it
CELLS = 8  # colour occupancy: 8³ cells over sRGB (the cells of the 9³ global LUT's grid)
RARE = 1e-3  # a cell with less than this share of the training befores' pixels is not covered

TONE_FLOOR = (0.03, 0.05)  # least spread of the afters' black and white points
TONE_FREE = 1.0  # a result within one spread of the afters' mean black/white point costs nothing
CAST_FLOOR = (0.15, 0.15)  # least spread of the colour balance, in stops (reported, not in the value)
ERROR_SCALE = 0.13  # estimated error (sRGB levels, 0–1) at which the confidence is 0.5
DARK_STOPS = 1.0  # a photo this far outside the befores' exposure range: the reason names it
_LUMA = (0.2126, 0.7152, 0.0722)


def small(thumbs: Tensor) -> Tensor:
    """Thumbnails ``N×3×256×256`` ([0, 1]) → ``N×3×64×64``: what the descriptors are measured on."""
    return F.avg_pool2d(thumbs.float(), POOL) if thumbs.shape[-1] >= POOL else thumbs.float()


def describe(images: Tensor) -> Tensor:
    """``N×3×H×W`` sRGB in [0, 1] → ``N×7`` (:data:`DESCRIPTOR`)."""
    flat = images.flatten(2).clamp(0.0, 1.0)
    luma = torch.tensor(_LUMA, dtype=flat.dtype, device=flat.device).view(1, 3, 1)
    lin = flat.pow(2.2)
    means = lin.mean(2).clamp_min(1e-5)
    exposure = torch.log2((lin * luma).sum(1).mean(1).clamp_min(1e-5))
    levels = torch.tensor((0.05, 0.5, 0.95), dtype=flat.dtype, device=flat.device)
    q = torch.quantile((flat * luma).sum(1), levels, dim=1).T
    chroma = (flat.max(1).values - flat.min(1).values).mean(1)
    rg = torch.log2(means[:, 0] / means[:, 1])
    bg = torch.log2(means[:, 2] / means[:, 1])
    return torch.stack([exposure, q[:, 0], q[:, 1], q[:, 2], rg, bg, chroma], 1)


def cell_of(images: Tensor) -> Tensor:
    """``N×3×H×W`` sRGB in [0, 1] → ``N×(H·W)``: each pixel's colour cell (of ``CELLS``³)."""
    q = (images.clamp(0.0, 1.0) * (CELLS - 1e-6)).long()
    return ((q[:, 2] * CELLS + q[:, 1]) * CELLS + q[:, 0]).flatten(1)  # blue slowest, as the LUTs


def cell_centres() -> Tensor:
    """``1×512×3``: the centre colour of each cell, in :func:`cell_of`'s order."""
    c = (torch.arange(CELLS, dtype=torch.float32) + 0.5) / CELLS
    b, g, r = torch.meshgrid(c, c, c, indexing="ij")
    return torch.stack([r, g, b], -1).reshape(1, -1, 3)


def occupancy(images: Tensor) -> Tensor:
    """``N×3×H×W`` sRGB in [0, 1] → ``N×512``: each photo's share of pixels in each colour cell."""
    out = torch.stack([torch.bincount(c, minlength=CELLS**3) for c in cell_of(images)]).float()
    return out / out.sum(1, keepdim=True)


def confidence_of(error: float) -> float:
    """``1 / (1 + (error / ERROR_SCALE)²)``: 1 for no estimated error, 0.5 at :data:`ERROR_SCALE`."""
    return 1.0 / (1.0 + (max(0.0, error) / ERROR_SCALE) ** 2)


@dataclass(frozen=True)
class Confidence:
    """One styled photo's confidence and the signals behind it."""

    value: float  # 0–1
    tone: float  # the result's black/white points beyond the afters' spread, sRGB levels (0–1)
    colours: float  # unseen colours weighted by how far the LUT moves them, sRGB levels (0–1)
    uncovered: float  # share of the photo's pixels in colours no pair had
    cast: float  # the result's colour balance from the afters', in their spreads (reported only)
    exposure: float  # stops outside the befores' range: < 0 darker than all of them, > 0 brighter

    @property
    def error(self) -> float:
        """The estimated error the value comes from (sRGB levels, 0–1)."""
        return math.hypot(self.tone, self.colours)

    def to_json(self) -> dict[str, Any]:
        return {
            "estimated_error": round(self.error, 3),
            "tone_error": round(self.tone, 3),
            "unseen_colour_error": round(self.colours, 3),
            "uncovered_colours": round(self.uncovered, 3),
            "cast_spreads": round(self.cast, 2),
            "exposure_stops_outside": round(self.exposure, 2),
        }

    def reason(self, threshold: float) -> str:
        """Why this photo goes to review: its larger signal, in words, and what to do."""
        if self.tone >= self.colours:
            if abs(self.exposure) >= DARK_STOPS:
                side = "darker" if self.exposure < 0 else "brighter"
                why = f"{abs(self.exposure):.1f} stops {side} than any photo it was trained on"
            else:
                why = "the result's blacks or highlights are unlike the photographer's edits"
        else:
            why = f"{self.uncovered:.0%} of its colours are in none of the training photos"
        return (
            f"the style is unsure of this photo (confidence {self.value:.2f}, below {threshold:g}): {why};"
            " check the edit, or add pairs like it and retrain"
        )


@dataclass(frozen=True)
class StyleEdit:
    """What phase 1 applies to one photo: its LUT (``3×D×D×D``), and how sure the style is of it."""

    lut: Tensor
    confidence: Confidence | None = None  # None: the style has no record of its pairs (see the module docstring)


@dataclass(frozen=True)
class Coverage:
    """What the training pairs looked like (see the module docstring); saved in the model file."""

    befores: Tensor  # N×7 descriptors of the training befores
    afters: Tensor  # N×7 of their afters
    colours: Tensor  # 512: mean colour occupancy of the befores

    @classmethod
    def fit(cls, before_thumbs: Tensor, after_thumbs: Tensor) -> Coverage:
        """From the pairs' thumbnails (``N×3×256×256`` each, :func:`worker.models.lut3d.thumbnail`)."""
        b, a = small(before_thumbs.cpu()), small(after_thumbs.cpu())
        return cls(describe(b), describe(a), occupancy(b).mean(0))

    @property
    def pairs(self) -> int:
        return int(self.befores.shape[0])

    def assess(self, thumbs: Tensor, luts: Tensor) -> list[Confidence]:
        """Each photo's confidence, from its thumbnail (``N×3×256×256``) and its fused LUT (``N×3×D×D×D``)."""
        with torch.no_grad():
            photo = small(thumbs)
            n, _, h, w = photo.shape
            pixels = photo.flatten(2).transpose(1, 2)
            moved = lut3d.apply_lut(luts.to(pixels.device, pixels.dtype), pixels)
            result = moved.transpose(1, 2).reshape(n, 3, h, w)
            before, after = describe(photo).cpu(), describe(result).cpu()
            cells = cell_of(photo).cpu()
            shift = (moved - pixels).abs().sum(2).cpu()  # how far the LUT moves each pixel
            centres = cell_centres().to(pixels.device, pixels.dtype).expand(n, -1, -1)
            typical = lut3d.apply_lut(luts.to(pixels.device, pixels.dtype), centres) - centres
            strength = (typical.abs().sum(2).cpu() * self.colours).sum(1, keepdim=True)
        rare = (self.colours < RARE)[cells].float()  # N×P: the pixel's colour is one no pair had
        colours = (rare * torch.maximum(shift, strength)).mean(1)
        uncovered = rare.mean(1)
        tone = self._tone(after)
        cast = self._distance(after, [_RED_GREEN, _BLUE_GREEN], CAST_FLOOR)
        exposure = self._exposure(before[:, _EXPOSURE])
        out = []
        for i in range(n):
            t, c = float(tone[i]), float(colours[i])
            value = confidence_of(math.hypot(t, c))
            out.append(Confidence(value, t, c, float(uncovered[i]), float(cast[i]), float(exposure[i])))
        return out

    def _spread(self, idx: list[int], floor: tuple[float, ...]) -> tuple[Tensor, Tensor]:
        ref = self.afters[:, idx]
        spread = ref.std(0) if ref.shape[0] > 1 else torch.zeros(len(idx))
        return ref.mean(0), torch.maximum(spread, torch.tensor(floor))

    def _tone(self, after: Tensor) -> Tensor:
        """RMS over the black and white points of how far the result's lie beyond ``TONE_FREE``
        spreads of the afters' mean (sRGB levels)."""
        mean, spread = self._spread([_BLACK, _WHITE], TONE_FLOOR)
        excess = ((after[:, [_BLACK, _WHITE]] - mean).abs() - TONE_FREE * spread).clamp_min(0.0)
        return excess.pow(2).mean(1).sqrt()

    def _distance(self, after: Tensor, idx: list[int], floor: tuple[float, ...]) -> Tensor:
        """RMS over ``idx`` of the results' distance from the afters' mean, in the afters' spreads."""
        mean, spread = self._spread(idx, floor)
        return ((after[:, idx] - mean) / spread).pow(2).mean(1).sqrt()

    def _exposure(self, exposure: Tensor) -> Tensor:
        lo, hi = self.befores[:, _EXPOSURE].min(), self.befores[:, _EXPOSURE].max()
        return torch.where(exposure < lo, exposure - lo, torch.where(exposure > hi, exposure - hi, 0.0))

    def to_archive(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "descriptor": list(DESCRIPTOR),
            "befores": self.befores.float().contiguous(),
            "afters": self.afters.float().contiguous(),
            "colours": self.colours.float().contiguous(),
        }

    @classmethod
    def from_archive(cls, data: Any, source: str = "style model") -> Coverage | None:
        """The record in a model file: None when there is none (an older file) or a newer version;
        a malformed one raises :class:`ModelFileError`."""
        if data is None:
            return None
        if not isinstance(data, Mapping) or not isinstance(data.get("version"), int):
            raise ModelFileError(f"{source} has a malformed coverage record; retrain the style")
        if data["version"] > VERSION:
            return None  # a newer worker's record: the look applies, without a confidence
        befores, afters, colours = data.get("befores"), data.get("afters"), data.get("colours")
        width = len(DESCRIPTOR)
        if not (
            isinstance(befores, Tensor)
            and isinstance(afters, Tensor)
            and isinstance(colours, Tensor)
            and befores.ndim == 2
            and befores.shape[0] >= 1
            and befores.shape == afters.shape == (befores.shape[0], width)
            and colours.shape == (CELLS**3,)
            and all(bool(torch.isfinite(t).all()) for t in (befores, afters, colours))
        ):
            raise ModelFileError(f"{source} has a malformed coverage record; retrain the style")
        return cls(befores.float(), afters.float(), colours.float())
