"""Classical skin smoothing on aligned faces: no weights, CPU-friendly, licence-clean.

Works on the same FFHQ-aligned 512² crops as CodeFormer, so it shares the alignment
and the paste-back (``worker/faces/paste.py``). Per face:

1. **Where**: a soft skin mask — the face's own skin colour (robust Cr/Cb statistics
   from the cheeks and nose bridge, where the template guarantees skin), times
   "keep sharp" zones cut out around the eyes, brows, nostrils and lips (fixed in the
   aligned frame), times a brightness guard against dark hair and deep shadow and a
   texture guard against hair that shares the skin's colour (detail much denser than
   the face's own skin). The paste-back mask (the face oval) bounds it from outside.
2. **What**: an edge-preserving low-pass of luma (a self-guided filter, He et al.,
   "Guided Image Filtering", TPAMI 2013): blemishes and uneven texture, whose local
   variance is below ``eps``, are averaged; edges above it (eyelashes, hair strands,
   the jaw line) are kept. Chroma gets a wider, weaker pass that evens blotchy redness.
3. **How much**: ``strength`` (the profile's smoothing, 0–1, through a concave curve)
   scales the blend toward the filtered face; at most 85 %, so some natural texture
   always remains.

The guided filter preserves local means, and only blended fractions of it are used,
so the skin tone (the mean colour of the skin) does not move.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import numpy.typing as npt

from worker.faces.align import FACE_SIZE
from worker.frame import Image

NAME = "classic"
MAX_AMOUNT = 0.85

# Keep-sharp zones in the 512² aligned frame: (centre x, centre y, half-width, half-height).
_KEEP = (
    (193.0, 240.0, 46.0, 24.0),  # left eye
    (319.0, 240.0, 46.0, 24.0),  # right eye
    (190.0, 203.0, 58.0, 19.0),  # left brow
    (322.0, 203.0, 58.0, 19.0),  # right brow
    (257.0, 329.0, 36.0, 14.0),  # nostrils
    (257.0, 372.0, 70.0, 30.0),  # lips
)
# Where the template guarantees skin, to learn this face's skin colour: (x0, y0, x1, y1).
_SKIN_SAMPLES = ((168, 290, 218, 340), (296, 290, 346, 340), (240, 262, 274, 296))


@functools.lru_cache(maxsize=2)
def keep_sharp_mask(size: int = FACE_SIZE) -> npt.NDArray[np.float32]:
    """1 where smoothing must not act (eyes, brows, nostrils, lips), feathered; read-only."""
    k = size / FACE_SIZE
    mask = np.zeros((size, size), np.float32)
    for cx, cy, ax, ay in _KEEP:
        cv2.ellipse(mask, (round(cx * k), round(cy * k)), (round(ax * k), round(ay * k)), 0, 0, 360, 1.0, -1)
    grown = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    mask = np.asarray(cv2.GaussianBlur(grown, (0, 0), 4.0 * k), dtype=np.float32)
    mask.setflags(write=False)
    return mask


def skin_mask(ycrcb: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Soft skin likelihood in [0, 1] over an aligned crop in YCrCb (float32, 0–255)."""
    size = ycrcb.shape[0]
    k = size / FACE_SIZE
    boxes = [[round(v * k) for v in box] for box in _SKIN_SAMPLES]
    samples = np.concatenate([ycrcb[y0:y1, x0:x1].reshape(-1, 3) for x0, y0, x1, y1 in boxes])
    median = np.median(samples, axis=0)
    spread = 1.4826 * np.median(np.abs(samples - median), axis=0)  # MAD → σ
    # Generous: freckles, spots and redness must stay inside (they are what gets evened out).
    sigma_cr, sigma_cb = (max(7.0, 3.0 * float(s)) for s in spread[1:])
    d2 = ((ycrcb[..., 1] - median[1]) / sigma_cr) ** 2 + ((ycrcb[..., 2] - median[2]) / sigma_cb) ** 2
    colour = np.exp(-0.5 * d2)
    # Hair, brows and deep shadow are much darker than lit skin.
    bright = np.clip((ycrcb[..., 0] - 0.35 * median[0]) / (0.25 * median[0] + 1e-3), 0.0, 1.0)
    texture = _texture_guard(np.ascontiguousarray(ycrcb[..., 0]), boxes)
    mask = (colour * bright * texture).astype(np.float32)
    # Close pinholes (a dark pore, a spot) so the mask follows regions, not pixels.
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    mask = cv2.GaussianBlur(mask, (0, 0), 2.0 * k)
    return mask * (1.0 - keep_sharp_mask(size))


