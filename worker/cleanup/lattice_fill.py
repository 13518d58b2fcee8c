"""Periodic textures filled from their own repeats: brick courses, block walls, tiles.

A patch copied into a hole keeps a texture's look, but it is one sample of the texture, not the
texture that was there, so it scores worse than a blur against the truth. A periodic texture
says what was there: the pixel at ``p`` looks like the pixels at ``p + i·a + j·b`` for the
texture's two period vectors ``a``, ``b``. So, tile by tile of the hole (≤ ``tile`` px, so that a
lattice bent by perspective is estimated locally):

0. **A gate**: the lattice must be seen in one window (2 tiles a side) around the hole's middle;
   a hole in leaves or sky pays for that one autocorrelation only.
1. **The lattice**, from the known pixels of a window around the tile: the normalised
   autocorrelation of their grey detail (grey minus its local mean; only pairs of known pixels
   count, through FFTs), its peaks away from zero, the two shortest strong, non-parallel ones as
   ``a`` and ``b`` (reduced, so that they are the lattice's shortest basis), each refined to a
   fraction of a pixel from its multiples (``k·a`` lies ``k`` times as far, so its error is ``k``
   times smaller).
2. **Candidates**: for each hole pixel, the ``candidates`` nearest lattice translates ``p + v``
   that land on known pixels (bilinear), each corrected for the light: ``I(p+v) − L(p+v) + L(p)``,
   with ``L`` the photo blurred over about one period (known pixels only, so it reaches into the
   hole smoothly).
3. **A robust mean**: their median, then a mean that weighs each candidate by its agreement with
   that median. Aligned copies of the same brick agree; the photo's noise and one brick's stain
   average out.
4. **Proof before use**: the ring of known pixels around the hole (``ring`` px) is hidden and
   predicted both ways, by the lattice (from the pixels farther out) and by the smoothest fill
   (:mod:`worker.cleanup.smooth_fill`); the lattice is used only if its error there is
   ≤ ``max_ratio`` × the smooth fill's, pooled, and no worse in any of 8 sectors around the hole.
   A hole at the edge of a brick wall, with sky or a door beyond, fails in the sectors facing
   them and goes to the patch fill.

Deterministic; numpy's FFT (no BLAS). Costs a few tens of ms per tile (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from worker.cleanup.smooth_fill import membrane
from worker.frame import Image

Floats = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]
Vec = tuple[float, float]  # (dy, dx)


@dataclass(frozen=True)
class LatticeParams:
    tile: int = 128  # px: the hole is filled in tiles of at most this side, each with its own lattice
    margin: float = 1.0  # the lattice is estimated on the tile's box grown by this × its longer side…
    margin_min: int = 48  # …and at least this many px
    min_period: float = 4.0  # px: shorter shifts are the autocorrelation's central lobe
    min_peak: float = 0.3  # a period vector's normalised autocorrelation must reach this…
    strong: float = 0.6  # …and this × the best peak's
    min_overlap: float = 0.25  # a shift is judged on ≥ this fraction of the known pixels' pairs
    grain: float = 1.0  # px: the lattice is looked for in the grey blurred this much
    min_drop: float = 0.05  # a peak stands this far above the autocorrelation 3 px away, every way
    min_detail: float = 2.0  # grey levels (RMS of the grey detail): below, the window is smooth
    min_angle: float = 30.0  # degrees between the two period vectors
    candidates: int = 8  # lattice translates averaged per pixel (nearest first)
    reach_periods: float = 4.0  # translates up to the hole's thickness + this many periods away
    ring: int = 6  # px of known pixels around the hole hidden to test the lattice
    max_ratio: float = 0.7  # the lattice's squared error on the ring ≤ this × the smooth fill's (pooled)…
    sector_ratio: float = 1.0  # …and ≤ this × the smooth fill's in every sector around the hole
    min_sector_px: int = 24  # a sector with fewer ring pixels is not judged


@dataclass(frozen=True)
class Lattice:
    a: Vec
    b: Vec
    peak: float  # the weaker of the two vectors' normalised autocorrelation

    @property
    def period(self) -> float:
        return max(math.hypot(*self.a), math.hypot(*self.b))


def lattice_fill(image: Image, mask: Mask, params: LatticeParams | None = None) -> tuple[Image, Mask]:
    """(``image`` with the hole filled wherever a lattice proved itself, the hole pixels left unfilled).

    Only masked pixels change. Tiles with no confident lattice are left as they were (and in the
    returned mask), for another fill.
    """
    p = params or LatticeParams()
    mask = np.asarray(mask, bool)
    out = image.copy()
    left = mask.copy()
    if not mask.any():
        return out, left
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if not _repeats_near(image, mask, ys, xs, p):
        return out, left
    for ty in range(int(ys.min()), int(ys.max()) + 1, p.tile):
        for tx in range(int(xs.min()), int(xs.max()) + 1, p.tile):
            here = mask[ty : ty + p.tile, tx : tx + p.tile]
            if not here.any():
                continue
            ly, lx = np.nonzero(here)
            by0, by1 = ty + int(ly.min()), ty + int(ly.max()) + 1
            bx0, bx1 = tx + int(lx.min()), tx + int(lx.max()) + 1
            margin = max(p.margin_min, math.ceil(p.margin * max(by1 - by0, bx1 - bx0)))
            y0, y1, x0, x1 = max(0, by0 - margin), min(h, by1 + margin), max(0, bx0 - margin), min(w, bx1 + margin)
            win = np.ascontiguousarray(image[y0:y1, x0:x1])
            hole = mask[y0:y1, x0:x1]  # every hole pixel in the window, this tile's or not, is unknown
            target = np.zeros_like(hole)
            target[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] = hole[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
            result = fill_window(win, hole, target, p)
            if result is None:
                continue
            values, done = result
            region = out[y0:y1, x0:x1]
            region[done] = values[done]
            left[y0:y1, x0:x1] &= ~done
    return out, left


def _repeats_near(
    image: Image, mask: Mask, ys: npt.NDArray[np.intp], xs: npt.NDArray[np.intp], p: LatticeParams
) -> bool:
    """Whether the texture repeats at all in one window (≤ 2 tiles a side) around the hole's middle:
    a cheap gate, so a hole in leaves or sky pays for one autocorrelation, not one per tile."""
    h, w = mask.shape
    half = p.tile
    cy, cx = int(np.median(ys)), int(np.median(xs))
    y0, y1 = max(0, cy - half), min(h, cy + half)
    x0, x1 = max(0, cx - half), min(w, cx + half)
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return estimate_lattice(grey, ~mask[y0:y1, x0:x1], p) is not None


def fill_window(image: Image, hole: Mask, target: Mask, p: LatticeParams) -> tuple[Image, Mask] | None:
    """The ``target`` pixels filled from ``image``'s lattice (and which were), or ``None`` if no lattice
    proves itself on the ring around them. ``hole``: every unknown pixel of the window."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    known = ~hole
    lattice = estimate_lattice(grey, known, p)
    if lattice is None:
        return None
    thickness = _thickness(target)
    offsets = _offsets(lattice, thickness + p.reach_periods * lattice.period, max(image.shape[:2]))
    if not offsets:
        return None
    sigma = max(2.0, lattice.period)
    img = image.astype(np.float32)
    # The test: hide a ring of known pixels around the target, predict it from farther out.
    ring_width = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * p.ring + 1, 2 * p.ring + 1))
    grown = cv2.dilate(target.astype(np.uint8), ring_width).astype(bool)
    ring = grown & known
    if ring.sum() < p.min_sector_px:
        return None
    hidden = hole | ring
    low_h = _low_pass(img, ~hidden, sigma)
    pred, ok = _predict(img, ~hidden, low_h, ring, offsets, p=p)
    smooth = membrane(img, hidden)
    ry, rx = np.nonzero(ring)
    if ok.mean() < 0.9:
        return None
    err_lat = ((pred - img[ry, rx]) ** 2).sum(axis=1)
    err_smooth = ((smooth[ry, rx] - img[ry, rx]) ** 2).sum(axis=1)
    err_lat = np.where(ok, err_lat, err_smooth)
    if err_lat.sum() > p.max_ratio * err_smooth.sum():
        return None
    cy, cx = np.mean(np.nonzero(target), axis=1)
    sector = (((np.arctan2(ry - cy, rx - cx) + np.pi) / (2 * np.pi) * 8).astype(np.int64)) % 8
    for s in range(8):
        sel = sector == s
        if sel.sum() >= p.min_sector_px and err_lat[sel].sum() > p.sector_ratio * err_smooth[sel].sum():
            return None
    # The fill itself, from every known pixel.
    low = _low_pass(img, known, sigma)
    values, ok = _predict(img, known, low, target, offsets, p=p)
    ty, tx = np.nonzero(target)
    out = image.copy()
    out[ty[ok], tx[ok]] = np.clip(np.round(values[ok]), 0, 255).astype(np.uint8)
    done = np.zeros_like(target)
    done[ty[ok], tx[ok]] = True
    return out, done


