"""Phase 0 — analysis: faces, quality scores, scene type and a perceptual hash per photo.

Decoding (orientation, ICC → sRGB) happens before, in ``worker.decode``, in
the I/O threads. This phase looks at the decoded pixels and records what later
phases and the app need: ``faces`` (boxes + 5 landmarks), ``quality`` (0–100
with its parts), ``scene_type`` and ``phash`` for near-duplicate grouping.
"""

from __future__ import annotations

from typing import Any, cast

import cv2
import numpy as np

from worker.frame import Frame, Image
from worker.phases import PhaseContext

NAME = "analysis"
_ANALYSIS_EDGE = 1024  # scores are computed on a copy with this long edge, so they do not depend on resolution


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    detector = ctx.models.face_detector
    faces_per_frame = detector.detect([f.image for f in frames]) if detector and frames else [[] for _ in frames]
    for frame, faces in zip(frames, faces_per_frame, strict=True):
        frame.faces = list(faces)
        small = _downscale(frame.image, _ANALYSIS_EDGE)
        quality = quality_scores(small)
        frame.report[NAME] = {
            "source": frame.source.to_json(),
            "faces": [face.to_json() for face in frame.faces],
            "face_detector": getattr(detector, "name", None),
            "quality": quality,
            "scene_type": scene_type(frame, small),
            "phash": phash(small),
        }


def _downscale(image: Image, long_edge: int) -> Image:
    h, w = image.shape[:2]
    scale = long_edge / max(h, w)
    if scale >= 1:
        return image
    return cast(
        Image, cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    )


def quality_scores(image: Image) -> dict[str, Any]:
    """Sharpness (variance of the Laplacian), exposure (clipping, mean level) → a 0–100 score."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    lap = float(cv2.Laplacian(grey, cv2.CV_64F).var()) if min(grey.shape) >= 3 else 0.0
    sharpness = float(np.clip(100.0 * np.log1p(lap) / np.log1p(1000.0), 0, 100))
    mean = float(grey.mean()) / 255.0
    clipped_high = float((grey >= 250).mean())
    clipped_low = float((grey <= 5).mean())
    exposure = float(np.clip(100.0 - 160.0 * abs(mean - 0.45) - 200.0 * (clipped_high + clipped_low), 0, 100))
    score = round(0.6 * sharpness + 0.4 * exposure)
    return {
        "score": int(np.clip(score, 0, 100)),
        "sharpness": round(sharpness, 1),
        "exposure": round(exposure, 1),
        "mean_level": round(mean, 3),
        "clipped_highlights": round(clipped_high, 4),
        "clipped_shadows": round(clipped_low, 4),
    }


def scene_type(frame: Frame, small: Image) -> str:
    """A coarse label from the faces found: portrait, couple, group, or other."""
    faces = len(frame.faces)
    if faces == 1:
        return "portrait"
    if faces == 2:
        return "couple"
    if faces >= 3:
        return "group"
    return "other"


def phash(image: Image) -> str:
    """64-bit DCT perceptual hash as 16 hex digits."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA)
    dct = cv2.dct(small)[:8, :8]
    bits = (dct > np.median(dct[1:].ravel() if dct.size > 1 else dct)).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"
