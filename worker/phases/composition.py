"""Phase 4 — composition: level a tilted horizon and crop to an aspect, keeping every face.

**Straighten** (``EditSettings.horizon_correction``). The tilt is measured in phase 0
(:mod:`worker.scene.straighten`, on the analysis' working copy, into ``frame.tilt``) and
acted on here — measured here only when phase 0 did not run. The photo is rotated only when that
estimate is confident and the tilt is between :data:`~worker.scene.straighten.MIN_ROTATION_DEG` and
:data:`~worker.scene.straighten.MAX_ROTATION_DEG`; otherwise it is left alone and the report says why.
The rotation is about the centre, and the result is cropped to the largest axis-aligned
rectangle with no empty corners, in one resample (bilinear; OpenCV on the CPU, torch
``grid_sample`` on the GPU). If that rectangle would cut into a known face (with the crop's
margin, as far as the photo has it), the photo is not rotated at all.

**Crop** (``EditSettings.crop_aspect``, e.g. ``"4:5"``). The aspect applies in the photo's own
orientation (4:5 on a landscape photo is 5:4). The largest window of that aspect is placed on
the subject — the faces, else the salient region — and moved only so far as needed to keep
every face inside with a margin. If the faces cannot all fit — or no face detector is loaded,
so faces cannot be known — the photo is not cropped: a crop never cuts through a face.

Report (``report["composition"]``): ``rotation_deg`` (counter-clockwise, degrees, as applied),
``crop_box`` ``[x0, y0, x1, y1]`` in pixels of the input after rotating it about its centre on
its own canvas (``None``: no crop), ``size`` (the output's width and height), and the evidence
behind each decision. ``frame.faces`` are moved into the output's coordinates.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from worker.frame import Face, Frame
from worker.imaging.resize import shrink
from worker.phases import PhaseContext
from worker.scene.saliency import salient_box
from worker.scene.straighten import estimate_tilt

NAME = "composition"
Pixels = npt.NDArray[Any]
Box = tuple[float, float, float, float]


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    for frame in frames:
        report: dict[str, Any] = {"rotation_deg": 0.0, "crop_box": None}
        h, w = frame.image.shape[:2]
        angle = 0.0
        if ctx.edit.horizon_correction:
            tilt = dict(frame.tilt) if frame.tilt is not None else estimate_tilt(frame.image)
            report["straighten"] = tilt
            angle = float(tilt["rotation_deg"])
        else:
            report["straighten"] = {"rotation_deg": 0.0, "reason": "horizon_correction is off"}
        box: Box | None = None
        faces = list(frame.faces)
        if angle:
            box = inscribed_box(w, h, angle)
            rotated_faces = [_rotate_face(f, angle, w, h) for f in frame.faces]
            cut = _faces_cut(rotated_faces, box, w, h)
            if cut:
                # Levelling crops the corners away; it must not take part of a face with it.
                report["straighten"]["rotation_deg"] = 0.0
                report["straighten"]["reason"] = f"levelling by {angle:g}° would crop {cut} face(s); left alone"
                angle, box = 0.0, None
            else:
                faces = rotated_faces
        ratio = ctx.edit.crop_ratio
        if ratio and ctx.models.face_detector is None and not frame.faces:
            # Without a detector no face is known, so any crop could cut one: leave the frame.
            report["crop"] = {"applied": False, "reason": "no face detector loaded; a crop could cut a face"}
        elif ratio:
            region = box or (0.0, 0.0, float(w), float(h))
            crop, why = aspect_crop(frame.image, region, ratio, faces, angle)
            report["crop"] = why
            if crop is not None:
                box = crop
        if box is not None:
            frame.image = rotate_crop(frame.image, angle, box, ctx.models.device)
            frame.faces = [_crop_face(f, box) for f in faces]
            report["crop_box"] = [round(v) for v in box]
        report["rotation_deg"] = round(angle, 2)
        report["size"] = [frame.width, frame.height]
        frame.report[NAME] = report


# --- rotate and crop ---
def inscribed_box(width: int, height: int, angle_deg: float) -> Box:
    """The largest axis-aligned rectangle inside ``width``×``height`` rotated by ``angle_deg``
    about its centre, as (x0, y0, x1, y1) on the same canvas.

    Either the rectangle touches all four rotated sides (width·cos − height·sin over cos 2a,
    and the same for the height), or — for long thin frames at larger angles — only the two long
    sides, at half the short side; whichever the geometry allows.
    """
    a = math.radians(abs(angle_deg))
    if a == 0:
        return (0.0, 0.0, float(width), float(height))
    sin_a, cos_a = math.sin(a), math.cos(a)
    long_side, short_side = max(width, height), min(width, height)
    if short_side <= 2.0 * sin_a * cos_a * long_side or abs(sin_a - cos_a) < 1e-10:
        half = 0.5 * short_side
        w_r, h_r = (half / sin_a, half / cos_a) if width >= height else (half / cos_a, half / sin_a)
    else:
        cos_2a = cos_a * cos_a - sin_a * sin_a
        w_r = (width * cos_a - height * sin_a) / cos_2a
        h_r = (height * cos_a - width * sin_a) / cos_2a
    # Whole pixels, strictly inside (one pixel of safety for the resampling footprint).
    w_i, h_i = max(1, math.floor(w_r) - 2), max(1, math.floor(h_r) - 2)
    x0, y0 = (width - w_i) / 2.0, (height - h_i) / 2.0
    return (math.floor(x0), math.floor(y0), math.floor(x0) + w_i, math.floor(y0) + h_i)


def _rotation_matrix(angle_deg: float, width: int, height: int) -> npt.NDArray[np.float64]:
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle_deg, 1.0)
    return np.asarray(matrix, dtype=np.float64)


def rotate_crop(image: Pixels, angle_deg: float, box: Box, device: str = "cpu") -> Pixels:
    """Rotate about the centre by ``angle_deg`` (counter-clockwise) and crop to ``box``, in one
    bilinear pass: OpenCV on the CPU, torch's ``grid_sample`` on a CUDA device."""
    x0, y0, x1, y1 = (round(v) for v in box)
    h, w = image.shape[:2]
    if not angle_deg:
        return np.ascontiguousarray(image[y0:y1, x0:x1])
    matrix = _rotation_matrix(angle_deg, w, h)
    matrix[:, 2] -= (x0, y0)
    if device.startswith("cuda"):
        return _warp_torch(image, matrix, (x1 - x0, y1 - y0), device)
    return cv2.warpAffine(image, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _warp_torch(image: Pixels, matrix: npt.NDArray[np.float64], size: tuple[int, int], device: str) -> Pixels:
    """``cv2.warpAffine`` (source → output ``matrix``, bilinear, replicated border) with torch."""
    h, w = image.shape[:2]
    ow, oh = size
    inverse = cv2.invertAffineTransform(matrix)  # output pixel → source pixel
    # grid_sample works in [-1, 1] coordinates (pixel centres, align_corners=False):
    # x_norm = (2x + 1) / W - 1. Compose: output norm → output pixel → source pixel → source norm.
    to_pixel = np.array([[ow / 2, 0, (ow - 1) / 2], [0, oh / 2, (oh - 1) / 2], [0, 0, 1]])
    to_norm = np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])
    theta = (to_norm @ np.vstack([inverse, [0, 0, 1]]) @ to_pixel)[:2]
    with torch.no_grad():
        src = torch.from_numpy(np.require(image, requirements=["C", "W"])).to(device).permute(2, 0, 1)[None].float()
        affine = torch.tensor(theta, dtype=torch.float32, device=device)[None]
        grid = F.affine_grid(affine, [1, 3, oh, ow], align_corners=False)
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
        result: Pixels = out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return result