def estimate_lattice(grey: Floats, known: Mask, p: LatticeParams) -> Lattice | None:
    """The texture's two period vectors from the known pixels' autocorrelation, or ``None``."""
    h, w = grey.shape
    if known.sum() < 64:
        return None
    wk = known.astype(np.float32)
    # Band-pass: the grain finer than ~2 px (noise, the stone's own roughness) and the light's slow
    # changes out; then each part of the window brought to the same contrast, so that a bright
    # object beside the wall does not outweigh the wall.
    fine = cv2.GaussianBlur(grey, (0, 0), p.grain)
    mean = _low_pass(np.asarray(fine, np.float32)[..., None], known, max(4.0, min(h, w) / 8.0))[..., 0]
    detail = (fine - mean) * wk
    if float(np.sqrt((detail * detail).sum() / wk.sum())) < p.min_detail:
        return None  # nothing periodic to see: smooth
    energy = _low_pass((detail * detail)[..., None], known, max(4.0, min(h, w) / 16.0))[..., 0]
    detail = detail / np.sqrt(energy + p.min_detail**2) * wk
    fh, fw = 2 * h, 2 * w
    fd, fm, fe = (np.fft.rfft2(x, (fh, fw)) for x in (detail, wk, detail * detail))
    num = np.fft.fftshift(np.fft.irfft2(fd * np.conj(fd), (fh, fw)))
    pairs = np.fft.fftshift(np.fft.irfft2(fm * np.conj(fm), (fh, fw)))
    e1 = np.fft.fftshift(np.fft.irfft2(fe * np.conj(fm), (fh, fw)))  # Σ detail²(p), pairs (p, p+d) known
    flip_y, flip_x = (-np.arange(fh)) % fh, (-np.arange(fw)) % fw
    e2 = e1[flip_y][:, flip_x]  # Σ detail²(p+d): the same sum at −d
    ac = num / np.sqrt(np.maximum(e1 * e2, 1e-6))
    ac[pairs < p.min_overlap * float(wk.sum())] = 0.0
    cy, cx = h, w  # zero shift after fftshift
    dy, dx = np.ogrid[-cy : fh - cy, -cx : fw - cx]
    full = ac.astype(np.float32)
    # Peaks are local maxima of the whole autocorrelation (so not the central lobe's slope), away from zero.
    # and peaks in every direction (not a point of a ridge: a texture of parallel lines).
    top = full >= cv2.dilate(full, np.ones((5, 5), np.uint8))
    drop = np.full(full.shape, np.inf, np.float32)
    for ey, ex in ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)):
        drop = np.minimum(drop, full - np.roll(full, (3 * ey, 3 * ex), axis=(0, 1)))
    top &= drop >= p.min_drop
    full[np.hypot(dy, dx) < p.min_period] = 0.0
    acf = full.copy()
    acf[:cy, :] = 0.0  # symmetric: peaks are looked for in the half plane dy ≥ 0…
    acf[cy, :cx] = 0.0  # …and dx > 0 on dy = 0
    peaks = top & (acf >= p.min_peak)
    py, px = np.nonzero(peaks)
    if py.size < 2:
        return None
    values = acf[py, px]
    strong = values >= p.strong * float(values.max())
    vecs = [(float(py[i] - cy), float(px[i] - cx), float(values[i])) for i in np.nonzero(strong)[0]]
    vecs.sort(key=lambda v: math.hypot(v[0], v[1]))
    a = vecs[0]
    sin_min = math.sin(math.radians(p.min_angle))
    b = next((v for v in vecs[1:] if abs(_cross(a, v)) >= sin_min * _norm(a) * _norm(v)), None)
    if b is None:
        return None
    va, vb = _reduce((a[0], a[1]), (b[0], b[1]))
    va, vb = _refine(full, va, cy, cx), _refine(full, vb, cy, cx)
    return Lattice(va, vb, min(a[2], b[2]))


