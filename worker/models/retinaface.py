"""RetinaFace (ResNet-50): face boxes, scores and five landmarks in one pass.

Paper: Jiankang Deng, Jia Guo, Evangelos Ververas, Irene Kotsia, Stefanos Zafeiriou,
"RetinaFace: Single-shot Multi-level Face Localisation in the Wild", CVPR 2020,
https://arxiv.org/abs/1905.00641.

Weights: ``detection_Resnet50_Final.pth`` from biubug6/Pytorch_Retinaface as redistributed
by facexlib (both MIT), trained on WIDER FACE. The registry fetches and verifies it.

Architecture (the configuration of that checkpoint): a torchvision ResNet-50 body whose
layer2/3/4 outputs (strides 8, 16, 32) feed a 3-level feature pyramid (1×1 lateral
conv + BN + ReLU, nearest upsampling, 3×3 merge conv), an SSH context module per
level (3×3 ∥ 5×5 ∥ 7×7 receptive fields built from stacked 3×3 convs), and per level
1×1 heads for 2 anchors per position: face/background logits, box offsets and 5
landmark offsets. Anchors are square, 16/32, 64/128, 256/512 px at strides 8/16/32;
offsets decode SSD-style with variances (0.1, 0.2).

Written here (not imported from facexlib) so the worker does not need facexlib's
install requirements (the GUI build of OpenCV, numba, filterpy); module names follow
the checkpoint's keys so it loads with ``strict=True``. Input: BGR float, mean
(104, 117, 123) subtracted, as trained.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from worker.errors import ModelFileError
from worker.models import registry

NAME = "retinaface-r50"
MEAN_BGR = (104.0, 117.0, 123.0)
STEPS = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)


def _conv_bn(cin: int, cout: int, k: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], out: int) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out, 1, relu=True)
        self.output2 = _conv_bn(in_channels[1], out, 1, relu=True)
        self.output3 = _conv_bn(in_channels[2], out, 1, relu=True)
        self.merge1 = _conv_bn(out, out, 3, relu=True)
        self.merge2 = _conv_bn(out, out, 3, relu=True)

    def forward(self, c3: Tensor, c4: Tensor, c5: Tensor) -> list[Tensor]:
        p5 = self.output3(c5)
        p4 = self.merge2(self.output2(c4) + F.interpolate(p5, size=c4.shape[-2:], mode="nearest"))
        p3 = self.merge1(self.output1(c3) + F.interpolate(p4, size=c3.shape[-2:], mode="nearest"))
        return [p3, p4, p5]


class SSH(nn.Module):
    """Context module: concatenated 3×3, 5×5 (two 3×3) and 7×7 (three 3×3) branches, then ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn(cin, cout // 2, 3, relu=False)
        self.conv5X5_1 = _conv_bn(cin, cout // 4, 3, relu=True)
        self.conv5X5_2 = _conv_bn(cout // 4, cout // 4, 3, relu=False)
        self.conv7X7_2 = _conv_bn(cout // 4, cout // 4, 3, relu=True)
        self.conv7x7_3 = _conv_bn(cout // 4, cout // 4, 3, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.conv5X5_1(x)
        b7 = self.conv7X7_2(b5)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(b5), self.conv7x7_3(b7)], dim=1))


class _Head(nn.Module):
    def __init__(self, cin: int, per_anchor: int, anchors: int = 2) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(cin, anchors * per_anchor, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.per_anchor)


class _Body(nn.Module):
    """ResNet-50 up to layer4; returns the layer2, layer3 and layer4 feature maps."""

    def __init__(self) -> None:
        super().__init__()
        r = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        return c3, c4, self.layer4(c4)


class RetinaFace(nn.Module):
    """``forward(x)`` → (box offsets (b, A, 4), face probability (b, A), landmark offsets (b, A, 10))."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _Body()
        self.fpn = FPN((512, 1024, 2048), 256)
        self.ssh1, self.ssh2, self.ssh3 = SSH(256, 256), SSH(256, 256), SSH(256, 256)
        self.ClassHead = nn.ModuleList(_Head(256, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(256, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(256, 10) for _ in range(3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats = self.fpn(*self.body(x))
        feats = [self.ssh1(feats[0]), self.ssh2(feats[1]), self.ssh3(feats[2])]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats, strict=True)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats, strict=True)], dim=1)
        landmarks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats, strict=True)], dim=1)
        return loc, logits.softmax(dim=-1)[..., 1], landmarks


def anchors(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """Anchor centres and sizes (cx, cy, w, h) in pixels, in the order the heads emit them."""
    out = []
    for step, sizes in zip(STEPS, ANCHOR_SIZES, strict=True):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        ys, xs = torch.meshgrid(
            (torch.arange(fh, device=device, dtype=torch.float32) + 0.5) * step,
            (torch.arange(fw, device=device, dtype=torch.float32) + 0.5) * step,
            indexing="ij",
        )
        per_size = [torch.stack([xs, ys, torch.full_like(xs, s), torch.full_like(xs, s)], dim=-1) for s in sizes]
        out.append(torch.stack(per_size, dim=2).reshape(-1, 4))
    return torch.cat(out, dim=0)


def decode(loc: Tensor, landmarks: Tensor, priors: Tensor) -> tuple[Tensor, Tensor]:
    """Offsets → boxes (…, 4: x0, y0, x1, y1) and landmarks (…, 5, 2), in pixels."""
    centre = priors[:, :2] + loc[..., :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[..., 2:] * VARIANCES[1])
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
    points = landmarks.reshape(*landmarks.shape[:-1], 5, 2)
    points = priors[:, None, :2] + points * VARIANCES[0] * priors[:, None, 2:]
    return boxes, points


def checkpoint_filter(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The published file's keys carry a ``module.`` prefix (saved from DataParallel); drop it."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise ModelFileError("RetinaFace checkpoint holds no state dict; fetch it again")
    return {k.removeprefix("module."): v for k, v in state.items()}


def retinaface(state_dict: Mapping[str, Tensor] | None = None, device: str = "cpu") -> RetinaFace:
    """Build RetinaFace-R50 in eval mode, loading ``state_dict`` strictly when given."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's init warnings are irrelevant: weights follow
        model = RetinaFace()
    ready: RetinaFace = registry.ready(model, state_dict, "detection_Resnet50_Final.pth", device)
    return ready


def load(path: Path, device: str = "cpu") -> RetinaFace:
    return retinaface(checkpoint_filter(registry.torch_load(path)), device)
