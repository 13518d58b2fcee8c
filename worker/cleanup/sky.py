"""Where the sky is: bright-enough, smooth, not foliage, and reaching the top of the frame.

Power lines are only removed where they cross the sky, so this mask bounds everything the
wire detector may touch. It is computed on a *closed* copy of the image (a grey-level
closing wider than any wire erases thin dark lines first), so wires do not cut the sky
into pieces and the wire pixels themselves count as sky.

A pixel is a sky candidate when it is

* smooth: mean gradient magnitude in a small window below ``max_texture``,
* not dark: value ≥ ``min_value`` (a dusk sky is dark blue, so this is low),
* not foliage: not a saturated green.

Candidates are grouped into connected regions; a region is sky when it is large enough
and reaches the top band of the frame (the photo is upright: EXIF orientation applied).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from worker.cleanup.working import WorkingImage, value_channel


@dataclass(frozen=True)
class SkyParams:
    close_px: int = 13  # closing width (work px): wider than any wire at working resolution
    max_texture: float = 2.0  # mean |∇| (grey levels per px) of clear sky in a 7×7 window
    max_texture_loose: float = 4.0  # …of clouds, accepted when connected to clear sky and as bright
    loose_min_value: float = 0.8  # clouds: value ≥ this × the clear sky's 20th percentile
    cloud_max_sat: int = 60  # clouds are grey or white…
    max_hue_shift: int = 12  # …or the clear sky's own hue (OpenCV hue units, 0–179)
    cloud_min_value: float = 0.75  # holes in the sky at least this × its median value are clouds
    max_edge: float = 3.0  # |∇| above this is an edge the sky does not cross (a roof line, a rock)
    min_value: int = 35
    top_band: float = 0.12  # a sky region must reach this fraction of the height from the top
    min_area: float = 0.01  # of the image
    green_hue: tuple[int, int] = (35, 85)  # OpenCV hue range treated as foliage when saturated
    green_min_sat: int = 70


@dataclass(frozen=True)
class Sky:
    mask: npt.NDArray[np.bool_]  # working resolution
    closed: npt.NDArray[np.uint8]  # the value channel after the closing (wires erased)
    fraction: float  # of the image
    blue_fraction: float  # of the sky that is clearly blue (hue 90–135, saturation ≥ 40)

    @property
    def found(self) -> bool:
        return bool(self.fraction > 0)


def find_sky(work: WorkingImage, params: SkyParams | None = None, *, light_lines: bool = False) -> Sky:
    """The sky of ``work``; with ``light_lines``, thin *bright* lines (sunlit wires) are erased first too."""
    p = params or SkyParams()
    h, w = work.shape
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (p.close_px, p.close_px))
    rgb = work.rgb
    if light_lines:  # an opening as wide as the closing erases a light wire as the closing erases a dark one
        rgb = np.asarray(cv2.morphologyEx(rgb, cv2.MORPH_OPEN, kernel), dtype=np.uint8)
    closed_rgb = np.asarray(cv2.morphologyEx(rgb, cv2.MORPH_CLOSE, kernel), dtype=np.uint8)
    # …and the thin bright ringing that JPEG leaves beside a dark line (mostly in the chroma).
    closed_rgb = np.asarray(cv2.morphologyEx(closed_rgb, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)), dtype=np.uint8)
    closed = value_channel(closed_rgb)
    # Gradients of the closed image, in grey levels per pixel: texture from the value channel,
    # edges from the strongest colour channel (blue sky against red rock differs in hue, not value).
    smooth = cv2.GaussianBlur(closed_rgb, (3, 3), 0).astype(np.float32)
    grad_rgb = (np.abs(cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3))
                + np.abs(cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3))) * 0.125  # fmt: skip
    gr, gg, gb = cv2.split(grad_rgb)
    grad_v = cv2.max(cv2.max(gr, gg), gb)
    texture = cv2.blur(grad_v, (7, 7))
    hsv = np.asarray(cv2.cvtColor(closed_rgb, cv2.COLOR_RGB2HSV), dtype=np.uint8)
    hue, sat = hsv[..., 0].astype(np.int16), hsv[..., 1]
    green = (hue >= p.green_hue[0]) & (hue <= p.green_hue[1]) & (sat >= p.green_min_sat)
    edge = cv2.dilate((grad_v > p.max_edge).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    allowed = (closed >= p.min_value) & ~green & ~edge
    core = (texture < p.max_texture) & allowed
    core = cv2.morphologyEx(
        core.astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
    ).astype(bool)
    top_limit = max(1, int(p.top_band * h))
    min_area = p.min_area * h * w
    clear, colour = _top_components(core, top_limit=top_limit, min_area=min_area, hue=hue, sat=sat, value=closed, p=p)
    if clear.any() and not _looks_like_sky(clear, closed):
        clear = np.zeros_like(clear)
    if clear.any():
        # Hysteresis: textured but bright pixels (clouds) join when connected to the clear sky.
        ref = float(np.percentile(closed[::3, ::3][clear[::3, ::3]], 20))
        bright = colour & (closed >= p.loose_min_value * ref)
        # A white cloud's edge against blue sky is strong in the red channel, yet both sides are
        # sky: an edge stops the growth unless everything around it is sky-coloured and at least
        # as bright as the clear sky (a sunlit wall is rarely brighter than the sky above it).
        whiter = colour & (closed >= float(np.median(closed[::3, ::3][clear[::3, ::3]])))
        barrier = edge & cv2.dilate((~(whiter | clear)).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        loose = (texture < p.max_texture_loose) & (closed >= p.min_value) & ~green & ~barrier & bright
        n, labels = cv2.connectedComponents((loose | clear).astype(np.uint8), connectivity=4)
        keep = np.bincount(labels[clear], minlength=n) > 0
        keep[0] = False
        mask = keep[labels]
        mask = _fill_bright_holes(
            mask, closed, colour, p.cloud_min_value * float(np.median(closed[::3, ::3][mask[::3, ::3]]))
        )
    else:
        mask = clear
    area = int(mask.sum())
    blue = mask & (hue >= 90) & (hue <= 135) & (sat >= 40)
    return Sky(
        mask=mask,
        closed=closed,
        fraction=area / float(h * w),
        blue_fraction=float(blue.sum()) / area if area else 0.0,
    )


def _top_components(
    mask: npt.NDArray[np.bool_],
    *,
    top_limit: int,
    min_area: float,
    hue: npt.NDArray[np.int16],
    sat: npt.NDArray[np.uint8],
    value: npt.NDArray[np.uint8],
    p: SkyParams,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """The parts of ``mask`` that are the clear sky, and which pixels have the sky's colour.

    Candidates are connected parts of at least ``min_area`` px that reach row ``top_limit``.
    The one with the most pixels in that top band is the sky; another candidate joins it only
    when it has the same colour (a smooth red butte that reaches the top is not sky).
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    cand = (stats[:, cv2.CC_STAT_AREA] >= min_area) & (stats[:, cv2.CC_STAT_TOP] < top_limit)
    cand[0] = False
    if not cand.any():
        return np.zeros(mask.shape, bool), np.zeros(mask.shape, bool)
    in_band = np.bincount(labels[:top_limit].ravel(), minlength=n)
    primary = int(np.argmax(np.where(cand, in_band, -1)))
    sky = labels == primary
    colour = _sky_coloured(hue, sat, sky, p)
    ref_value = float(np.median(value[::3, ::3][sky[::3, ::3]]))
    flat = labels.ravel()
    area = np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
    similar = np.bincount(flat, weights=colour.ravel().astype(np.float64), minlength=n) / area >= 0.8
    mean_value = np.bincount(flat, weights=value.ravel().astype(np.float64), minlength=n) / area
    bright = np.abs(mean_value - ref_value) <= 0.3 * ref_value
    keep = cand & similar & bright
    keep[primary] = True
    return np.asarray(keep[labels], dtype=bool), colour


