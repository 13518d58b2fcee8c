"""Image-adaptive 3D LUT: a photographer's look as a few colour cubes mixed per photo.

Paper: Hui Zeng, Jianrui Cai, Lida Li, Zisheng Cao, Lei Zhang, "Learning
Image-adaptive 3D Lookup Tables for High Performance Photo Enhancement in
Real-time", IEEE TPAMI 2020 (arXiv:2009.14468). Written here from the paper;
no code of the authors' (Apache-2.0) repository is used. Licence of this file:
the project's.

Architecture
------------
* A **global LUT** ``G`` (RGB → RGB), initialised to the identity: the look for
  an average photo. Its weight is fixed at 1, so the look never depends on a
  classifier that eight pairs cannot train. It lives on a coarse 9³ grid,
  trilinearly upsampled to the applied 33³ (coarse generalises better from few
  pairs; measured in ``docs/style.md``).
* A small **encoder** sees a 256×256 thumbnail of the whole photo: a 4×4
  average pool, four strided 3×3 convolutions (16–128 channels, LeakyReLU, no
  normalisation layers so exposure and white balance stay visible), global
  average pooling and dropout, joined by 15 global statistics (per-channel mean,
  spread and metered linear mean, five luminance quantiles, metered luminance),
  then a 32-unit hidden layer. It predicts, per photo,

  - three **input gains** (exposure and white balance, ±3 stops, applied in
    linear light before the look), and
  - weights ``w_k`` of ``K = 6`` **residual basis LUTs** ``B_k`` (9³ grids,
    initialised to zero).

* The photo's LUT is ``G + Σ_k w_k·B_k``, made monotonic along each channel's
  own axis (a running maximum, so a brighter input never gives a darker output),
  composed with the input gains (and, when the model refines a fixed **input
  LUT** — a Lightroom preset's, ``worker/style/preset.py`` — after that LUT:
  photo → input LUT → gains → look) and baked into one 33³ cube, applied to every
  full-resolution pixel with trilinear interpolation: ``grid_sample`` on a 5-D
  tensor (GPU, or any device for training) or Pillow's ``Color3DLUT`` (C, CPU).

Zeng et al. predict the weights of every basis (three 33³ LUTs) from the CNN;
with 5–100 pairs instead of 4,500 that overfits (a prototype scored below a
naive global LUT). Here the CNN only adapts the input exposure/white balance and
a smooth residual on top of a shared LUT, and training
(``worker/style/train.py``) falls back to the global LUT alone when held-out
pairs show the adaptive part hurting.

118 k parameters with the defaults.

Conventions: a LUT tensor is ``(3, D, D, D)`` indexed ``[channel, b, g, r]``
(blue slowest, red fastest), values in [0, 1]. That is the layout
``grid_sample`` wants with grid coordinates ``(r, g, b)``, and flattened as
``(b, g, r, channel)`` it is the order of Pillow's ``Color3DLUT`` table and of
a ``.cube`` file.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from torch import Tensor, nn

from worker.errors import ModelFileError
from worker.imaging.resize import halve_while
from worker.models import registry

THUMB = 256
POOL = 4
HIDDEN = 32
N_GAINS = 3  # per-channel input gains: exposure and white balance
GAIN_STOPS = 3.0  # their range, ± stops
N_STATS = 15
_LUMA = (0.2126, 0.7152, 0.0722)
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class LUT3DConfig:
    """Shape of an image-adaptive 3D LUT model; saved with it."""

    lut_size: int = 33  # the applied (fused) LUT
    global_grid: int = 9  # the global LUT's own grid, upsampled to lut_size: generalises best from few pairs
    basis_grid: int = 9
    bases: int = 6  # adaptive residual bases on top of the global LUT
    exposure: bool = True  # the encoder also predicts per-channel input gains (exposure, white balance)
    width: int = 16  # channels of the encoder's first layer (doubling, capped at 8×)
    dropout: float = 0.2
    monotonic: bool = True  # enforce a non-decreasing response along each channel's own axis
    input_lut: bool = False  # a fixed lut_size³ LUT (a preset's) comes first; the look refines its output

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LUT3DConfig:
        known = {k: data[k] for k in asdict(cls()) if k in data}
        return cls(**known)


def identity_lut(size: int, *, device: torch.device | str | None = None) -> Tensor:
    """The identity LUT, ``(3, size, size, size)`` indexed ``[c, b, g, r]``."""
    g = torch.linspace(0.0, 1.0, size, device=device)
    b, gg, r = torch.meshgrid(g, g, g, indexing="ij")
    return torch.stack([r, gg, b], 0)


def make_monotonic(lut: Tensor) -> Tensor:
    """Running maximum of each output channel along its own input axis (``lut``: ``(..., 3, D, D, D)``)."""
    r = torch.cummax(lut[..., 0, :, :, :], dim=-1).values
    g = torch.cummax(lut[..., 1, :, :, :], dim=-2).values
    b = torch.cummax(lut[..., 2, :, :, :], dim=-3).values
    return torch.stack([r, g, b], dim=-4)


def image_stats(thumbs: Tensor) -> Tensor:
    """``N×3×H×W`` sRGB in [0, 1] → ``N×15`` global statistics the encoder sees directly.

    Per channel: mean and spread (sRGB) and log2 of the mean in linear light
    (what an exposure meter reads); five luminance quantiles; log2 of the mean
    linear luminance.
    """
    flat = thumbs.flatten(2)
    mean = flat.mean(2)
    spread = flat.std(2)
    luma = torch.tensor(_LUMA, dtype=thumbs.dtype, device=thumbs.device).view(1, 3, 1)
    lum = (flat * luma).sum(1)
    q = torch.quantile(lum, torch.tensor(_QUANTILES, dtype=thumbs.dtype, device=thumbs.device), dim=1).T
    lin = flat.clamp(0.0, 1.0).pow(2.2).mean(2)
    log_lin = torch.log2(lin.clamp_min(1e-4))
    log_lum = torch.log2((lin * luma[..., 0]).sum(1, keepdim=True).clamp_min(1e-4))
    return torch.cat([mean, spread, q, (log_lin + 3.0) / 3.0, (log_lum + 3.0) / 3.0], 1)


class Encoder(nn.Module):
    """Thumbnail (``N×3×256×256``, [0, 1]) → ``N×K`` basis weights.

    The thumbnail is first averaged 4×4 (64×64): tone and colour statistics do
    not need fine detail, and it makes the CNN 16× cheaper on a CPU.
    """

    def __init__(self, bases: int, width: int = 16, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for mult in (1, 2, 4, 8):
            c_out = width * mult
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(c_in + N_STATS, HIDDEN), nn.LeakyReLU(0.2), nn.Linear(HIDDEN, bases))
        last = self.head[-1]
        assert isinstance(last, nn.Linear)
        nn.init.normal_(last.weight, std=0.01)
        nn.init.zeros_(last.bias)

    def forward(self, thumbs: Tensor) -> Tensor:
        """``thumbs``: ``N×3×256×256`` (:func:`thumbnail`), or already averaged to ``N×3×64×64`` (:func:`pooled`)."""
        small = thumbs if thumbs.shape[-1] == THUMB // POOL else F.avg_pool2d(thumbs, POOL)
        feats = self.dropout(self.body(small * 2.0 - 1.0).mean((2, 3)))
        stats = (image_stats(small) - 0.3) * 4.0
        w: Tensor = self.head(torch.cat([feats, stats], 1))
        return w


class AdaptiveLUT3D(nn.Module):
    """Global LUT + image-adaptive input gains and residual bases (see the module docstring)."""

    mean_weights: Tensor
    adaptive: Tensor
    input_lut: Tensor | None

    def __init__(self, config: LUT3DConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LUT3DConfig()
        g, b = config.global_grid, config.basis_grid
        self.n_gains = N_GAINS if config.exposure else 0
        n_out = self.n_gains + config.bases
        self.global_lut = nn.Parameter(identity_lut(g))
        self.bases = nn.Parameter(torch.zeros(config.bases, 3, b, b, b))
        self.encoder = Encoder(n_out, config.width, config.dropout) if n_out else None
        # Mean adaptive parameters over the training photos: "an average photo" (.cube export).
        self.register_buffer("mean_weights", torch.zeros(n_out))
        # Cleared by training when the held-out pairs say per-photo parameters do not help:
        # then every photo gets the mean parameters, i.e. one global LUT.
        self.register_buffer("adaptive", torch.ones((), dtype=torch.bool))
        self.register_buffer("input_lut", identity_lut(config.lut_size) if config.input_lut else None)

    def weights(self, thumbs: Tensor, *, adaptive: bool | None = None) -> Tensor:
        """``N×(3+K)`` adaptive parameters (input log-gains, then basis weights) for these thumbnails.

        The encoder's, or the training mean when the model is not adaptive.
        """
        if self.encoder is None:
            return thumbs.new_zeros(thumbs.shape[0], 0)
        use_encoder = bool(self.adaptive) if adaptive is None else adaptive
        if not use_encoder:
            return self.mean_weights.to(thumbs.dtype).expand(thumbs.shape[0], -1)
        w: Tensor = self.encoder(thumbs)
        return w

    def _full(self, lut: Tensor, size: int | None = None) -> Tensor:
        """``(N, 3, g, g, g)`` → ``(N, 3, D, D, D)`` (or ``size``³) by trilinear upsampling (exact for the identity)."""
        d = size or self.config.lut_size
        if lut.shape[-1] == d:
            return lut
        return F.interpolate(lut, size=(d, d, d), mode="trilinear", align_corners=True)

    def raw(self, w: Tensor, *, coarse: bool = False) -> Tensor:
        """The look's LUTs ``N×3×D×D×D`` (``G + Σ w_k·B_k``) before the monotonic projection.

        ``coarse``: on the finer of the global and basis grids instead (``N×3×g×g×g``), when the
        grids nest — what training looks pixels up in. Trilinear lookup in a grid gives exactly
        what lookup in its trilinear upsampling to a grid whose nodes include its own gives
        (``D − 1`` a multiple of ``g − 1``), at a small fraction of the cost.
        """
        size = self.coarse_grid if coarse else None
        lut = self._full(self.global_lut.unsqueeze(0), size)
        basis_w = w[:, self.n_gains :]
        if basis_w.shape[1]:
            mix = torch.einsum("nk,kcdhw->ncdhw", basis_w, self.bases)
            lut = lut + self._full(mix, size)
        else:
            lut = lut.expand(w.shape[0], -1, -1, -1, -1)
        return lut

    @property
    def coarse_grid(self) -> int | None:
        """The grid :meth:`raw` works on with ``coarse=True``; None (the fused size) when the grids do not nest."""
        c = self.config
        grids = [c.global_grid] + ([c.basis_grid] if c.bases else [])
        g = max(grids)
        if all((g - 1) % (k - 1) == 0 for k in grids) and (c.lut_size - 1) % (g - 1) == 0:
            return g
        return None

    def looks(self, w: Tensor) -> Tensor:
        """The look's LUTs, monotonic when configured so; they apply to :meth:`pre`-adjusted pixels."""
        lut = self.raw(w)
        return make_monotonic(lut) if self.config.monotonic else lut

    def enter(self, pixels: Tensor) -> Tensor:
        """``pixels`` (``N×P×3``, [0, 1]) through the fixed input LUT, when the model has one."""
        if self.input_lut is None:
            return pixels
        return apply_lut(self.input_lut.unsqueeze(0).expand(pixels.shape[0], -1, -1, -1, -1), pixels)

    def pre(self, pixels: Tensor, w: Tensor) -> Tensor:
        """Each photo's input exposure/white-balance gains on ``pixels`` (``N×P×3``, [0, 1])."""
        if not self.n_gains:
            return pixels
        log2_gain = GAIN_STOPS * torch.tanh(w[:, : self.n_gains] / GAIN_STOPS)
        return input_gain(pixels, torch.exp2(log2_gain).unsqueeze(1))

    def fuse(self, w: Tensor) -> Tensor:
        """Adaptive parameters ``N×(3+K)`` → each photo's complete LUT ``N×3×D×D×D`` (input LUT and gains baked in)."""
        looks = self.looks(w)
        if not self.n_gains and self.input_lut is None:
            return looks
        d = self.config.lut_size
        grid = identity_lut(d, device=w.device).permute(1, 2, 3, 0).reshape(1, -1, 3).expand(w.shape[0], -1, -1)
        baked = apply_lut(looks, self.pre(self.enter(grid), w))
        return baked.reshape(-1, d, d, d, 3).permute(0, 4, 1, 2, 3).contiguous()

    def forward(self, thumbs: Tensor) -> Tensor:
        """Thumbnails ``N×3×256×256`` → LUTs ``N×3×D×D×D``."""
        return self.fuse(self.weights(thumbs))

    def average_lut(self) -> Tensor:
        """The LUT for an average training photo (``3×D×D×D``), for ``.cube`` export."""
        with torch.no_grad():
            return self.fuse(self.mean_weights.unsqueeze(0))[0]


