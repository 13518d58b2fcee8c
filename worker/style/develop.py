"""Lightroom develop settings as a 3D LUT: a preset rendered into the colour cube phase 1 applies.

:func:`render_lut` evaluates :func:`develop` at every node of a 33³ grid of
sRGB colours; the result is a LUT in the layout of ``worker/models/lut3d.py``
(``3×D×D×D``, ``[c, b, g, r]``, values in [0, 1]). Each setting moves pixels
the way Lightroom documents it, approximately (Adobe does not publish its
formulas); the constants below say how much.

Order of operations
-------------------
1. **sRGB → linear light** (IEC 61966-2-1).
2. **White balance**: per-channel gains in linear light, normalised to keep
   luminance. ``IncrementalTemperature``/``IncrementalTint`` (a rendered
   photo's sliders) shift the white by up to ±90 mired and ±0.4 stop of green;
   an absolute ``Temperature``/``Tint`` (a raw preset's custom white balance)
   is read as a shift from daylight (5500 K, tint 0), since a rendered photo's
   own white balance is not known. Blackbody whites: Kim et al.'s cubic fit of
   the Planckian locus.
3. **Tone**, one master curve applied hue-preserving (the curve moves each
   colour's largest and smallest channel; the middle one keeps its place
   between them, as the DNG SDK's RGB tone does): exposure (×2^EV in linear
   light, with a soft shoulder from 0.5 linear so brightened highlights roll
   off instead of clipping), contrast (an S-curve pivoting on mid-grey, sRGB
   0.46), highlights and shadows (smooth bumps over the upper and lower
   tones), whites and blacks (ramps that move the ends of the range), the
   parametric curve (a bump per region, between the splits), the point curve.
   The curves work on sRGB-encoded values, as Lightroom's curve panel shows.
4. **Per-channel point curves** (red, green, blue), each on its own channel.
5. **Vibrance** (raises the chroma of dull colours more than saturated ones,
   and of skin hues less) and **saturation** (scales chroma around each
   colour's luma; a chroma that would leave the gamut is limited, keeping hue
   and luma).
6. **HSL** per hue: each colour weighs the eight hue centres (red 0°, orange
   30°, yellow 60°, green 120°, aqua 180°, blue 240°, purple 270°, magenta
   300°) with smooth cos² weights that sum to one; hue ±100 turns by ±30°,
   saturation −100 removes the chroma, luminance ±100 is ±1 stop, faded out
   for near-neutral colours. **Black & white** (``ConvertToGrayscale``)
   replaces this step: luminance, brightened or darkened per hue by the gray
   mix (±1 stop).
7. **Colour grading / split toning**: luminance-normalised tints in linear
   light, weighted by the tone of each colour: shadows and highlights are
   complementary smooth steps around a split point that ``balance`` moves
   (+100 gives the highlight tint more of the range), ``blending`` widens the
   overlap and the midtone band; the global tint applies to all.
8. **Clip and encode** to sRGB.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import torch

from worker.imaging.colour import linear_to_srgb, srgb_to_linear
from worker.models import lut3d
from worker.style.model import LutStyle
from worker.style.preset import LINEAR, Curve, PresetSettings

FloatArray = npt.NDArray[np.float64]

LUMA = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709, on linear light (luminance) or encoded values (luma)
MID_GREY = 0.4613  # sRGB-encoded 18 % grey
REFERENCE_K = 5500.0
INCREMENTAL_MIRED = 90.0  # IncrementalTemperature ±100 → ∓90 mired (warmer for +)
TINT_STOPS = 0.004  # green gain, stops per tint unit (+ is magenta)
SHOULDER = 0.5  # linear value where exposure's highlight roll-off begins
CONTRAST_STOPS = 0.7  # contrast ±100 → mid-grey slope 2^±0.7
HIGHLIGHTS = 0.10  # highest lift/drop of highlights/shadows ±100 (encoded units)
SHADOWS = 0.10
WHITES = 0.10  # how far whites ±100 move the white end
BLACKS = 0.08
HUE_DEGREES = 30.0  # HSL hue ±100
HSL_STOPS = 1.0  # HSL luminance ±100
GRAY_STOPS = 1.0  # gray mix ±100
GRADE_STRENGTH = 0.45  # colour grading saturation 100: the tint's log-gains scale
GRADE_TINT = 0.6  # the tint colour's own saturation (HSV) at grading saturation 100
GRADE_STOPS = 0.5  # colour grading luminance ±100
HUE_CENTRES = np.array([0.0, 30.0, 60.0, 120.0, 180.0, 240.0, 270.0, 300.0])
_CURVE_SAMPLES = 4097


# -- the pipeline --------------------------------------------------------------------------------
def develop(s: PresetSettings, rgb: npt.ArrayLike) -> FloatArray:
    """``N×3`` sRGB colours in [0, 1] through the settings, in the order of the module docstring."""
    enc = np.clip(np.asarray(rgb, dtype=np.float64).reshape(-1, 3), 0.0, 1.0)
    lin = srgb_to_linear(enc)
    gains = white_balance_gains(s)
    lin = lin * gains
    curve = master_curve(s, vmax=max(1.0, float(gains.max())))
    if curve is not None:
        lin = _rgb_tone(lin, curve)
    lin = np.clip(lin, 0.0, 1.0)
    enc = linear_to_srgb(lin)
    for c, points in enumerate((s.tone_curve_red, s.tone_curve_green, s.tone_curve_blue)):
        if points != LINEAR:
            enc[:, c] = point_curve(points, enc[:, c])
    enc = _vibrance_saturation(s, enc)
    enc = _grayscale(s, enc) if s.grayscale else _hsl(s, enc)
    enc = _grade(s, enc)
    out: FloatArray = np.clip(enc, 0.0, 1.0)
    return out


def render_lut(s: PresetSettings, size: int = 33) -> npt.NDArray[np.float32]:
    """The settings as a ``3×size×size×size`` LUT (``[c, b, g, r]``), values in [0, 1]."""
    grid = lut3d.identity_lut(size).numpy().astype(np.float64)  # [c, b, g, r]
    rows = grid.transpose(1, 2, 3, 0).reshape(-1, 3)  # (r, g, b) per row, red fastest
    out = develop(s, rows).reshape(size, size, size, 3).transpose(3, 0, 1, 2)
    return np.ascontiguousarray(out, dtype=np.float32)


def to_style(settings: PresetSettings, size: int = 33) -> LutStyle:
    """The preset as a style phase 1 applies: one ``size``³ LUT for every photo (no pairs, no encoder).

    A ``lut3d`` model file like a trained one (its global LUT on the full grid, no adaptive
    part, no monotonic projection: a preset's HSL may make a channel fall), with
    ``metadata.method = "preset"`` and what the preset used and ignored.
    """
    config = lut3d.LUT3DConfig(lut_size=size, global_grid=size, bases=0, exposure=False, monotonic=False)
    model = lut3d.build(config)
    with torch.no_grad():
        model.global_lut.copy_(torch.from_numpy(render_lut(settings, size)))
        model.adaptive.fill_(False)
    model.eval().requires_grad_(False)  # as a loaded model is
    metadata = {"method": "preset", "pairs_used": 0, "preset": settings.summary()}
    return LutStyle(model, metadata, name="preset")


# -- white balance -------------------------------------------------------------------------------
def white_balance_gains(s: PresetSettings) -> FloatArray:
    """Linear-light per-channel gains (luminance 1) for the preset's white balance; ones when it has none."""
    absolute = s.temperature is not None and s.white_balance.lower() not in ("as shot", "auto")
    tint = (s.tint or 0.0) if absolute else 0.0
    tint += s.incremental_tint
    if not absolute and s.incremental_temperature == 0.0 and tint == 0.0:
        return np.ones(3)
    kelvin = s.temperature if absolute and s.temperature is not None else REFERENCE_K
    mired = 1e6 / kelvin - INCREMENTAL_MIRED * s.incremental_temperature / 100.0
    kelvin = 1e6 / min(max(mired, 1e6 / 25000.0), 1e6 / 1667.0)
    # Setting the white to `kelvin` neutralises a light of that colour: the gains undo its white.
    gains = blackbody_rgb(REFERENCE_K) / blackbody_rgb(kelvin)
    gains[1] *= 2.0 ** (-TINT_STOPS * tint)
    normalised: FloatArray = gains / float(gains @ LUMA)
    return normalised


def blackbody_rgb(kelvin: float) -> FloatArray:
    """Linear sRGB of a blackbody's white (luminance 1), 1667–25000 K (Kim et al. 2002, Planckian locus fit)."""
    t = min(max(kelvin, 1667.0), 25000.0)
    if t <= 4000.0:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222.0:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000.0:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    xyz = np.array([x / y, 1.0, (1.0 - x - y) / y])
    rgb: FloatArray = _XYZ_TO_LINEAR_SRGB @ xyz
    return rgb


_XYZ_TO_LINEAR_SRGB = np.array(
    [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560], [0.0556434, -0.2040259, 1.0572252]]
)