def _refine(ac: Floats, v: Vec, cy: int, cx: int) -> Vec:
    """``v`` to a fraction of a pixel: the peaks at its multiples, least squares through zero."""
    fh, fw = ac.shape
    sy = sx = kk = 0.0
    est = v
    first = 0.0
    for k in range(1, 6):
        iy, ix = round(cy + k * est[0]), round(cx + k * est[1])
        if not (3 <= iy < fh - 3 and 3 <= ix < fw - 3):
            break
        patch = ac[iy - 2 : iy + 3, ix - 2 : ix + 3]
        top = float(patch.max())
        if k == 1:
            first = top
        elif top <= 0.5 * first:
            break
        oy, ox = np.unravel_index(int(np.argmax(patch)), patch.shape)
        my, mx = iy + int(oy) - 2, ix + int(ox) - 2
        fy = my + _parabola(ac[my - 1, mx], ac[my, mx], ac[my + 1, mx]) - cy
        fx = mx + _parabola(ac[my, mx - 1], ac[my, mx], ac[my, mx + 1]) - cx
        sy, sx, kk = sy + k * fy, sx + k * fx, kk + k * k
        est = (sy / kk, sx / kk)
    return est


def _parabola(lo: float, mid: float, hi: float) -> float:
    den = lo - 2 * mid + hi
    return 0.0 if den >= 0 else float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5))