# --- aspect crop ---
def aspect_crop(
    image: Pixels, region: Box, ratio: float, faces: list[Face], angle: float
) -> tuple[Box | None, dict[str, Any]]:
    """The largest window of ``ratio`` (w/h, in the photo's orientation) inside ``region`` that keeps
    every face with a margin, placed on the subject; None (and why) if the faces do not fit."""
    rx0, ry0, rx1, ry1 = region
    rw, rh = rx1 - rx0, ry1 - ry0
    if (rw > rh and ratio < 1) or (rw < rh and ratio > 1):
        ratio = 1.0 / ratio  # 4:5 on a landscape photo means 5:4 (a square photo takes it as given)
    if abs(rw / rh - ratio) < 0.005:
        return None, {"applied": False, "reason": "already at that aspect"}
    if rw / rh > ratio:
        ww, wh = rh * ratio, rh
    else:
        ww, wh = rw, rw / ratio
    ww, wh = max(1.0, math.floor(ww)), max(1.0, math.floor(wh))
    visible = [b for b in (_clip_box(f.box, region) for f in faces) if b is not None]
    keep: Box | None = None
    if visible:
        keep = _union([_with_margin(b) for b in visible])
        keep = _clip_box(keep, region) or keep
        if keep[2] - keep[0] > ww + 0.5 or keep[3] - keep[1] > wh + 0.5:
            return None, {
                "applied": False,
                "reason": f"the {len(visible)} faces do not fit a {_aspect(ratio)} crop",
            }
        fx0, fy0, fx1, fy1 = _union(visible)
        cx, cy = (fx0 + fx1) / 2, fy0 + 0.4 * (fy1 - fy0)
        target = (cx - ww / 2, cy - 0.4 * wh)  # faces a little above the middle
        subject = "faces"
    else:
        grey = cv2.cvtColor(shrink(image, 512), cv2.COLOR_RGB2GRAY)
        sx0, sy0, sx1, sy1 = salient_box(grey)
        h, w = image.shape[:2]
        if angle:  # the salient box was found on the unrotated image: move its centre
            cx, cy = _rotate_point(((sx0 + sx1) / 2 * w, (sy0 + sy1) / 2 * h), angle, w, h)
        else:
            cx, cy = (sx0 + sx1) / 2 * w, (sy0 + sy1) / 2 * h
        target = (cx - ww / 2, cy - wh / 2)
        subject = "salient region"
    x = min(max(target[0], rx0), rx1 - ww)
    y = min(max(target[1], ry0), ry1 - wh)
    if keep is not None:  # slide just enough to keep every face (with margin) inside
        x = min(max(x, keep[2] - ww), keep[0])
        y = min(max(y, keep[3] - wh), keep[1])
        x = min(max(x, rx0), rx1 - ww)
        y = min(max(y, ry0), ry1 - wh)
    x, y = math.floor(x), math.floor(y)
    return (x, y, x + ww, y + wh), {"applied": True, "aspect": _aspect(ratio), "placed_on": subject}