# -- tone ----------------------------------------------------------------------------------------
def master_curve(s: PresetSettings, vmax: float = 1.0) -> tuple[FloatArray, FloatArray] | None:
    """The tone curve as a table (encoded input, encoded output) over linear inputs 0…``vmax``; None: identity."""
    tone_default = (
        s.exposure == 0.0
        and s.contrast == s.highlights == s.shadows == s.whites == s.blacks == 0.0
        and s.parametric_shadows == s.parametric_darks == s.parametric_lights == s.parametric_highlights == 0.0
        and s.tone_curve == LINEAR
    )
    if tone_default and vmax <= 1.0:
        return None
    u = np.linspace(0.0, float(linear_to_srgb(vmax)), _CURVE_SAMPLES)
    x = linear_to_srgb(np.clip(exposure(srgb_to_linear(u), s.exposure, vmax), 0.0, 1.0))
    return u, tone_curve(s, x)


def exposure(v: FloatArray, ev: float, vmax: float = 1.0) -> FloatArray:
    """×2^EV in linear light; when the brightest input (``vmax``) would pass white, a shoulder from
    :data:`SHOULDER` brings it to exactly white with slope 0 (identity below the shoulder)."""
    x = v * 2.0**ev
    top = vmax * 2.0**ev
    if top <= 1.0:
        return x
    p = (top - SHOULDER) / (1.0 - SHOULDER)  # the shoulder's slope at its start, relative: continuous there
    t = np.clip((x - SHOULDER) / (top - SHOULDER), 0.0, 1.0)
    rolled = SHOULDER + (1.0 - SHOULDER) * (1.0 - (1.0 - t) ** p)
    out: FloatArray = np.where(x <= SHOULDER, x, rolled)
    return out


