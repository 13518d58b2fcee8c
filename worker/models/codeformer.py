"""CodeFormer: blind face restoration with a codebook lookup transformer.

Paper: Shangchen Zhou, Kelvin C.K. Chan, Chongyi Li, Chen Change Loy, "Towards Robust
Blind Face Restoration with Codebook Lookup Transformer", NeurIPS 2022,
https://arxiv.org/abs/2206.11253.

**Licence: the official code and weights (``codeformer.pth``) are under the S-Lab
License 1.0 — non-commercial use only.** This module is an independent implementation
written from the paper; it exists so that an operator who holds the weights *and* has
acknowledged their licence (``WORKER_CODEFORMER_LICENSE_ACCEPTED=true``) can run them.
Without both, the worker never loads this model (see ``worker/models/bundle.py``).

Architecture (the configuration ``codeformer.pth`` was trained with):

* a VQGAN encoder: 3×3 conv, six resolution levels (64, 128, 128, 256, 256, 512
  channels; two residual blocks each, self-attention at 16×16), a mid block
  (res, attention, res), GroupNorm and a 3×3 conv to 256-d latents at 16×16;
* a 9-layer pre-norm transformer (512-d, 8 heads, MLP 1024, GELU) over the 256 latent
  tokens with a learned position embedding added to queries and keys; a LayerNorm +
  linear head predicts, per token, one of 1024 codebook entries;
* the codebook lookup (no nearest-neighbour search at inference: the transformer
  *predicts* the code), optionally renormalised per channel to the encoder features'
  mean and std (AdaIN, as in the official inference);
* the VQGAN generator (mirror of the encoder, nearest-neighbour upsampling) with
  controllable feature transformation: at 32, 64, 128 and 256 px a residual block
  reads the encoder features concatenated with the decoder features and predicts a
  per-pixel scale and shift; the decoder adds ``w × (dec·scale + shift)``. The
  fidelity weight ``w`` trades quality (0: codebook only) for fidelity (1).

Input: RGB, 512×512, aligned to the FFHQ 5-point template, in [-1, 1]. Output the same.
Module and parameter names follow the official state dict (``params_ema``) key by key,
so the checkpoint loads with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worker.errors import ModelFileError
from worker.models import registry

NAME = "codeformer"
FACE_SIZE = 512
CODEBOOK_SIZE = 1024
LATENT_DIM = 256
LATENT_SIDE = 16
CHANNEL_MULT = (1, 2, 2, 4, 4, 8)
BASE_CHANNELS = 64
# Encoder block whose output feeds the fusion at each resolution, and the generator block
# after which that fusion happens (indices into the ``blocks`` lists built below).
_ENCODER_TAP = {"512": 2, "256": 5, "128": 8, "64": 11, "32": 14, "16": 18}
_GENERATOR_TAP = {"16": 6, "32": 9, "64": 12, "128": 15, "256": 18, "512": 21}
_FUSE_CHANNELS = {"16": 512, "32": 256, "64": 256, "128": 128, "256": 128, "512": 64}
CONNECT = ("32", "64", "128", "256")


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, swish, 3×3 conv) twice, 1×1 skip when widths differ."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = _group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv_out = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = self.conv_out(x) if self.conv_out is not None else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1×1 projections and a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        # (b, c, h, w) → (b, 1, hw, c): one head over the h·w positions.
        q, k, v = (t(y).flatten(2).transpose(1, 2).unsqueeze(1) for t in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v)
        attended = attended.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(attended)


class Downsample(nn.Module):
    """Stride-2 3×3 conv after zero padding one pixel on the right and bottom."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, BASE_CHANNELS, 3, padding=1)]
        res = FACE_SIZE
        ch = BASE_CHANNELS
        for level, mult in enumerate(CHANNEL_MULT):
            out = BASE_CHANNELS * mult
            for _ in range(2):
                blocks.append(ResBlock(ch, out))
                ch = out
                if res == LATENT_SIDE:
                    blocks.append(AttnBlock(ch))
            if level != len(CHANNEL_MULT) - 1:
                blocks.append(Downsample(ch))
                res //= 2
        blocks += [ResBlock(ch, ch), AttnBlock(ch), ResBlock(ch, ch)]
        blocks += [_group_norm(ch), nn.Conv2d(ch, LATENT_DIM, 3, padding=1)]
        self.blocks = nn.ModuleList(blocks)


class Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        ch = BASE_CHANNELS * CHANNEL_MULT[-1]
        res = LATENT_SIDE
        blocks: list[nn.Module] = [nn.Conv2d(LATENT_DIM, ch, 3, padding=1)]
        blocks += [ResBlock(ch, ch), AttnBlock(ch), ResBlock(ch, ch)]
        for level in reversed(range(len(CHANNEL_MULT))):
            out = BASE_CHANNELS * CHANNEL_MULT[level]
            for _ in range(2):
                blocks.append(ResBlock(ch, out))
                ch = out
                if res == LATENT_SIDE:
                    blocks.append(AttnBlock(ch))
            if level != 0:
                blocks.append(Upsample(ch))
                res *= 2
        blocks += [_group_norm(ch), nn.Conv2d(ch, 3, 3, padding=1)]
        self.blocks = nn.ModuleList(blocks)


class Codebook(nn.Module):
    """The learned codebook: 1024 entries of 256 dimensions."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(CODEBOOK_SIZE, LATENT_DIM)

    def lookup(self, indices: Tensor, batch: int) -> Tensor:
        """``indices`` (b, 256) → latents (b, 256, 16, 16)."""
        z = self.embedding(indices.reshape(batch, LATENT_SIDE, LATENT_SIDE))
        return z.permute(0, 3, 1, 2).contiguous()


class TransformerLayer(nn.Module):
    """Pre-norm self-attention + GELU MLP; the position embedding goes into queries and keys only."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True)
        self.linear1 = nn.Linear(dim, mlp)
        self.linear2 = nn.Linear(mlp, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        h = self.norm1(x)
        qk = h + pos
        x = x + self.self_attn(qk, qk, h, need_weights=False)[0]
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class FuseBlock(nn.Module):
    """Controllable feature transformation: ``dec + w·(dec·scale + shift)`` from encoder features."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.encode_enc = ResBlock(2 * ch, ch)
        self.scale = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1), nn.LeakyReLU(0.2, True), nn.Conv2d(ch, ch, 3, padding=1)
        )
        self.shift = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1), nn.LeakyReLU(0.2, True), nn.Conv2d(ch, ch, 3, padding=1)
        )

    def forward(self, enc: Tensor, dec: Tensor, w: float) -> Tensor:
        feat = self.encode_enc(torch.cat([enc, dec], dim=1))
        return dec + w * (dec * self.scale(feat) + self.shift(feat))


def _adain(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Give ``content`` the per-channel mean and std of ``style`` (unbiased variance, as trained)."""

    def stats(t: Tensor) -> tuple[Tensor, Tensor]:
        flat = t.flatten(2)
        return flat.mean(2)[..., None, None], (flat.var(2) + eps).sqrt()[..., None, None]

    c_mean, c_std = stats(content)
    s_mean, s_std = stats(style)
    return (content - c_mean) / c_std * s_std + s_mean


class CodeFormer(nn.Module):
    """The network. ``forward(x, w)`` → ``(image, logits, lq_feat)``, as the official model."""

    def __init__(self, dim: int = 512, heads: int = 8, layers: int = 9) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.quantize = Codebook()
        self.generator = Generator()
        self.position_emb = nn.Parameter(torch.zeros(LATENT_SIDE * LATENT_SIDE, dim))
        self.feat_emb = nn.Linear(LATENT_DIM, dim)
        self.ft_layers = nn.Sequential(*(TransformerLayer(dim, heads, 2 * dim) for _ in range(layers)))
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, CODEBOOK_SIZE, bias=False))
        self.fuse_convs_dict = nn.ModuleDict({size: FuseBlock(_FUSE_CHANNELS[size]) for size in CONNECT})

    def forward(self, x: Tensor, w: float = 0.0, adain: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        taps = {_ENCODER_TAP[size]: size for size in CONNECT}
        skips: dict[str, Tensor] = {}
        for i, block in enumerate(self.encoder.blocks):
            x = block(x)
            if i in taps:
                skips[taps[i]] = x
        lq_feat = x
        batch = x.shape[0]

        tokens = self.feat_emb(lq_feat.flatten(2).transpose(1, 2))  # (b, 256, dim)
        pos = self.position_emb.unsqueeze(0)
        for layer in self.ft_layers:
            tokens = layer(tokens, pos)
        logits = self.idx_pred_layer(tokens)  # (b, 256, 1024)

        quant = self.quantize.lookup(logits.argmax(dim=2), batch)
        if adain:
            quant = _adain(quant, lq_feat)

        fuse_at = {_GENERATOR_TAP[size]: size for size in CONNECT}
        x = quant
        for i, block in enumerate(self.generator.blocks):
            x = block(x)
            if i in fuse_at and w > 0:
                size = fuse_at[i]
                x = self.fuse_convs_dict[size](skips[size], x, w)
        return x, logits, lq_feat


def checkpoint_filter(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state dict inside an official checkpoint: ``params_ema`` (else ``params``, else the dict)."""
    for key in ("params_ema", "params"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return dict(checkpoint[key])
    if all(isinstance(v, Tensor) for v in checkpoint.values()):
        return dict(checkpoint)
    raise ModelFileError("codeformer.pth holds no 'params_ema' state dict; fetch it again")


def codeformer(state_dict: Mapping[str, Tensor] | None = None, device: str = "cpu") -> CodeFormer:
    """Build CodeFormer in eval mode, loading ``state_dict`` strictly when given."""
    model: CodeFormer = registry.ready(CodeFormer(), state_dict, "codeformer.pth", device)
    return model


def load(path: Path, device: str = "cpu") -> CodeFormer:
    """Load the official ``codeformer.pth`` (``weights_only``: no code runs from the file)."""
    return codeformer(checkpoint_filter(registry.torch_load(path)), device)


class CodeFormerRestorer:
    """The :class:`~worker.models.protocols.FaceRestorer` backed by CodeFormer, batched on the device."""

    name = NAME

    def __init__(self, model: CodeFormer, device: str = "cpu", batch_size: int = 8) -> None:
        self.model = model
        self.device = device
        self.batch_size = max(1, batch_size)

    def restore(self, faces: npt.NDArray[np.uint8], fidelity: float, strength: float = 1.0) -> npt.NDArray[np.uint8]:
        """Restore N aligned 512² RGB crops with fidelity ``w``; ``strength`` is not used (see docs)."""
        if faces.ndim != 4 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE, 3):
            raise ValueError(f"expected N×512×512×3 faces, got {faces.shape}")
        out = np.empty_like(faces)
        for start in range(0, len(faces), self.batch_size):
            chunk = faces[start : start + self.batch_size]
            out[start : start + len(chunk)] = self._run(chunk, float(fidelity))
        return out

    @torch.inference_mode()
    def _run(self, faces: npt.NDArray[np.uint8], w: float) -> npt.NDArray[np.uint8]:
        x = torch.from_numpy(np.ascontiguousarray(faces)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        cuda = x.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            y = self.model(x, w=w, adain=True)[0]
        y = y.float().clamp_(-1.0, 1.0).add_(1.0).mul_(127.5).round_()
        return y.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def state_dict_shapes(model: nn.Module) -> dict[str, Sequence[int]]:
    """``{key: shape}`` of a model's state dict (to compare with the official key list)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