def _looks_like_sky(clear: npt.NDArray[np.bool_], value: npt.NDArray[np.uint8]) -> bool:
    """The clear sky sits in the upper half of the frame and is not much darker than the photo's median.

    Dark smooth things that reach the top of a photo (a shaded hedge above a tennis court, a
    ceiling in the dark) fail; a dusk sky, as dark as the rest of its photo, passes.
    """
    rows = np.nonzero(clear[::2, ::2])[0]
    centroid = 2.0 * float(rows.mean()) / clear.shape[0] if rows.size else 1.0
    sky_value = float(np.median(value[::3, ::3][clear[::3, ::3]]))
    return centroid < 0.5 and sky_value >= 0.8 * float(np.median(value[::3, ::3]))


def _sky_coloured(
    hue: npt.NDArray[np.int16], sat: npt.NDArray[np.uint8], clear: npt.NDArray[np.bool_], p: SkyParams
) -> npt.NDArray[np.bool_]:
    """Pixels that could be sky or cloud by colour: unsaturated, blue, or the clear sky's hue."""
    grey = sat < p.cloud_max_sat
    blue = (hue >= 90) & (hue <= 130)
    tinted = clear & (sat >= 40)
    if tinted.sum() < 0.2 * max(1, int(clear.sum())):
        return np.asarray(grey | blue, dtype=bool)
    sky_hue = int(np.median(hue[::3, ::3][tinted[::3, ::3]])) if tinted[::3, ::3].any() else int(np.median(hue[tinted]))
    diff = np.abs(hue - sky_hue)
    diff = np.minimum(diff, 180 - diff)
    return np.asarray(grey | blue | (diff <= p.max_hue_shift), dtype=bool)


def _fill_bright_holes(
    mask: npt.NDArray[np.bool_],
    value: npt.NDArray[np.uint8],
    colour: npt.NDArray[np.bool_],
    min_value: float,
) -> npt.NDArray[np.bool_]:
    """Add the holes of ``mask`` that are bright, sky-coloured and float in the sky (clouds, not a tower).

    A hole floats when it does not reach the bottom of the frame: whatever rises from the
    ground is connected to the ground, which does.
    """
    h = mask.shape[0]
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    area = np.maximum(stats[:, cv2.CC_STAT_AREA], 1)
    means = np.bincount(labels.ravel(), weights=value.ravel().astype(np.float64), minlength=n) / area
    coloured = np.bincount(labels.ravel(), weights=colour.ravel().astype(np.float64), minlength=n) / area
    floats = stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT] < h
    fill = floats & (means >= min_value) & (coloured >= 0.8)
    fill[0] = False  # label 0 is the sky itself
    return np.asarray(mask | fill[labels], dtype=bool)