def tone_curve(s: PresetSettings, x: FloatArray) -> FloatArray:
    """Contrast, highlights, shadows, whites, blacks, the parametric curve and the point curve, on encoded values."""
    y = contrast(x, s.contrast)
    y = np.clip(y + s.highlights / 100.0 * HIGHLIGHTS * _bump(y, 0.4, 1.0), 0.0, 1.0)
    y = np.clip(y + s.shadows / 100.0 * SHADOWS * _bump(y, 0.0, 0.6), 0.0, 1.0)
    y = np.clip(y + s.whites / 100.0 * WHITES * _smoothstep(0.45, 1.0, y), 0.0, 1.0)
    y = np.clip(y + s.blacks / 100.0 * BLACKS * (1.0 - _smoothstep(0.0, 0.5, y)), 0.0, 1.0)
    y = parametric(s, y)
    if s.tone_curve != LINEAR:
        y = point_curve(s.tone_curve, y)
    out: FloatArray = np.maximum.accumulate(np.clip(y, 0.0, 1.0))  # the curve never turns down
    return out


def contrast(x: FloatArray, amount: float) -> FloatArray:
    """An S-curve through black, mid-grey and white with slope 2^(amount/100·0.7) at mid-grey."""
    if amount == 0.0:
        return x
    k = 2.0 ** (amount / 100.0 * CONTRAST_STOPS)
    m = MID_GREY
    xc = np.clip(x, 0.0, 1.0)
    lo = m * (xc / m) ** k
    hi = 1.0 - (1.0 - m) * ((1.0 - xc) / (1.0 - m)) ** k
    out: FloatArray = np.where(xc < m, lo, hi)
    return out