def _aspect(ratio: float) -> str:
    for a in range(1, 33):
        b = a / ratio
        if abs(b - round(b)) < 0.01 and round(b) > 0:
            return f"{a}:{round(b)}"
    return f"{ratio:.3f}"


def _with_margin(box: Box) -> Box:
    """A face box grown to what a crop must keep: hair above, chin and neck below, ears aside."""
    x0, y0, x1, y1 = box
    size = max(x1 - x0, y1 - y0)
    return (x0 - 0.3 * size, y0 - 0.45 * size, x1 + 0.3 * size, y1 + 0.35 * size)


def _faces_cut(faces: list[Face], box: Box, width: int, height: int) -> int:
    """How many faces ``box`` would cut into: their margin, as far as the photo has it, must fit."""
    cut = 0
    for face in faces:
        need = _clip_box(_with_margin(face.box), (0.0, 0.0, float(width), float(height)))
        if need is not None and (need[0] < box[0] or need[1] < box[1] or need[2] > box[2] or need[3] > box[3]):
            cut += 1
    return cut


def _union(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _clip_box(box: Box, region: Box) -> Box | None:
    x0, y0 = max(box[0], region[0]), max(box[1], region[1])
    x1, y1 = min(box[2], region[2]), min(box[3], region[3])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


# --- faces through the transform ---
def _rotate_point(p: tuple[float, float], angle: float, w: int, h: int) -> tuple[float, float]:
    m = _rotation_matrix(angle, w, h)
    return (
        float(m[0, 0] * p[0] + m[0, 1] * p[1] + m[0, 2]),
        float(m[1, 0] * p[0] + m[1, 1] * p[1] + m[1, 2]),
    )


def _rotate_face(face: Face, angle: float, w: int, h: int) -> Face:
    if not angle:
        return face
    x0, y0, x1, y1 = face.box
    corners = [_rotate_point(c, angle, w, h) for c in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    landmarks = tuple(_rotate_point(p, angle, w, h) for p in face.landmarks)
    return Face((min(xs), min(ys), max(xs), max(ys)), landmarks, face.score)


def _crop_face(face: Face, box: Box) -> Face:
    dx, dy = box[0], box[1]
    x0, y0, x1, y1 = face.box
    return Face((x0 - dx, y0 - dy, x1 - dx, y1 - dy), tuple((x - dx, y - dy) for x, y in face.landmarks), face.score)
