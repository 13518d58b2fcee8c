"""Where a photo's subject is when no face says so: the salient region (phase 0 judges its
sharpness there; phase 4 keeps it in frame when it crops)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt


def salient_box(grey: npt.NDArray[Any]) -> tuple[float, float, float, float]:
    """The salient region as a box in 0–1 coordinates (spectral residual; Hou & Zhang, CVPR 2007)."""
    h, w = grey.shape
    if min(h, w) < 16:
        return (0.0, 0.0, 1.0, 1.0)
    side = 64
    tw, th = (side, max(8, round(side * h / w))) if w >= h else (max(8, round(side * w / h)), side)
    thumb = cv2.resize(grey, (tw, th), interpolation=cv2.INTER_AREA).astype(np.float32)
    spectrum = np.fft.fft2(thumb)
    log_amp = np.log(np.abs(spectrum) + 1e-6).astype(np.float32)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    saliency = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), 2.5)
    peak = float(saliency.max())
    if peak <= 0:
        return (0.0, 0.0, 1.0, 1.0)
    hot = (saliency >= 0.35 * peak).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(hot)
    if count <= 1:
        return (0.0, 0.0, 1.0, 1.0)
    # The region holding the most saliency.
    sums = [float(saliency[labels == i].sum()) for i in range(1, count)]
    best = 1 + int(np.argmax(sums))
    x, y, bw, bh = (int(v) for v in stats[best, :4])
    pad_x, pad_y = 0.1 * bw + 1, 0.1 * bh + 1
    box = (
        max(0.0, (x - pad_x) / tw),
        max(0.0, (y - pad_y) / th),
        min(1.0, (x + bw + pad_x) / tw),
        min(1.0, (y + bh + pad_y) / th),
    )
    if (box[2] - box[0]) * (box[3] - box[1]) < 0.04:  # too small to hold enough edges: widen
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        box = (max(0.0, cx - 0.15), max(0.0, cy - 0.15), min(1.0, cx + 0.15), min(1.0, cy + 0.15))
    return box