def parametric(s: PresetSettings, x: FloatArray) -> FloatArray:
    """Lightroom's parametric curve: each region (split by the three splits) raised or lowered by a smooth bump."""
    amounts = (s.parametric_shadows, s.parametric_darks, s.parametric_lights, s.parametric_highlights)
    if not any(amounts):
        return x
    splits = sorted((s.parametric_shadow_split, s.parametric_midtone_split, s.parametric_highlight_split))
    edges = [0.0, *(v / 100.0 for v in splits), 1.0]
    centres = [(a + b) / 2.0 for a, b in itertools.pairwise(edges)]
    ends = [0.0, *centres, 1.0]
    y = x.copy()
    for k, amount in enumerate(amounts):
        if amount == 0.0:
            continue
        lo, mid, hi = ends[k], ends[k + 1], ends[k + 2]
        height = 0.5 * min(mid - lo, hi - mid) * amount / 100.0  # steep enough to move, never turning down alone
        rise = np.sin(0.5 * np.pi * np.clip((x - lo) / max(mid - lo, 1e-6), 0.0, 1.0)) ** 2
        fall = np.cos(0.5 * np.pi * np.clip((x - mid) / max(hi - mid, 1e-6), 0.0, 1.0)) ** 2
        y = y + height * np.where(x <= mid, rise, fall)
    out: FloatArray = np.clip(y, 0.0, 1.0)
    return out


def point_curve(points: Curve, x: FloatArray) -> FloatArray:
    """A 0–255 point curve on [0, 1] values: monotone cubic (Fritsch–Carlson) through the points, flat beyond."""
    xs = np.array([p[0] for p in points]) / 255.0
    ys = np.array([p[1] for p in points]) / 255.0
    out: FloatArray = monotone_cubic(xs, ys, np.clip(x, xs[0], xs[-1]))
    return out


def monotone_cubic(xs: FloatArray, ys: FloatArray, x: FloatArray) -> FloatArray:
    """Piecewise cubic Hermite through (xs, ys), with Fritsch–Carlson slopes: no overshoot between points."""
    h = np.diff(xs)
    d = np.diff(ys) / h
    m = np.empty_like(xs)
    m[0], m[-1] = d[0], d[-1]
    for k in range(1, len(xs) - 1):
        if d[k - 1] * d[k] <= 0.0:
            m[k] = 0.0
        else:
            w1, w2 = 2.0 * h[k] + h[k - 1], h[k] + 2.0 * h[k - 1]
            m[k] = (w1 + w2) / (w1 / d[k - 1] + w2 / d[k])
    i = np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(xs) - 2)
    t = (x - xs[i]) / h[i]
    t2, t3 = t * t, t * t * t
    out: FloatArray = (
        (2 * t3 - 3 * t2 + 1) * ys[i]
        + (t3 - 2 * t2 + t) * h[i] * m[i]
        + (-2 * t3 + 3 * t2) * ys[i + 1]
        + (t3 - t2) * h[i] * m[i + 1]
    )
    return out


def _rgb_tone(lin: FloatArray, curve: tuple[FloatArray, FloatArray]) -> FloatArray:
    """The curve on each colour's largest and smallest channel; the others keep their relative place (hue)."""
    u, y = curve

    def f(v: FloatArray) -> FloatArray:
        return srgb_to_linear(np.interp(linear_to_srgb(v), u, y))

    hi = lin.max(1, keepdims=True)
    lo = lin.min(1, keepdims=True)
    f_hi, f_lo = f(hi), f(lo)
    span = hi - lo
    safe = np.where(span > 1e-9, span, 1.0)
    out: FloatArray = np.where(span > 1e-9, f_lo + (f_hi - f_lo) * (lin - lo) / safe, f(lin))
    return out


def _bump(x: FloatArray, lo: float, hi: float) -> FloatArray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    out: FloatArray = np.sin(np.pi * t) ** 2
    return out