def _reduce(a: Vec, b: Vec) -> tuple[Vec, Vec]:
    """Lagrange–Gauss reduction: the lattice's shortest basis."""
    for _ in range(16):
        if _norm(b) < _norm(a):
            a, b = b, a
        mu = round((a[0] * b[0] + a[1] * b[1]) / max(a[0] ** 2 + a[1] ** 2, 1e-9))
        if mu == 0:
            break
        b = (b[0] - mu * a[0], b[1] - mu * a[1])
    return a, b


def _offsets(lattice: Lattice, reach: float, limit: int) -> list[Vec]:
    """Lattice translates i·a + j·b (not zero) within ``reach`` px, nearest first."""
    (ay, ax), (by, bx) = lattice.a, lattice.b
    step = min(_norm(lattice.a), _norm(lattice.b))
    if step < 1.0:
        return []
    reach = min(reach, float(limit))
    sin_ab = abs(_cross((ay, ax), (by, bx))) / (_norm(lattice.a) * _norm(lattice.b))
    n = min(math.ceil(reach / step / max(1e-3, sin_ab)), 40)
    out = []
    for i in range(-n, n + 1):
        for j in range(-n, n + 1):
            if i == 0 and j == 0:
                continue
            v = (i * ay + j * by, i * ax + j * bx)
            if _norm(v) <= reach:
                out.append(v)
    out.sort(key=_norm)
    return out


