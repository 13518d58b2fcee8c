"""ParseNet: 19-class face parsing of an aligned 512² face (skin, brows, eyes, nose, lips, hair, …).

Paper: Chaofeng Chen, Xiaoming Li, Lingbo Yang, Xianhui Lin, Lei Zhang, Kwan-Yee K. Wong,
"Progressive Semantic-Aware Style Transformation for Blind Face Restoration" (PSFR-GAN),
CVPR 2021, https://arxiv.org/abs/2009.08709 — ParseNet is its parsing network.

**Licence: the weights (``parsing_parsenet.pth``, redistributed by facexlib) come from
PSFR-GAN, which is CC BY-NC-SA 4.0 — non-commercial.** The worker loads them only in the
CodeFormer path, which already requires the operator's non-commercial acknowledgement;
the licence-clean classical path never uses them.

Architecture (the checkpoint's configuration): a 3×3 conv to 64 channels, four
downsampling residual blocks (64→128→256→256→256, 512² → 32²), ten residual blocks at 32²
added back to their input, four upsampling residual blocks (256→256→256→128→64), and two
3×3 output convs (a 3-channel image, unused here, and the 19 parsing logits). Every conv
is reflection-padded; residual convs use BatchNorm and LeakyReLU(0.2); a block that
changes size or width has a 3×3 conv shortcut. Input RGB in [-1, 1].

Label ids (CelebAMask-HQ order): 0 background, 1 skin, 2/3 brows, 4/5 eyes, 6 glasses,
7/8 ears, 9 earring, 10 nose, 11 mouth, 12/13 lips, 14 neck, 15 necklace, 16 cloth,
17 hair, 18 hat.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worker.errors import ModelFileError
from worker.models import registry

NAME = "parsenet"
LABELS = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "glasses", "l_ear", "r_ear", "earring",
    "nose", "mouth", "u_lip", "l_lip", "neck", "necklace", "cloth", "hair", "hat",
)  # fmt: skip
# What the paste-back treats as face (as the official pipeline): all but background, neck, cloth, hair, hat.
FACE_LABELS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15)


class _BatchNorm(nn.Module):
    """Holds the BatchNorm under ``norm`` (the checkpoint's ``….norm.norm.*`` keys)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


class ConvLayer(nn.Module):
    """[nearest ×2] → reflection pad → 3×3 conv [stride 2] → [BatchNorm] → [LeakyReLU 0.2]."""

    def __init__(self, cin: int, cout: int, scale: str = "none", norm: bool = False, relu: bool = False) -> None:
        super().__init__()
        self.up = scale == "up"
        self.conv2d = nn.Conv2d(cin, cout, 3, 2 if scale == "down" else 1, bias=not norm)
        self.norm = _BatchNorm(cout) if norm else None
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        if self.norm is not None:
            x = self.norm(x)
        return F.leaky_relu(x, 0.2) if self.relu else x


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, scale: str = "none") -> None:
        super().__init__()
        self.shortcut_func = ConvLayer(cin, cout, scale) if scale != "none" or cin != cout else None
        first, second = {"down": ("none", "down"), "up": ("up", "none"), "none": ("none", "none")}[scale]
        self.conv1 = ConvLayer(cin, cout, first, norm=True, relu=True)
        self.conv2 = ConvLayer(cout, cout, second, norm=True, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.shortcut_func(x) if self.shortcut_func is not None else x
        return skip + self.conv2(self.conv1(x))


class ParseNet(nn.Module):
    """``forward(x)`` → (parsing logits (b, 19, 512, 512), image (b, 3, 512, 512))."""

    def __init__(self) -> None:
        super().__init__()
        down = (64, 128, 256, 256, 256)
        self.encoder = nn.Sequential(ConvLayer(3, 64), *(ResidualBlock(a, b, "down") for a, b in pairwise(down)))
        self.body = nn.Sequential(*(ResidualBlock(256, 256) for _ in range(10)))
        up = (256, 256, 256, 128, 64)
        self.decoder = nn.Sequential(*(ResidualBlock(a, b, "up") for a, b in pairwise(up)))
        self.out_img_conv = ConvLayer(64, 3)
        self.out_mask_conv = ConvLayer(64, len(LABELS))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.encoder(x)
        x = self.decoder(feat + self.body(feat))
        return self.out_mask_conv(x), self.out_img_conv(x)


def parsenet(state_dict: Mapping[str, Tensor] | None = None, device: str = "cpu") -> ParseNet:
    """Build ParseNet in eval mode, loading ``state_dict`` strictly when given."""
    model: ParseNet = registry.ready(ParseNet(), state_dict, "parsing_parsenet.pth", device)
    return model


def checkpoint_filter(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    state = checkpoint.get("params", checkpoint)
    if not isinstance(state, Mapping):
        raise ModelFileError("ParseNet checkpoint holds no state dict; fetch it again")
    return dict(state)


def load(path: Path, device: str = "cpu") -> ParseNet:
    return parsenet(checkpoint_filter(registry.torch_load(path)), device)


class FaceParser:
    """Parses aligned 512² RGB crops into label maps, batched on the device."""

    name = NAME

    def __init__(self, model: ParseNet, device: str = "cpu", batch_size: int = 8) -> None:
        self.model = model
        self.device = device
        self.batch_size = max(1, batch_size)

    @torch.inference_mode()
    def parse(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """N×512×512×3 RGB uint8 → N×512×512 label ids."""
        out = np.empty(faces.shape[:3], dtype=np.uint8)
        for start in range(0, len(faces), self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(faces[start : start + self.batch_size]))
            x = chunk.to(self.device).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
            logits = self.model(x)[0]
            out[start : start + len(chunk)] = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
        return out

    def face_mask(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """N×512×512 in [0, 1]: 1 on the face classes (before feathering)."""
        labels = self.parse(faces)
        return np.isin(labels, FACE_LABELS).astype(np.float32)