def _smoothstep(lo: float, hi: float, x: FloatArray) -> FloatArray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    out: FloatArray = t * t * (3.0 - 2.0 * t)
    return out


# -- colour --------------------------------------------------------------------------------------
def hue_saturation(enc: FloatArray) -> tuple[FloatArray, FloatArray]:
    """HSV hue (degrees) and saturation of encoded colours; hue 0 for greys."""
    r, g, b = enc[:, 0], enc[:, 1], enc[:, 2]
    hi = enc.max(1)
    chroma = hi - enc.min(1)
    safe = np.where(chroma > 0, chroma, 1.0)
    h = np.where(hi == r, ((g - b) / safe) % 6.0, np.where(hi == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    hue: FloatArray = np.where(chroma > 0, h * 60.0, 0.0)
    sat: FloatArray = np.where(hi > 0, chroma / np.where(hi > 0, hi, 1.0), 0.0)
    return hue, sat


def hsv_to_rgb(hue: FloatArray, sat: FloatArray, value: FloatArray) -> FloatArray:
    """HSV (hue in degrees) → RGB, vectorised."""
    h = (hue % 360.0) / 60.0
    c = value * sat
    x = c * (1.0 - np.abs(h % 2.0 - 1.0))
    zero = np.zeros_like(h)
    sector = np.floor(h).astype(int) % 6
    table = [(c, x, zero), (x, c, zero), (zero, c, x), (zero, x, c), (x, zero, c), (c, zero, x)]
    rgb = np.zeros((*h.shape, 3))
    for k, (r, g, b) in enumerate(table):
        sel = sector == k
        rgb[sel] = np.stack([r[sel], g[sel], b[sel]], -1)
    out: FloatArray = rgb + (value - c)[..., None]
    return out


def hue_weights(hue: FloatArray) -> FloatArray:
    """``N×8`` weights of the eight HSL hue centres: cos² between the two nearest, summing to one."""
    h = hue % 360.0
    centres = np.append(HUE_CENTRES, 360.0)
    k = np.clip(np.searchsorted(centres, h, side="right") - 1, 0, len(HUE_CENTRES) - 1)
    t = (h - centres[k]) / (centres[k + 1] - centres[k])
    w = np.zeros((h.shape[0], len(HUE_CENTRES)))
    rows = np.arange(h.shape[0])
    w[rows, k] = np.cos(0.5 * np.pi * t) ** 2
    w[rows, (k + 1) % len(HUE_CENTRES)] += np.sin(0.5 * np.pi * t) ** 2
    return w


def scale_chroma(enc: FloatArray, factor: FloatArray) -> FloatArray:
    """Each colour's chroma around its luma ×``factor``, limited to what stays inside [0, 1] (hue and luma kept)."""
    luma = enc @ LUMA
    diff = enc - luma[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(
            diff > 1e-12, (1.0 - luma[:, None]) / diff, np.where(diff < -1e-12, luma[:, None] / -diff, np.inf)
        )
    limit = np.maximum(room.min(1), 1.0)  # an in-gamut colour can always keep its own chroma
    f = np.minimum(np.maximum(factor, 0.0), limit)
    out: FloatArray = luma[:, None] + f[:, None] * diff
    return out


def _vibrance_saturation(s: PresetSettings, enc: FloatArray) -> FloatArray:
    if s.vibrance == 0.0 and s.saturation == 0.0:
        return enc
    hue, sat = hue_saturation(enc)
    vib = s.vibrance / 100.0 * (1.0 - sat)  # dull colours move most
    if s.vibrance > 0:
        skin = np.cos(np.clip((hue - 25.0) / 30.0, -1.0, 1.0) * 0.5 * np.pi) ** 2  # 0 beyond 25° ± 30°
        vib = vib * (1.0 - 0.6 * skin)  # orange-red skin tones are protected
    return scale_chroma(enc, (1.0 + vib) * (1.0 + s.saturation / 100.0))


def _hsl(s: PresetSettings, enc: FloatArray) -> FloatArray:
    if not (any(s.hue) or any(s.hsl_saturation) or any(s.hsl_luminance)):
        return enc
    hue, sat = hue_saturation(enc)
    w = hue_weights(hue)
    if any(s.hue):
        turned = hsv_to_rgb(hue + w @ np.array(s.hue) / 100.0 * HUE_DEGREES, sat, enc.max(1))
        enc = np.where((sat > 0)[:, None], turned, enc)
    if any(s.hsl_saturation):
        enc = scale_chroma(enc, 1.0 + w @ np.array(s.hsl_saturation) / 100.0)
    if any(s.hsl_luminance):
        stops = w @ np.array(s.hsl_luminance) / 100.0 * HSL_STOPS * _smoothstep(0.0, 0.3, sat)
        enc = linear_to_srgb(_fit_white(srgb_to_linear(enc) * np.exp2(stops)[:, None]))
    return enc


def _grayscale(s: PresetSettings, enc: FloatArray) -> FloatArray:
    lin = srgb_to_linear(enc)
    grey = lin @ LUMA
    if any(s.gray_mixer):
        hue, sat = hue_saturation(enc)
        grey = grey * np.exp2(hue_weights(hue) @ np.array(s.gray_mixer) / 100.0 * GRAY_STOPS * _smoothstep(0, 0.3, sat))
    out: FloatArray = np.repeat(linear_to_srgb(np.clip(grey, 0.0, 1.0))[:, None], 3, axis=1)
    return out


def _grade(s: PresetSettings, enc: FloatArray) -> FloatArray:
    tints = (
        (s.shadow_hue, s.shadow_saturation, s.shadow_luminance),
        (s.midtone_hue, s.midtone_saturation, s.midtone_luminance),
        (s.highlight_hue, s.highlight_saturation, s.highlight_luminance),
        (s.global_hue, s.global_saturation, s.global_luminance),
    )
    if not any(sat or lum for _, sat, lum in tints):
        return enc
    luma = enc @ LUMA
    shadows, midtones, highlights = tone_weights(luma, s.balance, s.blending)
    log_gain = np.zeros_like(enc)
    for weight, (hue, sat, lum) in zip((shadows, midtones, highlights, np.ones_like(luma)), tints, strict=True):
        if sat or lum:
            log_gain += weight[:, None] * (np.log(tint_gains(hue, sat)) + lum / 100.0 * GRADE_STOPS * math.log(2.0))
    lin = srgb_to_linear(enc) * np.exp(log_gain)
    out: FloatArray = linear_to_srgb(np.clip(lin, 0.0, 1.0))
    return out


def tone_weights(luma: FloatArray, balance: float, blending: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Weights of the shadows, midtones and highlights at each luma (encoded, 0–1).

    Shadows and highlights are complementary smooth steps centred on a split
    that ``balance`` (−100…+100) moves from 0.75 to 0.25; ``blending`` (0–100)
    widens the step and the midtone band.
    """
    split = 0.5 - 0.25 * balance / 100.0
    half = 0.1 + 0.4 * blending / 100.0
    highlights = _smoothstep(split - half, split + half, luma)
    midtones = np.clip(4.0 * luma * (1.0 - luma), 0.0, 1.0) ** (1.0 + (100.0 - blending) / 50.0)
    return 1.0 - highlights, midtones, highlights


def tint_gains(hue: float, saturation: float) -> FloatArray:
    """Linear-light gains (luminance 1) that tint toward ``hue`` (degrees), by ``saturation`` (0–100)."""
    if saturation <= 0:
        return np.ones(3)
    colour = srgb_to_linear(hsv_to_rgb(np.array([hue]), np.array([GRADE_TINT]), np.array([1.0]))[0])
    colour = colour / float(colour @ LUMA)
    gains = np.exp(GRADE_STRENGTH * saturation / 100.0 * np.log(colour))
    normalised: FloatArray = gains / float(gains @ LUMA)
    return normalised


def _fit_white(lin: FloatArray) -> FloatArray:
    """Colours brighter than white scaled down whole (hue kept), the rest as they are."""
    top = lin.max(1, keepdims=True)
    out: FloatArray = np.where(top > 1.0, lin / np.maximum(top, 1e-12), np.maximum(lin, 0.0))
    return out