def input_gain(pixels: Tensor, gains: Tensor) -> Tensor:
    """Multiply ``pixels`` (sRGB in [0, 1]) by ``gains`` in (approximately) linear light; clips at white."""
    lin = pixels.clamp(0.0, 1.0).pow(2.2) * gains
    return lin.clamp(1e-12, 1.0).pow(1.0 / 2.2)


def apply_lut(luts: Tensor, pixels: Tensor) -> Tensor:
    """Trilinear lookup: ``luts`` ``N×3×D×D×D``, ``pixels`` ``N×P×3`` in [0, 1] → ``N×P×3``."""
    n, p = pixels.shape[0], pixels.shape[1]
    grid = (pixels * 2.0 - 1.0).view(n, 1, 1, p, 3).to(luts.dtype)
    out = F.grid_sample(luts, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(n, 3, p).transpose(1, 2)


def apply_lut_image_torch(lut: Tensor, image: npt.NDArray[np.uint8], device: str) -> npt.NDArray[np.uint8]:
    """One LUT (``3×D×D×D``) on one full-resolution ``H×W×3`` uint8 image, with ``grid_sample``.

    On a GPU the image travels as uint8 and the lookup runs in half precision.
    """
    dev = torch.device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    h, w = image.shape[:2]
    with torch.no_grad():
        x = torch.from_numpy(_writable(image)).to(dev, non_blocking=True)
        grid = (x.to(dtype) * (2.0 / 255.0) - 1.0).view(1, 1, h, w, 3)
        out = F.grid_sample(
            lut.to(dev, dtype).unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        rgb = (out.view(3, h, w).permute(1, 2, 0).float().clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8)
        return rgb.cpu().numpy()


def _writable(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Contiguous and writable (torch refuses to wrap read-only numpy memory without a warning)."""
    if image.flags.writeable and image.flags.c_contiguous:
        return image
    return np.array(image, order="C", copy=True)


def apply_lut_image_pillow(
    lut: Tensor | npt.NDArray[np.float32], image: npt.NDArray[np.uint8], threads: int = 2
) -> npt.NDArray[np.uint8]:
    """One LUT on one ``H×W×3`` uint8 image with Pillow's C ``Color3DLUT`` (CPU), in row bands on threads."""
    table = lut.detach().cpu().numpy() if isinstance(lut, Tensor) else np.asarray(lut)
    size = int(table.shape[-1])
    flat = np.clip(table, 0.0, 1.0).transpose(1, 2, 3, 0).reshape(-1)
    filt = ImageFilter.Color3DLUT(size, flat, channels=3)  # a numpy table: no Python list of 108k floats
    h = image.shape[0]
    threads = max(1, min(threads, h // 64 or 1))
    out = np.empty_like(image)
    bounds = np.linspace(0, h, threads + 1).astype(int)

    def band(i: int) -> None:
        lo, hi = bounds[i], bounds[i + 1]
        out[lo:hi] = np.asarray(Image.fromarray(image[lo:hi]).filter(filt))

    if threads == 1:
        band(0)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(band, range(threads)))
    return out


def thumbnail(image: npt.NDArray[np.uint8], size: int = THUMB) -> Tensor:
    """``H×W×3`` uint8 → ``3×size×size`` float in [0, 1]: the whole photo, squashed (area filter)."""
    # Halve big photos first: INTER_AREA on 24 MP is slower than a few cheap halvings.
    small = halve_while(image, size, size, 4.0)
    thumb = cv2.resize(np.ascontiguousarray(small), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(thumb).permute(2, 0, 1).float().div_(255.0)


def pooled(image: npt.NDArray[np.uint8]) -> Tensor:
    """``H×W×3`` uint8 → ``3×64×64``: the photo as the encoder sees it (its 256² :func:`thumbnail` averaged
    4×4), made in one area resize — what training cuts from each random crop."""
    size = THUMB // POOL
    small = halve_while(image, size, size, 4.0)
    thumb = cv2.resize(np.ascontiguousarray(small), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(thumb).permute(2, 0, 1).float().div_(255.0)


def smoothness(residual: Tensor) -> Tensor:
    """Mean squared gradient of a LUT residual (``(..., 3, g, g, g)``), scaled to the unit cube.

    The global LUT is penalised as ``lut − identity`` (not as the LUT itself, as
    in the paper), so colours no training photo contains follow their
    neighbours' edit instead of being pulled toward the identity.
    """
    g = residual.shape[-1]
    sq = residual.diff(dim=-1).pow(2).mean() + residual.diff(dim=-2).pow(2).mean()
    return (sq + residual.diff(dim=-3).pow(2).mean()) * (g - 1) ** 2


def monotonicity(lut: Tensor) -> Tensor:
    """How much each output channel decreases along its own input axis (0 for a monotonic LUT)."""
    d = lut.shape[-1]
    r = F.relu(-lut[..., 0, :, :, :].diff(dim=-1)).mean()
    g = F.relu(-lut[..., 1, :, :, :].diff(dim=-2)).mean()
    b = F.relu(-lut[..., 2, :, :, :].diff(dim=-3)).mean()
    return (r + g + b) * (d - 1)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(config: LUT3DConfig | None = None) -> AdaptiveLUT3D:
    """The one factory."""
    return AdaptiveLUT3D(config)


def load_state(config: LUT3DConfig, state: Mapping[str, Tensor]) -> AdaptiveLUT3D:
    """Build a model and load ``state``; a state of another shape, or not finite, is a :class:`ModelFileError`."""
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise ModelFileError(f"style model weight {key!r} is not a tensor; retrain the style")
        if not torch.isfinite(value).all():
            raise ModelFileError(f"style model weight {key!r} is not finite; retrain the style")
    model: AdaptiveLUT3D = registry.ready(build(config), state, "the style model", "cpu", "retrain the style")
    return model
