"""sRGB ⇄ linear light ⇄ CIELAB (D65) in numpy, for the style metrics, the histogram style,
the analysis phase's exposure and the ICC profiles the output writes.

Standard formulas (IEC 61966-2-1 sRGB transfer curve, CIE 1976 L*a*b*); float64
throughout. Out-of-gamut Lab maps to sRGB values outside [0, 1]; callers clip.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_XYZ_TO_SRGB = np.linalg.inv(_SRGB_TO_XYZ)
_D65 = np.array([0.95047, 1.0, 1.08883])
_EPS = 216.0 / 24389.0
_KAPPA = 24389.0 / 27.0


def srgb_to_linear(rgb: npt.ArrayLike) -> FloatArray:
    """sRGB-encoded values in [0, 1] → linear light (the IEC 61966-2-1 transfer curve), float64."""
    v = np.asarray(rgb, dtype=np.float64)
    out: FloatArray = np.where(v <= 0.04045, v / 12.92, ((np.maximum(v, 0.0) + 0.055) / 1.055) ** 2.4)
    return out


def linear_to_srgb(lin: npt.ArrayLike) -> FloatArray:
    """Linear light in [0, 1] → sRGB-encoded values, float64 (the inverse of :func:`srgb_to_linear`)."""
    v = np.asarray(lin, dtype=np.float64)
    out: FloatArray = np.where(v <= 0.0031308, v * 12.92, 1.055 * np.maximum(v, 0.0) ** (1.0 / 2.4) - 0.055)
    return out


def srgb_to_lab(image: npt.NDArray[np.uint8] | FloatArray) -> FloatArray:
    """sRGB (uint8, or float in [0, 1]) → CIELAB, float64 with the same leading shape."""
    arr = np.asarray(image)
    rgb = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    xyz = srgb_to_linear(rgb) @ _SRGB_TO_XYZ.T / _D65
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16.0) / 116.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def lab_to_srgb(lab: FloatArray) -> FloatArray:
    """CIELAB → sRGB float in [0, 1] (clipped)."""
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = fy - lab[..., 2] / 200.0
    f = np.stack([fx, fy, fz], -1)
    xyz = np.where(f**3 > _EPS, f**3, (116.0 * f - 16.0) / _KAPPA) * _D65
    lin = np.clip(xyz @ _XYZ_TO_SRGB.T, 0.0, 1.0)
    result: FloatArray = np.clip(linear_to_srgb(lin), 0.0, 1.0)
    return result