def _texture_guard(luma: npt.NDArray[np.float32], boxes: list[list[int]]) -> npt.NDArray[np.float32]:
    """1 on skin-like texture, falling to 0 where detail is much denser than this face's skin.

    Blond or grey hair can share the skin's colour; what sets it apart is dense, strong
    detail. Gradient energy averaged over ~3 % of the face, relative to its median on
    the sample patches: up to 2.5× is skin (pores, freckles), from 6× on it is hair,
    lashes or fabric and is left alone.
    """
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1)
    side = max(3, round(15 * luma.shape[0] / FACE_SIZE)) | 1
    density = cv2.boxFilter(gx * gx + gy * gy, -1, (side, side), borderType=cv2.BORDER_REFLECT)
    reference = float(np.median(np.concatenate([density[y0:y1, x0:x1].ravel() for x0, y0, x1, y1 in boxes])))
    ratio = density / max(reference, 1.0)
    return np.asarray(np.clip((6.0 - ratio) / 3.5, 0.0, 1.0), dtype=np.float32)


def _guided_self(p: npt.NDArray[np.float32], radius: int, eps: float) -> npt.NDArray[np.float32]:
    """Self-guided filter (guide = input): edge-preserving local mean."""
    ksize = (2 * radius + 1, 2 * radius + 1)
    mean = cv2.boxFilter(p, -1, ksize, borderType=cv2.BORDER_REFLECT)
    var = cv2.boxFilter(p * p, -1, ksize, borderType=cv2.BORDER_REFLECT) - mean * mean
    a = var / (var + eps)
    b = mean - a * mean
    return cv2.boxFilter(a, -1, ksize, borderType=cv2.BORDER_REFLECT) * p + cv2.boxFilter(
        b, -1, ksize, borderType=cv2.BORDER_REFLECT
    )


# RGB ↔ YCrCb (ITU-R BT.601, as OpenCV), on float values 0–255.
_TO_YCRCB = np.array([[0.299, 0.587, 0.114], [0.5, -0.418688, -0.081312], [-0.168736, -0.331264, 0.5]], np.float32)
_TO_RGB = np.linalg.inv(_TO_YCRCB).astype(np.float32)
_CHROMA_OFFSET = np.array([0.0, 128.0, 128.0], np.float32)


def smooth_face(crop: Image, strength: float) -> Image:
    """The aligned crop with its skin smoothed by ``strength`` (0 = unchanged, 1 = strongest).

    Pixels outside the skin mask come back bit-identical: the change is computed in
    YCrCb and converted back as a difference, never as a colour-space round trip.
    """
    # A concave response: the profile's "light" (0.25) already evens skin visibly (about
    # 2–3 levels on the strongest 5 % of a face), "heavy" (0.8) stays short of plastic.
    effect = float(np.clip(strength, 0.0, 1.0)) ** 0.6
    amount = MAX_AMOUNT * effect
    if amount <= 0.0:
        return crop.copy()
    size = crop.shape[0]
    k = size / FACE_SIZE
    rgb = crop.astype(np.float32)
    ycrcb = rgb @ _TO_YCRCB.T + _CHROMA_OFFSET
    weight = skin_mask(ycrcb) * amount
    change = np.empty_like(ycrcb)
    luma = np.ascontiguousarray(ycrcb[..., 0])
    smooth_luma = _guided_self(luma, max(2, round(7 * k)), eps=(6.0 + 14.0 * effect) ** 2)
    change[..., 0] = weight * (smooth_luma - luma)
    for c in (1, 2):
        chroma = np.ascontiguousarray(ycrcb[..., c])
        change[..., c] = 0.5 * weight * (_guided_self(chroma, max(3, round(12 * k)), eps=4.0**2) - chroma)
    return np.clip(np.rint(rgb + change @ _TO_RGB.T), 0, 255).astype(np.uint8)


class ClassicRestorer:
    """The licence-clean :class:`~worker.models.protocols.FaceRestorer`: skin smoothing, no weights."""

    name = NAME

    def restore(self, faces: npt.NDArray[np.uint8], fidelity: float, strength: float = 0.25) -> npt.NDArray[np.uint8]:
        """Smooth each aligned crop by ``strength``; ``fidelity`` (a CodeFormer notion) is not used."""
        return np.stack([smooth_face(face, strength) for face in faces]) if len(faces) else faces.copy()
