"""Phase 0 — analysis: faces, quality scores, scene type and perceptual hashes per photo.

Decoding (orientation, ICC → sRGB) happens before, in ``worker.imaging.decode``, in the I/O
threads. This phase looks at the decoded pixels and records what later phases, the
gallery-level culling (``worker.scene.culling``) and the app need, under ``report["analysis"]``:

``faces``
    boxes + 5 landmarks from ``ctx.models.face_detector`` (empty without one).
``quality``
    a 0–100 ``score`` and its parts, each 0–100 with the measurement behind it:

    * **sharpness** where it matters — the faces if there are any (each face judged at most
      256 px across), else the salient region of the photo judged at the size clients see
      (2048 px long edge) — so the score does not depend on the camera's resolution. The
      measurement is the blur radius of the strongest edges in pixels (``blur_px``), estimated
      from how much their gradient drops when the image is blurred once more by a known
      amount (re-blur ratio; Hu & de Haan, ICIP 2006). Sharp photos measure 0.7–1.2 px.
    * **exposure** — log-average luminance in EV against middle grey (``exposure_ev``, from
      the faces when there are any), clipped highlights and crushed shadows.
    * **noise** — the sensor noise σ in 8-bit levels at full resolution, from the flattest
      tiles (Immerkær, CVIU 1996).
    * **eyes** — per face with landmarks and at least ~30 px between the eyes: open, closed or
      unknown, from the shape of the dark iris blob at each eye landmark.
``scene_type``
    ``portrait``, ``couple``, ``group`` (from faces), else ``detail``, ``landscape``,
    ``outdoor``, ``indoor`` or ``other`` (sky, foliage, depth of field, light), with the
    cues in ``scene``. Rules, not a learned classifier: cheap and explainable, and coarse.
``phash`` / ``dhash``
    64-bit perceptual hashes (hex) for near-duplicate and burst grouping.

When the job levels horizons (``horizon_correction``), the tilt is measured here too, on the
same 1024 px copy (``worker.scene.straighten``), into ``frame.tilt``: phase 4 acts on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from worker.frame import Face, Frame
from worker.imaging.colour import srgb_to_linear
from worker.imaging.resize import fit_size, halve_to, shrink
from worker.phases import PhaseContext
from worker.scene import straighten
from worker.scene.saliency import salient_box

NAME = "analysis"
WORK_EDGE = straighten.WORK_EDGE  # saliency, hashes and the tilt share one 1024 px copy
STATS_EDGE = 512  # exposure, sky, colour: global statistics
SHARP_EDGE = 2048  # the subject's sharpness is judged at the size clients see
FACE_EDGE = 256  # a face is judged at most this many pixels across
MIN_FACE_PX = 24  # smaller faces are too small to judge
_REBLUR_SIGMA = 1.0
_WIDE_REBLUR_SIGMA = 3.0
_BLUR_AT_HALF_SCORE = 2.0  # px of blur radius that scores 50
# Weights of the overall score. Closed eyes on a prominent face subtract on top.
WEIGHTS = {"sharpness": 0.55, "exposure": 0.3, "noise": 0.15}
CLOSED_EYES_PENALTY = 25

FloatArray = npt.NDArray[Any]
Pixels = npt.NDArray[Any]  # uint8 RGB or grey; OpenCV's stubs type every result loosely
_SRGB_TO_LINEAR = srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    detector = ctx.models.face_detector
    faces_per_frame = detector.detect([f.image for f in frames]) if detector and frames else [[] for _ in frames]
    for frame, faces in zip(frames, faces_per_frame, strict=True):
        frame.faces = list(faces)
    detector_name = getattr(detector, "name", None)

    def measure(frame: Frame) -> None:  # CPU only: on the photo threads, a photo each
        copies = WorkingCopies.of(frame.image)
        report = analyse(frame.image, frame.faces, copies)
        if ctx.edit.horizon_correction:  # measured here, on the copy already made; phase 4 acts on it
            frame.tilt = straighten.measure(copies.grey_small, copies.small)
        frame.report[NAME] = {
            "source": frame.source.to_json(),
            "faces": [face.to_json() for face in frame.faces],
            "face_detector": detector_name,
            **report,
        }

    ctx.each(measure, frames)


@dataclass(frozen=True)
class WorkingCopies:
    """The smaller copies phase 0 works on, made once per photo."""

    reduced: Pixels  # halved fast while at least twice SHARP_EDGE: where the subject's sharpness is judged
    tiny: Pixels  # STATS_EDGE px: global colour statistics
    grey_small: Pixels  # WORK_EDGE px grey: saliency, hashes, straightening
    small: Pixels  # the same in colour: straightening tells a horizon from a wire by it

    @classmethod
    def of(cls, image: Pixels) -> WorkingCopies:
        reduced = halve_to(image, SHARP_EDGE)
        small = shrink(reduced, WORK_EDGE)
        return cls(reduced, shrink(small, STATS_EDGE), cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), small)


def analyse(image: Pixels, faces: list[Face], copies: WorkingCopies | None = None) -> dict[str, Any]:
    """Everything phase 0 measures on one upright sRGB image; JSON-able."""
    copies = copies or WorkingCopies.of(image)
    reduced, tiny, grey_small = copies.reduced, copies.tiny, copies.grey_small
    judged = [f for f in faces if f.size >= MIN_FACE_PX]

    sharp = sharpness(image, reduced, grey_small, judged)
    scale = tiny.shape[1] / image.shape[1]
    expo = exposure(tiny, [_scale_box(f.box, scale) for f in judged])
    noise = noise_level(image)
    eyes = [eye_state(image, f) for f in judged]
    quality = combine(sharp, expo, noise, eyes)
    scene = scene_cues(tiny, cv2.cvtColor(tiny, cv2.COLOR_RGB2GRAY), faces, image.shape[1], image.shape[0])
    return {
        "quality": quality,
        "scene_type": scene.pop("type"),
        "scene": scene,
        "phash": phash(grey_small),
        "dhash": dhash(grey_small),
    }


def channel_max(image: Pixels) -> Pixels:
    """Per-pixel max over R, G, B (elementwise: much faster than ``max(axis=2)``)."""
    return np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])


def channel_min(image: Pixels) -> Pixels:
    return np.minimum(np.minimum(image[..., 0], image[..., 1]), image[..., 2])


# --- sharpness ---
def _gradient(grey: FloatArray) -> FloatArray:
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def edge_maps(grey: npt.NDArray[Any], reblur: float = _REBLUR_SIGMA) -> tuple[FloatArray, FloatArray]:
    """Gradient magnitude of ``grey`` and of ``grey`` blurred once more by ``reblur``."""
    g = grey.astype(np.float32)
    return _gradient(g), _gradient(cv2.GaussianBlur(g, (0, 0), reblur))


def blur_radius(
    grey: npt.NDArray[Any],
    mask: npt.NDArray[np.bool_] | None = None,
    *,
    min_edges: int = 40,
    floor: float = 8.0,
) -> float | None:
    """Blur radius (Gaussian σ, px) of the strongest edges in ``grey``; None with too few edges.

    An edge blurred by σ loses gradient by ``sqrt(σ² + r²) / σ`` when blurred again by ``r``;
    the median of that ratio over the top 5 % of edges gives σ, independent of contrast. Large
    blurs are measured again with a larger ``r``, where the ratio is still informative.
    """
    if min(grey.shape[:2]) < 12:
        return None
    inner = np.zeros(grey.shape[:2], dtype=bool)
    inner[3:-3, 3:-3] = True
    region = inner if mask is None else inner & mask
    m0, m1 = edge_maps(grey)
    sigma = blur_from_maps(m0, m1, region, min_edges=min_edges, floor=floor)
    if sigma is not None and sigma > 2.0:
        m0, m1 = edge_maps(grey, _WIDE_REBLUR_SIGMA)
        wide = blur_from_maps(m0, m1, region, reblur=_WIDE_REBLUR_SIGMA, min_edges=min_edges, floor=floor)
        sigma = max(sigma, wide) if wide is not None else sigma
    return sigma


def blur_from_maps(
    m0: FloatArray,
    m1: FloatArray,
    region: npt.NDArray[np.bool_] | None = None,
    *,
    reblur: float = _REBLUR_SIGMA,
    min_edges: int = 40,
    floor: float = 8.0,
) -> float | None:
    """The blur radius from precomputed :func:`edge_maps` (optionally only inside ``region``).

    Only gradients above ``floor`` (Sobel units: 8 ≈ one 8-bit level per pixel) count: on weaker
    ones the 8-bit rounding of the image itself inflates the ratio and fakes sharpness.
    """
    candidates = m1 > floor
    if region is not None:
        candidates &= region
    values = m1[candidates]
    if values.size < min_edges:
        return None
    k = int(0.95 * (values.size - 1))
    threshold = np.partition(values, k)[k]
    strongest = candidates & (m1 >= threshold)
    ratio = float(np.median(m0[strongest] / m1[strongest]))
    sigma = reblur / math.sqrt(max(ratio * ratio - 1.0, 1e-4))
    return float(min(max(sigma, 0.1), 50.0))


def sharpness_score(blur_px: float) -> float:
    """0–100 from the blur radius: ~97 at 0.8 px, 50 at 2 px, ~6 at 4 px (smooth, no plateau)."""
    return 100.0 / (1.0 + (blur_px / _BLUR_AT_HALF_SCORE) ** 4)


def sharpness(image: Pixels, reduced: Pixels, grey_small: Pixels, faces: list[Face]) -> dict[str, Any]:
    """Sharpness of the faces (if any can be judged), else of the salient region.

    ``reduced`` is the photo halved down towards :data:`SHARP_EDGE`; ``grey_small`` the
    1024 px grey copy the salient region is found on.
    """
    face_results = []
    for face in faces:
        crop, _ = _crop(image, face.box, pad=0.0)  # the face itself, not the background around it
        grey = cv2.cvtColor(shrink(crop, FACE_EDGE), cv2.COLOR_RGB2GRAY)
        blur = blur_radius(grey)
        if blur is not None:
            face_results.append((face.size, blur))
    if face_results:
        weights = np.array([s for s, _ in face_results])
        blurs = np.array([b for _, b in face_results])
        scores = np.array([sharpness_score(b) for b in blurs])
        return {
            "score": round(float(np.average(scores, weights=weights)), 1),
            "region": "faces",
            "blur_px": round(float(np.average(blurs, weights=weights)), 2),
            "faces": [round(float(s), 1) for s in scores],
        }
    box = salient_box(grey_small)
    rh, rw = reduced.shape[:2]
    tw, th = fit_size(rw, rh, SHARP_EDGE)
    # Only the salient region (plus a few pixels for the filters) is brought to the working size.
    sx, sy = rw / tw, rh / th
    x0, y0 = max(0, math.floor(box[0] * tw) - 4), max(0, math.floor(box[1] * th) - 4)
    x1, y1 = min(tw, math.ceil(box[2] * tw) + 4), min(th, math.ceil(box[3] * th) + 4)
    src = reduced[math.floor(y0 * sy) : math.ceil(y1 * sy), math.floor(x0 * sx) : math.ceil(x1 * sx)]
    grey_region = cv2.cvtColor(np.ascontiguousarray(src), cv2.COLOR_RGB2GRAY)
    if (tw, th) != (rw, rh):
        grey_region = cv2.resize(grey_region, (max(1, x1 - x0), max(1, y1 - y0)), interpolation=cv2.INTER_AREA)
    # The region alone must hold enough clear edges (≥ 3 levels/px), else the whole frame decides.
    blur = blur_radius(grey_region, min_edges=400, floor=24.0)
    region = "subject"
    if blur is None:
        grey = cv2.cvtColor(reduced, cv2.COLOR_RGB2GRAY)
        blur, region = blur_radius(shrink(grey, SHARP_EDGE)), "whole"
    if blur is None:
        return {"score": None, "region": None, "blur_px": None}
    return {
        "score": round(sharpness_score(blur), 1),
        "region": region,
        "blur_px": round(blur, 2),
        "box": [round(v, 3) for v in box] if region == "subject" else None,
    }


# --- exposure ---
def exposure(small: Pixels, face_boxes: list[tuple[float, float, float, float]]) -> dict[str, Any]:
    """Exposure from luminance (linear light): key in EV vs middle grey, clipping at both ends.

    Black bars (a letterboxed frame, a scan's border) are left out. Blown highlights are pixels
    white in all three channels, plus 30 % of those with one or two channels at the ceiling (a
    bright blue sky with only its blue channel at the top is not blown white); crushed shadows
    are black in all three.
    """
    top, bottom, left, right = _content_bounds(small)
    small = small[top:bottom, left:right]
    face_boxes = [(x0 - left, y0 - top, x1 - left, y1 - top) for x0, y0, x1, y1 in face_boxes]
    peak = channel_max(small)
    white = float((channel_min(small) >= 250).mean())
    # A channel at its ceiling (but not all three) loses colour detail: counted at 30 %.
    clipped_high = white + 0.3 * (float((peak >= 250).mean()) - white)
    crushed = float((peak <= 4).mean())
    linear = _SRGB_TO_LINEAR[small]
    luminance = linear @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    region = "frame"
    sample = luminance
    face_pixels = [
        luminance[round(y0 + 0.25 * (y1 - y0)) : round(y1 - 0.25 * (y1 - y0)) + 1,
                  round(x0 + 0.25 * (x1 - x0)) : round(x1 - 0.25 * (x1 - x0)) + 1].ravel()
        for x0, y0, x1, y1 in face_boxes
    ]  # fmt: skip
    face_pixels = [p for p in face_pixels if p.size >= 16]
    if face_pixels:
        # Skin is about a stop brighter than middle grey; judge faces against that.
        sample, region = np.concatenate(face_pixels) / 2.0, "faces"
    key = float(np.exp(np.mean(np.log(sample + 1e-3))))
    ev = math.log2(key / 0.18)
    # Headroom: how many stops the brightest 0.5 % of the frame sits below white. A photo that
    # never gets near white is under-exposed whatever its subject (the histogram does not reach
    # the right); low-key photos still have their highlights.
    bright = float(np.percentile(peak, 99.5))
    headroom = -math.log2(max(float(_SRGB_TO_LINEAR[round(bright)]), 1e-4))
    score = exposure_score(ev, clipped_high, crushed, headroom)
    verdict = "ok"
    if ev > 1.0 or clipped_high > 0.06:
        verdict = "over"
    elif ev < -2.3 or crushed > 0.25:
        verdict = "under"
    return {
        "score": round(score, 1),
        "ev": round(ev, 2),
        "region": region,
        "verdict": verdict,
        "headroom_ev": round(headroom, 2),
        "mean_level": round(float(small.mean()) / 255.0, 3),
        "clipped_highlights": round(clipped_high, 4),
        "clipped_shadows": round(crushed, 4),
    }


def exposure_score(ev: float, clipped_high: float, crushed: float, headroom: float) -> float:
    """0–100: a tolerant band around a typical key, then penalties; blown highlights cost most."""
    key_penalty = 14.0 * max(0.0, abs(ev + 0.6) - 1.2)
    high_penalty = 350.0 * max(0.0, clipped_high - 0.005)
    low_penalty = 120.0 * max(0.0, crushed - 0.03)
    headroom_penalty = 30.0 * max(0.0, headroom - 0.5)
    total = key_penalty + high_penalty + low_penalty + headroom_penalty
    return float(np.clip(100.0 - total, 0.0, 100.0))


def _content_bounds(image: Pixels) -> tuple[int, int, int, int]:
    """Rows/columns inside uniform black borders: (top, bottom, left, right), exclusive ends."""
    h, w = image.shape[:2]
    lit = channel_max(image) > 12
    rows = np.nonzero(lit.mean(axis=1) > 0.02)[0]
    cols = np.nonzero(lit.mean(axis=0) > 0.02)[0]
    if rows.size < h // 4 or cols.size < w // 4:  # mostly black: a night photo, not a border
        return 0, h, 0, w
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


# --- noise ---
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def noise_level(image: Pixels, tile: int = 48, grid: int = 8) -> dict[str, Any]:
    """Noise σ (8-bit levels, full resolution) from the flattest of ``grid``² tiles (Immerkær 1996)."""
    h, w = image.shape[:2]
    if min(h, w) < tile:
        return {"score": None, "sigma": None}
    ys = np.linspace(0, h - tile, grid).astype(int)
    xs = np.linspace(0, w - tile, grid).astype(int)
    sigmas = []
    for y in ys:
        for x in xs:
            patch = cv2.cvtColor(image[y : y + tile, x : x + tile], cv2.COLOR_RGB2GRAY).astype(np.float32)
            if patch.max() >= 250 or patch.min() <= 5:  # clipped: noise is hidden there
                continue
            response = cv2.filter2D(patch, -1, _NOISE_KERNEL)[1:-1, 1:-1]
            sigmas.append(math.sqrt(math.pi / 2) * float(np.abs(response).mean()) / 6.0)
    if len(sigmas) < 4:
        return {"score": None, "sigma": None}
    # Texture inflates the estimate; the flattest tiles show the noise alone.
    sigma = float(np.percentile(sigmas, 15))
    score = 100.0 * float(np.clip(1.0 - math.log2(max(sigma, 1.5) / 1.5) / 3.0, 0.0, 1.0))
    return {"score": round(score, 1), "sigma": round(sigma, 2)}


# --- eyes ---
def eye_state(image: Pixels, face: Face) -> dict[str, Any]:
    """Open/closed/unknown for a face's two eyes, from the dark iris blob at each eye landmark.

    An open eye shows a dark, roughly round iris as tall as ~40 % of the eye opening's width;
    a closed lid shows skin with a thin dark lash line. Needs landmarks and ≥ 30 px between
    the eyes; otherwise ``unknown``.
    """
    if len(face.landmarks) < 2:
        return {"state": "unknown", "reason": "no landmarks"}
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    distance = math.hypot(rx - lx, ry - ly)
    if distance < 30:
        return {"state": "unknown", "reason": "face too small"}
    angle = math.degrees(math.atan2(ry - ly, rx - lx))
    openness = [_eye_openness(image, (x, y), distance, angle) for x, y in ((lx, ly), (rx, ry))]
    valid = [o for o in openness if o is not None]
    if not valid:
        return {"state": "unknown", "reason": "eyes not measurable"}
    value = max(valid)  # one clearly open eye (a wink, a profile) is not a closed-eyes photo
    if value >= 0.25:
        state = "open"
    elif value <= 0.12 and distance >= 40:  # conservative: a false "closed" costs a good photo
        state = "closed"
    else:
        state = "unknown"
    return {"state": state, "openness": round(value, 3)}


def _eye_openness(image: Pixels, centre: tuple[float, float], distance: float, angle: float) -> float | None:
    """Height of the dark blob at the eye centre, as a fraction of the eye's width."""
    width, height = 0.42 * distance, 0.32 * distance
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    matrix[0, 2] += width / 2 - centre[0]
    matrix[1, 2] += height / 2 - centre[1]
    patch = cv2.warpAffine(image, matrix, (max(8, round(width)), max(6, round(height))), flags=cv2.INTER_AREA)
    patch = cv2.resize(patch, (42, 32), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lo, mid = float(np.percentile(grey, 8)), float(np.median(grey))
    if mid - lo < 12:  # no contrast: glasses glare, deep shadow, blur
        return None
    dark = grey <= lo + 0.45 * (mid - lo)
    band = dark[:, 14:28]  # the middle third of the eye's width, where the iris sits
    rows = np.nonzero(band.mean(axis=1) >= 0.25)[0]
    if rows.size == 0:
        return 0.0
    # The longest run of dark rows: the iris is one contiguous blob.
    runs = np.split(rows, np.nonzero(np.diff(rows) > 1)[0] + 1)
    longest = max(len(r) for r in runs)
    return float(longest / 32 * (height / width))


# --- overall score ---
def combine(
    sharp: dict[str, Any], expo: dict[str, Any], noise: dict[str, Any], eyes: list[dict[str, Any]]
) -> dict[str, Any]:
    parts = {"sharpness": sharp["score"], "exposure": expo["score"], "noise": noise["score"]}
    present = {k: v for k, v in parts.items() if v is not None}
    total_weight = sum(WEIGHTS[k] for k in present)
    score = sum(WEIGHTS[k] * v for k, v in present.items()) / total_weight if total_weight else 50.0
    closed = sum(1 for e in eyes if e["state"] == "closed")
    if closed:
        score -= CLOSED_EYES_PENALTY
    return {
        "score": int(np.clip(round(score), 0, 100)),
        "sharpness": parts["sharpness"],
        "exposure": parts["exposure"],
        "noise": parts["noise"],
        "eyes": {
            "open": sum(1 for e in eyes if e["state"] == "open"),
            "closed": closed,
            "unknown": sum(1 for e in eyes if e["state"] == "unknown"),
            "faces": eyes,
        },
        "details": {"sharpness": sharp, "exposure": expo, "noise": noise},
        "weights": WEIGHTS,
    }


# --- scene ---
def scene_cues(small: Pixels, grey: Pixels, faces: list[Face], width: int, height: int) -> dict[str, Any]:
    """A coarse scene label and the cues behind it (no learned classifier: explainable rules)."""
    sky = sky_fraction(small)
    prominent = [f for f in faces if (f.box[3] - f.box[1]) >= 0.06 * height]
    warm = _warmth(small)
    greenery = _greenery(small)
    brightness = float(grey.mean()) / 255.0
    cues: dict[str, Any] = {
        "faces": len(faces),
        "sky": round(sky, 3),
        "greenery": round(greenery, 3),
        "warmth": round(warm, 3),
        "brightness": round(brightness, 3),
    }
    if len(prominent) == 1:
        kind = "portrait"
    elif len(prominent) == 2:
        kind = "couple"
    elif len(prominent) >= 3:
        kind = "group"
    elif _is_detail(grey):
        kind = "detail"
    elif sky >= 0.12 and width >= height:
        kind = "landscape"
    elif sky >= 0.03 or greenery >= 0.15:
        kind = "outdoor"
    elif warm >= 0.09 or brightness < 0.3:
        kind = "indoor"  # tungsten light, or a dim interior
    else:
        kind = "other"
    cues["type"] = kind
    return cues


def sky_fraction(small: Pixels) -> float:
    """Fraction of the frame that is smooth blue/grey-white sky connected to the top edge."""
    h, w = small.shape[:2]
    if h < 8 or w < 8:
        return 0.0
    img = small.astype(np.int16)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    value = channel_max(small).astype(np.int16)
    spread = value - channel_min(small)
    blue = (b > r + 8) & (b >= g - 12) & (value > 90)
    overcast = (value > 175) & (spread < 40)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    texture = cv2.GaussianBlur(np.abs(cv2.Laplacian(grey, cv2.CV_16S)).astype(np.float32), (0, 0), 2)
    smooth = texture < 6
    mask = ((blue | overcast) & smooth).astype(np.uint8)
    count, labels = cv2.connectedComponents(mask)
    if count <= 1:
        return 0.0
    top_labels = np.unique(labels[0][labels[0] > 0])
    if top_labels.size == 0:
        return 0.0
    return float(np.isin(labels, top_labels).mean())


def _greenery(small: Pixels) -> float:
    """Fraction of the frame that is foliage green (green clearly above red and blue, not dark)."""
    img = small.astype(np.int16)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return float(((g > r + 6) & (g > b + 6) & (g > 35)).mean())


def _warmth(small: Pixels) -> float:
    """(R − B) / (R + B) of the mid-tones: > 0.15 is typical of tungsten indoor light."""
    peak = channel_max(small)
    sel = (peak > 40) & (peak < 240)
    if sel.sum() < 16:
        return 0.0
    r = float(small[..., 0][sel].mean())
    b = float(small[..., 2][sel].mean())
    return (r - b) / max(r + b, 1.0)


def _is_detail(grey: Pixels) -> bool:
    """Shallow depth of field: the sharp part is small and most textured areas are soft."""
    h, w = grey.shape
    if min(h, w) < 64:
        return False
    cells = 6
    m0, m1 = edge_maps(grey)
    blurs = []
    for i in range(cells):
        for j in range(cells):
            rows = slice(i * h // cells + 2, (i + 1) * h // cells - 2)
            cols = slice(j * w // cells + 2, (j + 1) * w // cells - 2)
            blurs.append(blur_from_maps(m0[rows, cols], m1[rows, cols]))
    measured = [b for b in blurs if b is not None]
    if not measured:
        return True  # nothing in focus anywhere with edges: a soft close-up
    best = min(measured)
    sharp_cells = sum(1 for b in measured if b <= best * 1.5 + 0.3)
    soft_cells = cells * cells - sharp_cells  # includes cells without any edge (bokeh)
    return best <= 1.6 and sharp_cells <= 0.2 * cells * cells and soft_cells >= 0.7 * cells * cells


# --- hashes ---
def phash(grey: Pixels) -> str:
    """64-bit DCT perceptual hash as 16 hex digits (low 8×8 frequencies vs their median)."""
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    dct = cv2.dct(small)[:8, :8]
    bits = (dct > np.median(dct.ravel()[1:])).ravel()
    return _bits_to_hex(bits)


def dhash(grey: Pixels) -> str:
    """64-bit gradient hash (9×8 thumbnail, each pixel brighter than its right neighbour)."""
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return _bits_to_hex((small[:, 1:] > small[:, :-1]).ravel())


def _bits_to_hex(bits: npt.NDArray[np.bool_]) -> str:
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


# --- helpers ---
def _scale_box(box: tuple[float, float, float, float], scale: float) -> tuple[float, float, float, float]:
    return (box[0] * scale, box[1] * scale, box[2] * scale, box[3] * scale)


def _crop(image: Pixels, box: tuple[float, float, float, float], pad: float) -> tuple[Pixels, tuple[int, int]]:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    px, py = pad * (x1 - x0), pad * (y1 - y0)
    left, top = max(0, int(x0 - px)), max(0, int(y0 - py))
    right, bottom = min(w, math.ceil(x1 + px)), min(h, math.ceil(y1 + py))
    return image[top:bottom, left:right], (left, top)
