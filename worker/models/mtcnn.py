"""MTCNN: a three-stage cascade face detector with five landmarks, small enough for any CPU.

Paper: Kaipeng Zhang, Zhanpeng Zhang, Zhifeng Li, Yu Qiao, "Joint Face Detection and
Alignment using Multi-task Cascaded Convolutional Networks", IEEE SPL 2016,
https://arxiv.org/abs/1604.02878.

Weights: ``pnet.pt``, ``rnet.pt``, ``onet.pt`` shipped inside the ``facenet-pytorch``
wheel (MIT; converted from the authors' release), 2 MB in all — the detector that works
on a fresh box with no download. Only those data files are read (found with
``importlib``, never imported): facenet-pytorch's own code pins torch < 2.3 and numpy < 2.

The cascade: an image pyramid (scale factor 0.709 down to a 12-px window) is scanned
by the fully convolutional P-Net (12×12 window, stride 2) for candidates; R-Net (24×24
crops) and O-Net (48×48 crops) each reject, re-score and regress the survivors, with
non-maximum suppression between stages; O-Net also gives the 5 landmarks (left eye,
right eye, nose, mouth left, mouth right — the order facexlib and the FFHQ template use).
Input RGB, normalised as (x − 127.5) / 128. R-Net's and O-Net's dense layers read their
input flattened in (x, y) order, as the converted weights expect.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms, roi_align

from worker.errors import ModelFileError
from worker.models import registry

NAME = "mtcnn"


class PNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.conv4_1(x).softmax(dim=1)[:, 1]


class RNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense5_2(x), self.dense5_1(x).softmax(dim=1)[:, 1]


class ONet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = F.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).flatten(1)))
        return self.dense6_2(x), self.dense6_3(x), self.dense6_1(x).softmax(dim=1)[:, 1]


@dataclass(frozen=True)
class Detection:
    """One face: box (x0, y0, x1, y1), 5 landmarks (x, y), score — in input pixels."""

    box: npt.NDArray[np.float32]
    landmarks: npt.NDArray[np.float32]
    score: float


class MTCNN(nn.Module):
    """The cascade. :meth:`detect` runs it on one RGB uint8 image."""

    def __init__(
        self,
        min_face: float = 20.0,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
    ) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.min_face = min_face
        self.thresholds = thresholds
        self.factor = factor

    @property
    def device(self) -> torch.device:
        return self.pnet.conv1.weight.device

    @torch.inference_mode()
    def detect(self, image: npt.NDArray[np.uint8]) -> list[Detection]:
        return self.detect_many([image])[0]

    @torch.inference_mode()
    def detect_many(self, images: Sequence[npt.NDArray[np.uint8]]) -> list[list[Detection]]:
        """:meth:`detect` on each image. Images of one size go through the cascade together: one call
        per network and pyramid level for all of them, instead of one per image (on a GPU, each
        call and each read of a result back costs more than the arithmetic)."""
        out: list[list[Detection]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(tuple(image.shape), []).append(i)
        for members in groups.values():
            stacked = np.stack([np.asarray(images[i], dtype=np.uint8) for i in members])
            # N×3×H×W in 0–255, contiguous: a channels-last view would run other kernels, rounding otherwise.
            img = torch.from_numpy(stacked).to(self.device).permute(0, 3, 1, 2).float().contiguous()
            for member, found in zip(members, self._cascade(img), strict=True):
                out[member] = found
        return out

    def _cascade(self, img: Tensor) -> list[list[Detection]]:
        h, w = img.shape[-2:]
        found: list[list[Detection]] = [[] for _ in range(img.shape[0])]
        idx, boxes = self._propose(img)
        if len(boxes):
            idx, boxes = self._refine(img, idx, boxes)
        if not len(boxes):
            return found
        idx, final, points = self._output(img, idx, boxes)
        for i, b, p in zip(idx.cpu().tolist(), final.cpu().numpy(), points.cpu().numpy(), strict=True):
            box = np.array([max(0, b[0]), max(0, b[1]), min(w, b[2]), min(h, b[3])], np.float32)
            found[i].append(Detection(box, p.astype(np.float32), float(b[4])))
        return found

    def _propose(self, img: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 1: P-Net over the pyramid → (image index, square candidate box (x0, y0, x1, y1, score))."""
        h, w = img.shape[-2:]
        scale = 12.0 / self.min_face
        side = min(h, w) * scale
        found, found_idx = [], []
        while side >= 12:
            size = (int(h * scale + 1), int(w * scale + 1))
            x = _normalise(F.interpolate(img, size=size, mode="area"))
            reg, prob = self.pnet(x)
            bs, ys, xs = torch.nonzero(prob >= self.thresholds[0], as_tuple=True)
            if len(ys):
                score = prob[bs, ys, xs]
                # Window (12×12 at stride 2 in the scaled image) back in input pixels.
                x0 = torch.floor((2 * xs + 1) / scale)
                y0 = torch.floor((2 * ys + 1) / scale)
                x1 = torch.floor((2 * xs + 12) / scale)
                y1 = torch.floor((2 * ys + 12) / scale)
                cand = torch.stack([x0, y0, x1, y1, score, *reg[bs, :, ys, xs].unbind(1)], dim=1)
                keep = _nms_within(cand[:, :4], cand[:, 4], bs, 0.5)
                found.append(cand[keep])
                found_idx.append(bs[keep])
            scale *= self.factor
            side *= self.factor
        if not found:
            return torch.zeros(0, dtype=torch.long, device=img.device), torch.zeros(0, 5, device=img.device)
        cand, idx = torch.cat(found), torch.cat(found_idx)
        keep = _nms_within(cand[:, :4], cand[:, 4], idx, 0.7)
        cand, idx = cand[keep], idx[keep]
        return idx, _square(_regress(cand[:, :5], cand[:, 5:9]))

    def _refine(self, img: Tensor, idx: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 2: R-Net on 24² crops rejects and regresses."""
        reg, prob = self.rnet(_crops(img, idx, boxes, 24))
        keep = prob > self.thresholds[1]
        boxes = torch.cat([boxes[keep, :4], prob[keep, None]], dim=1)
        reg, idx = reg[keep], idx[keep]
        pick = _nms_within(boxes[:, :4], boxes[:, 4], idx, 0.7)
        return idx[pick], _square(_regress(boxes[pick], reg[pick]))

    def _output(self, img: Tensor, idx: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Stage 3: O-Net on 48² crops → final (image index, box, landmarks)."""
        reg, marks, prob = self.onet(_crops(img, idx, boxes, 48))
        keep = prob > self.thresholds[2]
        boxes = torch.cat([boxes[keep, :4], prob[keep, None]], dim=1)
        reg, marks, idx = reg[keep], marks[keep], idx[keep]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = torch.stack([boxes[:, :1] + bw * marks[:, :5] - 1, boxes[:, 1:2] + bh * marks[:, 5:] - 1], -1)
        boxes = _regress(boxes, reg)
        pick = _nms_min(boxes[:, :4], boxes[:, 4], idx, 0.7)
        return idx[pick], boxes[pick], points[pick]


def _normalise(x: Tensor) -> Tensor:
    return (x - 127.5) * 0.0078125


def _regress(boxes: Tensor, reg: Tensor) -> Tensor:
    """Move box edges by the predicted offsets (fractions of width/height)."""
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    scale = torch.cat([w, h, w, h], dim=1)
    return torch.cat([boxes[:, :4] + reg * scale, boxes[:, 4:]], dim=1)


def _square(boxes: Tensor) -> Tensor:
    """Grow each box to a square around its centre."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x0 = boxes[:, 0] + w * 0.5 - side * 0.5
    y0 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x0, y0, x0 + side, y0 + side, boxes[:, 4]], dim=1)


def _nms_within(boxes: Tensor, scores: Tensor, idx: Tensor, threshold: float) -> Tensor:
    """NMS within each image ``idx``: the boxes of image k move k box-spans away, so boxes of two
    images never overlap (image 0 stays put: one image gives exactly ``nms``). The span, not the
    largest coordinate, as boxes may start left of or above the image."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    span = boxes.max() - boxes.min() + 1
    return nms(boxes + (idx.to(boxes.dtype) * span)[:, None], scores, threshold)


def _crops(img: Tensor, idx: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Resample each box (integer-rounded, inclusive) of image ``idx`` to size², zero outside, normalised."""
    b = torch.trunc(boxes[:, :4])
    rois = torch.cat(
        [idx[:, None].to(b.dtype), b[:, :2] - 1, b[:, 2:4]], dim=1
    )  # pixel-edge coordinates of pixels x0..x1 (1-based, inclusive)
    return _normalise(roi_align(img, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True))


def _nms_min(boxes: Tensor, scores: Tensor, idx: Tensor, threshold: float) -> Tensor:
    """Greedy NMS on intersection over the *smaller* area (drops boxes nested in a better one), within
    each image ``idx``. On the CPU: a few dozen boxes, read back once instead of once per box."""
    b, s, im = boxes.cpu(), scores.cpu(), idx.cpu()
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    keep: list[int] = []
    suppressed = torch.zeros(len(b), dtype=torch.bool)
    for i in s.argsort(descending=True).tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        xx0 = torch.maximum(b[i, 0], b[:, 0])
        yy0 = torch.maximum(b[i, 1], b[:, 1])
        xx1 = torch.minimum(b[i, 2], b[:, 2])
        yy1 = torch.minimum(b[i, 3], b[:, 3])
        inter = (xx1 - xx0 + 1).clamp(min=0) * (yy1 - yy0 + 1).clamp(min=0)
        suppressed |= (inter / torch.minimum(area[i], area) > threshold) & (im == im[i])
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def weights_dir() -> Path | None:
    """The folder of the MTCNN weights inside the installed facenet-pytorch wheel, if any."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if all((folder / f"{n}.pt").is_file() for n in ("pnet", "rnet", "onet")) else None


def mtcnn(device: str = "cpu", folder: Path | None = None, **kwargs: object) -> MTCNN:
    """Build MTCNN with the wheel's weights (loaded ``weights_only``, strictly)."""
    folder = folder or weights_dir()
    if folder is None:
        raise ModelFileError(
            "MTCNN weights not found; install them with `pip install --no-deps facenet-pytorch==2.6.0`"
        )
    model = MTCNN(**kwargs)  # type: ignore[arg-type]
    reinstall = "reinstall it with `pip install --no-deps --force-reinstall facenet-pytorch==2.6.0`"
    for name in ("pnet", "rnet", "onet"):
        path = folder / f"{name}.pt"
        registry.ready(getattr(model, name), registry.torch_load(path, reinstall), str(path), "cpu", reinstall)
    ready: MTCNN = registry.ready(model, None, "", device)
    return ready