def _predict(
    img: Floats, known: Mask, low: Floats, where: Mask, offsets: list[Vec], *, p: LatticeParams
) -> tuple[Floats, npt.NDArray[np.bool_]]:
    """Per ``where`` pixel, the robust mean of its nearest lattice translates on known pixels; and
    whether it had at least two."""
    ys, xs = np.nonzero(where)
    n = ys.size
    k = p.candidates
    cand = np.zeros((n, k, 3), np.float32)
    count = np.zeros(n, np.int64)
    known_f = known.astype(np.float32)
    detail = img - low
    base = low[ys, xs]
    fy, fx = ys.astype(np.float32)[:, None], xs.astype(np.float32)[:, None]
    for dy, dx in offsets:
        need = count < k
        if not need.any():
            break
        my, mx = fy + dy, fx + dx
        ok = cv2.remap(known_f, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)[:, 0]
        take = need & (ok > 0.999)
        if not take.any():
            continue
        vals = cv2.remap(detail, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).reshape(n, 3)
        idx = np.nonzero(take)[0]
        cand[idx, count[idx]] = vals[idx]
        count[idx] += 1
    valid = np.arange(k)[None, :] < count[:, None]
    has = count >= 2
    # Median of the valid candidates (invalid ones sorted last), then a mean weighted by agreement with it.
    srt = np.sort(np.where(valid[..., None], cand, np.inf), axis=1)
    lo = np.maximum(count - 1, 0) // 2
    hi = count // 2 - (count == 0)
    med = 0.5 * (
        np.take_along_axis(srt, np.maximum(lo, 0)[:, None, None].repeat(3, 2), axis=1)[:, 0]
        + np.take_along_axis(srt, np.maximum(hi, 0)[:, None, None].repeat(3, 2), axis=1)[:, 0]
    )
    med = np.where(np.isfinite(med), med, 0.0)
    dev = np.sqrt(((cand - med[:, None, :]) ** 2).sum(axis=2))
    tau = max(1.0, float(np.median(dev[valid]))) if valid.any() else 1.0
    wgt = np.where(valid, 1.0 / (1.0 + (dev / tau) ** 2), 0.0).astype(np.float32)
    mean = (cand * wgt[..., None]).sum(axis=1) / np.maximum(wgt.sum(axis=1), 1e-6)[:, None]
    out = np.where(has[:, None], base + mean, base).astype(np.float32)
    return out, has


def _low_pass(img: Floats, known: Mask, sigma: float) -> Floats:
    """The image blurred over ``sigma`` from its known pixels only (normalised convolution), coarser
    where too few are near; defined everywhere."""
    wk = known.astype(np.float32)
    out = np.zeros(img.shape, np.float32)
    done = np.zeros(known.shape, bool)
    for s in (sigma, 3 * sigma, 9 * sigma):
        num, den = _blur(img * wk[..., None], s), _blur(wk[..., None], s)[..., 0]
        ok = (den > 0.05) & ~done
        out[ok] = num[ok] / den[ok, None]
        done |= ok
        if done.all():
            break
    if not done.all():
        out[~done] = img[known].mean(axis=0) if known.any() else 0.0
    return out


def _blur(x: Floats, sigma: float) -> Floats:
    """Gaussian blur (zero outside), on a downscaled copy when ``sigma`` is large (fast, smooth enough)."""
    h, w = x.shape[:2]
    f = max(1, int(sigma // 3))
    small = x if f == 1 else cv2.resize(x, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    s = sigma / f
    k = int(2 * math.ceil(3 * s) + 1)
    out = cv2.GaussianBlur(small, (k, k), s, borderType=cv2.BORDER_CONSTANT)
    if f > 1:
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(out, np.float32).reshape(x.shape)


def _thickness(mask: Mask) -> float:
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)
    return 2.0 * float(dist.max())


def _norm(v: tuple[float, ...]) -> float:
    return math.hypot(v[0], v[1])


def _cross(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return a[0] * b[1] - a[1] * b[0]
