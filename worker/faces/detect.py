"""Face detectors behind one protocol: RetinaFace-R50 in production, MTCNN when its weights are absent.

Both implement :class:`worker.models.protocols.FaceDetector`: a batch of full-resolution
RGB photos in, per photo a list of :class:`~worker.frame.Face` (box, 5 landmarks,
score) in that photo's pixel coordinates out. Each photo is detected on a copy whose
long side is at most ``max_side`` (area-downscaled), and the results are scaled back,
so the cost does not grow with the camera's megapixels.

* :class:`RetinaFaceDetector` — ``detection_Resnet50_Final.pth`` from the registry;
  photos of a batch are letterboxed into one tensor and run together on the device.
* :class:`MTCNNDetector` — the 2 MB weights inside the facenet-pytorch wheel; CPU-friendly;
  what tests, CI and a fresh box use. Per photo on the CPU; on a GPU a batch's photos of one
  size run through the cascade together (:meth:`~worker.models.mtcnn.MTCNN.detect_many`).

:func:`load_detector` picks one and says, in one line, why.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import nms

from worker.cleanup.working import WorkingImage
from worker.errors import ModelFileError
from worker.frame import Face, Image
from worker.models import mtcnn as mtcnn_model
from worker.models import registry
from worker.models import retinaface as retinaface_model


def _face(box: np.ndarray, points: np.ndarray, score: float, scale: float) -> Face:
    """A detection on the working copy, in full-resolution coordinates.

    Both detectors give continuous coordinates (pixel edges at integers: RetinaFace's anchors sit at
    ``(i + 0.5) × stride``), which scale by ``1 / scale`` exactly.
    """
    b = [float(v) / scale for v in box[:4]]
    pts = tuple((float(x) / scale, float(y) / scale) for x, y in np.asarray(points).reshape(5, 2))
    return Face(box=(b[0], b[1], b[2], b[3]), landmarks=pts, score=float(score))


class MTCNNDetector:
    """MTCNN over each photo at a bounded size; keeps faces scoring at least ``min_score``."""

    name = "mtcnn"

    def __init__(self, model: mtcnn_model.MTCNN, max_side: int = 1024, min_score: float = 0.9) -> None:
        self.model = model
        self.max_side = max_side
        self.min_score = min_score

    def detect(self, images: Sequence[Image]) -> list[list[Face]]:
        works = [WorkingImage(image, self.max_side) for image in images]
        if self.model.device.type == "cuda":  # a batch's photos of one size in one cascade: far fewer launches
            detections = self.model.detect_many([work.rgb for work in works])
        else:  # on the CPU one photo at a time is faster (measured: 126–141 against 177–187 ms a photo)
            detections = [self.model.detect(work.rgb) for work in works]
        out = []
        for work, found in zip(works, detections, strict=True):
            faces = [_face(d.box, d.landmarks, d.score, work.scale) for d in found if d.score >= self.min_score]
            out.append(sorted(faces, key=lambda f: -f.score))
        return out


class RetinaFaceDetector:
    """RetinaFace-R50, photos of a batch letterboxed together; keeps faces scoring ≥ ``min_score``.

    ``min_score`` 0.97 is the threshold the official CodeFormer pipeline uses before
    restoring a face; NMS at IoU 0.4 as RetinaFace's own evaluation.
    """

    name = retinaface_model.NAME

    def __init__(
        self,
        model: retinaface_model.RetinaFace,
        device: str = "cpu",
        max_side: int = 1280,
        min_score: float = 0.97,
        batch_size: int = 8,
    ) -> None:
        self.model = model
        self.device = device
        self.max_side = max_side
        self.min_score = min_score
        self.batch_size = max(1, batch_size)

    def detect(self, images: Sequence[Image]) -> list[list[Face]]:
        out: list[list[Face]] = []
        for start in range(0, len(images), self.batch_size):
            out += self._detect_batch(images[start : start + self.batch_size])
        return out

    @torch.inference_mode()
    def _detect_batch(self, images: Sequence[Image]) -> list[list[Face]]:
        works = [WorkingImage(img, self.max_side) for img in images]
        height = -(-max(w.shape[0] for w in works) // 32) * 32
        width = -(-max(w.shape[1] for w in works) // 32) * 32
        batch = torch.zeros(len(works), 3, height, width, device=self.device)  # zero = the mean colour
        mean = torch.tensor(retinaface_model.MEAN_BGR, device=self.device).view(3, 1, 1)
        for i, work in enumerate(works):
            small = work.rgb
            t = torch.from_numpy(np.ascontiguousarray(small[..., ::-1])).to(self.device)  # RGB → BGR
            batch[i, :, : small.shape[0], : small.shape[1]] = t.permute(2, 0, 1).float() - mean
        cuda = batch.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            loc, prob, marks = self.model(batch)
        boxes, points = retinaface_model.decode(
            loc.float(), marks.float(), retinaface_model.anchors(height, width, batch.device)
        )
        out = []
        for i, work in enumerate(works):
            keep = prob[i].float() >= self.min_score
            b, p, s = boxes[i][keep], points[i][keep], prob[i][keep].float()
            pick = nms(b, s, 0.4)
            found = zip(b[pick].cpu().numpy(), p[pick].cpu().numpy(), s[pick].cpu().numpy(), strict=True)
            out.append([_face(bb, pp, float(ss), work.scale) for bb, pp, ss in found])
        return out


def load_detector(models_dir: Path, device: str = "cpu") -> tuple[MTCNNDetector | RetinaFaceDetector | None, str]:
    """RetinaFace when its verified weights are present, else MTCNN, else None — and why, in one line."""
    if registry.is_present("retinaface-r50", models_dir):
        try:
            path = registry.verify("retinaface-r50", models_dir)
            model = retinaface_model.load(path, device)
            batch = 8 if device == "cuda" else 1
            return RetinaFaceDetector(model, device, batch_size=batch), "face detector: RetinaFace-R50"
        except ModelFileError as exc:
            reason = f"RetinaFace unusable ({exc.message})"
    else:
        reason = "RetinaFace weights absent (apelier-worker models fetch retinaface-r50)"
    try:
        return MTCNNDetector(mtcnn_model.mtcnn(device)), f"face detector: MTCNN — {reason}"
    except ModelFileError as exc:
        return None, f"face detection off — {reason}; {exc.message}"
