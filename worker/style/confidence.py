"""How sure phase 1 is of a photo's look: is the photo, and its result, like what the pairs taught?

A ``lut3d`` style learned from 5–100 before/after pairs does well on photos like them and can go
wrong, silently, on a photo unlike any of them (a dark night scene for a style trained on daylight:
a dark result with a colour cast). At training time :meth:`Coverage.fit` keeps a compact record of
the pairs — a descriptor of each before and each after and the colour occupancy of the befores —
saved in the model file (``"coverage"``, its own version; a model file without it still loads and
gets no confidence). Applying the style, :meth:`Coverage.assess` compares each photo with it, from
the thumbnail the encoder already made (averaged to 64×64), in four signals:

* **tone** — the result's black point and white point (5th and 95th percentile of luminance)
  against those of the training afters: the root mean square of their distances in units of the
  afters' spread (at least 0.03 and 0.05). A result darker, flatter or brighter than anything the
  photographer delivered is the commonest failure;
* **cast** — the result's colour balance (log2 of its red/green and blue/green means in linear
  light) against the afters', the same way (a spread of at least 0.15 stops): an olive or magenta
  cast the photographer never gave;
* **exposure** — how far the photo's metered exposure (mean linear luminance) lies outside the
  range of the training befores, in stops;
* **colours** — the share of the photo's pixels in colour cells (8×8×8 over sRGB) where the
  training befores had under 0.1 % of their pixels: colours the LUT only extrapolates to.

Each gives a factor in (0, 1] (``1 / (1 + (max(0, x − free) / scale)²)``: one training spread of
tone, two of colour balance, no exposure beyond the range, 20 % of uncovered colours cost nothing)
and the confidence is their product. Measured on held-out FiveK photos, other pair sets and shifted exposures and colour
casts (``benchmarks/style_confidence.py``, ``docs/benchmarks.md``); the signals that did not rank
results there (the predicted weights' distance from the training ones, the adaptive part's
disagreement with the global LUT, dropout variance) are not used.
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

TONE_FLOOR = (0.03, 0.05)  # least spread of the black and white points (a look with one fixed black point)
TONE_FREE, TONE_SCALE = 1.0, 1.0  # tone distance in spreads: free up to 1, factor 0.5 at 2
CAST_FLOOR = (0.15, 0.15)  # least spread of the colour balance, in stops
CAST_FREE, CAST_SCALE = 2.0, 1.0  # colour balance distance in spreads: free up to 2, factor 0.5 at 3
EXPOSURE_FREE, EXPOSURE_SCALE = 0.0, 1.0  # stops outside the befores' range: factor 0.5 at 1 stop
COLOURS_FREE, COLOURS_SCALE = 0.2, 0.2  # uncovered share: free up to 20 %, factor 0.5 at 40 %
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


def occupancy(images: Tensor) -> Tensor:
    """``N×3×H×W`` sRGB in [0, 1] → ``N×512``: each photo's share of pixels in each colour cell."""
    q = (images.clamp(0.0, 1.0) * (CELLS - 1e-6)).long()
    cell = (q[:, 2] * CELLS + q[:, 1]) * CELLS + q[:, 0]  # blue slowest, as the LUTs
    out = torch.stack([torch.bincount(c.flatten(), minlength=CELLS**3) for c in cell]).float()
    return out / out.sum(1, keepdim=True)


def factor(x: float, free: float, scale: float) -> float:
    """1 up to ``free``, then ``1 / (1 + ((x − free) / scale)²)``: 0.5 at ``free + scale``."""
    return 1.0 / (1.0 + (max(0.0, x - free) / scale) ** 2)


@dataclass(frozen=True)
class Confidence:
    """One styled photo's confidence and the signals behind it."""

    value: float  # 0–1
    tone: float  # the result's black/white points from the afters', in their spreads
    cast: float  # the result's colour balance from the afters', in their spreads
    exposure: float  # stops outside the befores' range: < 0 darker than all of them, > 0 brighter
    uncovered: float  # share of the photo's pixels in colours no pair had

    @property
    def factors(self) -> dict[str, float]:
        return {
            "tone": factor(self.tone, TONE_FREE, TONE_SCALE),
            "cast": factor(self.cast, CAST_FREE, CAST_SCALE),
            "exposure": factor(abs(self.exposure), EXPOSURE_FREE, EXPOSURE_SCALE),
            "colours": factor(self.uncovered, COLOURS_FREE, COLOURS_SCALE),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "tone_spreads": round(self.tone, 2),
            "cast_spreads": round(self.cast, 2),
            "exposure_stops_outside": round(self.exposure, 2),
            "uncovered_colours": round(self.uncovered, 3),
        }

    def reason(self, threshold: float) -> str:
        """Why this photo goes to review: its weakest signal, in words, and what to do."""
        weakest = min(self.factors.items(), key=lambda kv: kv[1])[0]
        if weakest == "exposure":
            side = "darker" if self.exposure < 0 else "brighter"
            why = f"{abs(self.exposure):.1f} stops {side} than any photo it was trained on"
        elif weakest == "colours":
            why = f"{self.uncovered:.0%} of its colours are in none of the training photos"
        elif weakest == "cast":
            why = "the result has a colour cast unlike the photographer's edits"
        else:
            why = "the result's blacks or highlights are unlike the photographer's edits"
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
            result = lut3d.apply_lut(luts.to(pixels.device, pixels.dtype), pixels).transpose(1, 2).reshape(n, 3, h, w)
            before, after = describe(photo).cpu(), describe(result).cpu()
            share = occupancy(photo).cpu()
        tone = self._distance(after, [_BLACK, _WHITE], TONE_FLOOR)
        cast = self._distance(after, [_RED_GREEN, _BLUE_GREEN], CAST_FLOOR)
        exposure = self._exposure(before[:, _EXPOSURE])
        uncovered = (share * (self.colours < RARE)).sum(1)
        out = []
        for i in range(n):
            c = Confidence(1.0, float(tone[i]), float(cast[i]), float(exposure[i]), float(uncovered[i]))
            out.append(Confidence(math.prod(c.factors.values()), c.tone, c.cast, c.exposure, c.uncovered))
        return out

    def _distance(self, after: Tensor, idx: list[int], floor: tuple[float, ...]) -> Tensor:
        """RMS over ``idx`` of the results' distance from the afters' mean, in the afters' spreads."""
        ref = self.afters[:, idx]
        spread = ref.std(0) if ref.shape[0] > 1 else torch.zeros(len(idx))
        z = (after[:, idx] - ref.mean(0)) / torch.maximum(spread, torch.tensor(floor))
        return z.pow(2).mean(1).sqrt()

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
