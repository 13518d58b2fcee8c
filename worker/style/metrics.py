"""How close an edit is to the photographer's: PSNR (dB) and CIEDE2000 colour difference.

Both compare two ``H×W×3`` uint8 sRGB images of the same size. PSNR is over
all pixels and channels with a peak of 255. ΔE2000 (Sharma, Wu, Dalal, "The
CIEDE2000 color-difference formula", Color Res. Appl. 2005) is the mean over
pixels, in CIELAB under D65; about 1 is a just-noticeable difference, above 5 a
clearly different colour.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from worker.imaging.colour import FloatArray, srgb_to_lab


def psnr(output: npt.NDArray[np.uint8], target: npt.NDArray[np.uint8]) -> float:
    """Peak signal-to-noise ratio in dB (100 for identical images)."""
    if output.shape != target.shape:
        raise ValueError(f"images differ in size: {output.shape} vs {target.shape}")
    mse = float(np.mean((output.astype(np.float64) - target.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def delta_e2000_lab(lab1: FloatArray, lab2: FloatArray) -> FloatArray:
    """CIEDE2000 between two arrays of CIELAB colours (``(..., 3)``), per colour."""
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0
    c7 = c_bar**7
    g = 0.5 * (1.0 - np.sqrt(c7 / (c7 + 25.0**7)))
    a1p, a2p = a1 * (1.0 + g), a2 * (1.0 + g)
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0

    dL = L2 - L1
    dC = c2p - c1p
    zero = (c1p * c2p) == 0
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(zero, 0.0, dh)
    dH = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2.0)

    L_bar = (L1 + L2) / 2.0
    c_bar_p = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_bar = np.where(
        zero,
        h_sum,
        np.where(
            np.abs(h1p - h2p) <= 180.0,
            h_sum / 2.0,
            np.where(h_sum < 360.0, h_sum + 360.0, h_sum - 360.0) / 2.0,
        ),
    )
    t = (
        1.0
        - 0.17 * np.cos(np.radians(h_bar - 30.0))
        + 0.24 * np.cos(np.radians(2.0 * h_bar))
        + 0.32 * np.cos(np.radians(3.0 * h_bar + 6.0))
        - 0.20 * np.cos(np.radians(4.0 * h_bar - 63.0))
    )
    d_theta = 30.0 * np.exp(-(((h_bar - 275.0) / 25.0) ** 2))
    c7p = c_bar_p**7
    r_c = 2.0 * np.sqrt(c7p / (c7p + 25.0**7))
    l50 = (L_bar - 50.0) ** 2
    s_l = 1.0 + 0.015 * l50 / np.sqrt(20.0 + l50)
    s_c = 1.0 + 0.045 * c_bar_p
    s_h = 1.0 + 0.015 * c_bar_p * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c
    result: FloatArray = np.sqrt((dL / s_l) ** 2 + (dC / s_c) ** 2 + (dH / s_h) ** 2 + r_t * (dC / s_c) * (dH / s_h))
    return result


def delta_e2000(output: npt.NDArray[np.uint8], target: npt.NDArray[np.uint8], max_pixels: int = 1 << 20) -> float:
    """Mean CIEDE2000 between two uint8 sRGB images (on a regular subsample above ``max_pixels``)."""
    if output.shape != target.shape:
        raise ValueError(f"images differ in size: {output.shape} vs {target.shape}")
    a = output.reshape(-1, 3)
    b = target.reshape(-1, 3)
    step = max(1, a.shape[0] // max_pixels)
    return float(delta_e2000_lab(srgb_to_lab(a[::step]), srgb_to_lab(b[::step])).mean())
