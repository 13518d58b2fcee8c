"""Patch-based inpainting: fills a hole with the photo's own patches, continuing its lines and texture.

Telea and Navier–Stokes propagate colours inward, so whatever crosses the hole — a ceiling grid's
line, a brick course, leaves — ends in a smear. Here, on the part of the crop within reach of the
hole (its box grown by 1.5× its thickness, ≥ 24 px; a long thin hole tile by tile, 4× its
thickness a tile, so the work follows the hole's area):

1. **Lines first** (:mod:`worker.cleanup.bridge`): every straight line or edge seen entering the
   hole *and* leaving it on the other side, the same, is drawn through it.
2. **Then patches**, the way Wexler, Shechtman & Irani (2007) complete images, with Barnes et al.'s
   PatchMatch (2009) to find the patches: a pyramid of halvings until the hole is ≤ 21 px thick,
   where it starts as a Telea fill; at each level, coarse to fine, a few rounds of *match* — every
   7×7 patch that overlaps the hole to its most similar patch lying wholly in the known part,
   compared on their lowest 2-D DCT frequencies (21 luminance + 3 per chroma channel, one
   ``filter2D`` each), found by PatchMatch's propagation and shrinking random search for all
   targets at once, a shift unlike the neighbours' paying a price (so matches form coherent
   pieces) — and *vote*: each hole pixel becomes the mean of what the overlapping matches put
   there, weighted by match quality and by closeness to the known part. The matches, ×2, start
   the next level; at full resolution the last vote copies the best match's pixel instead of
   averaging, so the texture stays as sharp as the photo. The drawn lines are context, never sources.

Deterministic (a seeded generator); only the masked pixels change. No BLAS or LAPACK call (their
threads contend on a shared CPU). Costs ~0.3–1 s per 2–8 k px hole on one core (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from worker.cleanup.bridge import BridgeParams, bridge_lines
from worker.frame import Image

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
BOUNDARY_GAMMA = 1.3  # a vote counts γ^-d, d = its patch's distance (px) into the hole (Wexler et al.)
DCT_LUMA = 21  # patches are compared on their 21 lowest luminance frequencies (+ 3 per chroma channel)


@dataclass(frozen=True)
class PatchParams:
    patch: int = 7  # odd: side of the patches compared and copied
    em_rounds: int = 3  # match + vote rounds per level
    pm_rounds: int = 2  # PatchMatch sweeps per match
    coarse_rounds: int = 5  # match + vote rounds at the coarsest level
    thin_rounds: int = 2  # match + vote rounds (one sweep each) for a hole thin enough for one level
    big_hole_px: int = 12_000  # a finer level whose hole is larger gets one cheap round (its matches are upsampled)
    coarsest_thickness: float = 21.0  # px: the pyramid stops once the hole is this thin
    context: float = 1.5  # each fill sees the hole's pixels with this × the hole's thickness around them…
    context_min: int = 24  # …and at least this many px
    tile: float = 4.0  # a hole is filled in tiles of this × its thickness…
    tile_min: int = 96  # …and at least this many px (a sign is one tile)
    coherence: float = 0.25  # price of a shift unlike the neighbours', × the median patch distance
    seed: int = 0
    sharp: bool = True  # the last vote copies the best match's pixel (else: the weighted mean of all)
    bridge: BridgeParams = field(default_factory=BridgeParams)


def hole_thickness(mask: npt.NDArray[np.bool_]) -> float:
    """Twice the largest distance from a masked pixel to the nearest unmasked one (px)."""
    if not mask.any():
        return 0.0
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)
    return 2.0 * float(dist.max())


def patch_fill(image: Image, mask: npt.NDArray[np.bool_], params: PatchParams | None = None) -> Image:
    """``image`` with the ``mask`` pixels filled from patches of the rest of it (others unchanged).

    A long thin hole (a wire across a crop) is filled tile by tile, each with its own context, so
    the work follows the hole's area, not its bounding box's.
    """
    p = params or PatchParams()
    mask = np.asarray(mask, bool)
    out = image.copy()
    if not mask.any():
        return out
    thickness = hole_thickness(mask)
    margin = max(p.context_min, math.ceil(p.context * thickness))
    tile = max(p.tile_min, math.ceil(p.tile * thickness))
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    pending = mask.copy()
    for ty in range(int(ys.min()), int(ys.max()) + 1, tile):
        for tx in range(int(xs.min()), int(xs.max()) + 1, tile):
            here = pending[ty : ty + tile, tx : tx + tile]
            if not here.any():
                continue
            # The tile's hole pixels with ``margin`` of context; hole pixels of later tiles in that
            # context are filled too (never used as context) but only this tile's are kept.
            ly, lx = np.nonzero(here)
            y0, y1 = max(0, ty + int(ly.min()) - margin), min(h, ty + int(ly.max()) + margin + 1)
            x0, x1 = max(0, tx + int(lx.min()) - margin), min(w, tx + int(lx.max()) + margin + 1)
            filled = _complete(np.ascontiguousarray(out[y0:y1, x0:x1]), pending[y0:y1, x0:x1], p)
            keep = np.zeros((y1 - y0, x1 - x0), bool)
            keep[ty + ly - y0, tx + lx - x0] = True
            out[y0:y1, x0:x1][keep] = filled[keep]
            here[:] = False
    return out


def _complete(image: Image, mask: npt.NDArray[np.bool_], p: PatchParams) -> Image:
    bridged, drawn, _ = bridge_lines(image, mask, p.bridge)
    start = np.clip(np.round(bridged), 0, 255).astype(np.uint8)
    fill = mask & ~drawn
    out = image.copy()
    levels = _pyramid(start, fill, mask, p)
    if not fill.any() or not all(_has_sources(m, p.patch) for _, _, m in levels):
        # Everything bridged, or no whole patch of known pixels to copy (a hole filling its crop): Telea.
        out[mask] = cv2.inpaint(start, fill.astype(np.uint8), 3, cv2.INPAINT_TELEA)[mask]
        return out
    rng = np.random.default_rng(p.seed)
    coarse_img, coarse_fill, _ = levels[-1]
    est = cv2.inpaint(coarse_img, coarse_fill.astype(np.uint8), 3, cv2.INPAINT_TELEA).astype(np.float32)
    offsets: npt.NDArray[np.int32] | None = None
    for depth in range(len(levels) - 1, -1, -1):
        img, level_fill, hole = levels[depth]
        if depth != len(levels) - 1:
            up = cv2.resize(est, (level_fill.shape[1], level_fill.shape[0]), interpolation=cv2.INTER_LINEAR)
            est = img.astype(np.float32)
            est[level_fill] = up[level_fill]
        level = _Level(est, level_fill, hole, p.patch)
        sy, sx = level.init(offsets, rng)
        if len(levels) == 1:  # a thin hole (a wire): little to decide, keep it cheap
            rounds, sweeps = p.thin_rounds, 1
        elif depth == len(levels) - 1:
            rounds, sweeps = p.coarse_rounds, p.pm_rounds
        elif int(level_fill.sum()) > p.big_hole_px:
            rounds, sweeps = 1, 1
        else:
            rounds, sweeps = p.em_rounds, p.pm_rounds
        for k in range(rounds):
            level.refresh()
            dist = level.distance(sy, sx)
            finite = dist[np.isfinite(dist)]
            level.coherence = p.coherence * float(np.median(finite)) if finite.size else 0.0
            for _ in range(sweeps):
                sy, sx, dist = level.patchmatch(sy, sx, dist, rng)
            level.vote(sy, sx, dist, best_only=p.sharp and depth == 0 and k == rounds - 1)
        est = level.est
        offsets = level.offset_field(sy, sx)
    final = np.where(fill[..., None], est, bridged)
    out[mask] = np.clip(np.round(final[mask]), 0, 255).astype(np.uint8)
    return out


def _has_sources(hole: npt.NDArray[np.bool_], patch: int) -> bool:
    """Whether a whole patch of known pixels lies inside the crop."""
    known = (~hole).astype(np.uint8)
    return bool(
        cv2.erode(known, np.ones((patch, patch), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0).any()
    )


def _pyramid(
    image: Image, fill: npt.NDArray[np.bool_], hole: npt.NDArray[np.bool_], p: PatchParams
) -> list[tuple[Image, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]]:
    """Halvings of (image, pixels to fill, the whole hole: never a source) until the hole is thin."""
    levels = [(image, fill, hole)]
    while True:
        img, f, m = levels[-1]
        h, w = m.shape
        if hole_thickness(m) <= p.coarsest_thickness or min(h, w) // 2 < 3 * p.patch:
            return levels
        size = ((w + 1) // 2, (h + 1) // 2)
        small = np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        small_fill = cv2.resize(f.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0  # any coverage
        small_hole = cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
        if small_hole.all():
            return levels
        levels.append((small, small_fill, small_hole))


class _Level:
    """One pyramid level: the current estimate, its targets (patches touching the hole), its sources."""

    def __init__(self, est: Floats, mask: npt.NDArray[np.bool_], hole: npt.NDArray[np.bool_], patch: int) -> None:
        self.est = est
        self.mask = mask
        self.r = r = patch // 2
        self.h, self.w = h, w = mask.shape
        kernel = np.ones((patch, patch), np.uint8)
        inside = np.zeros((h, w), bool)
        inside[r : h - r, r : w - r] = True  # centres whose patch lies inside the crop
        near = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & inside
        self.ty, self.tx = (a.astype(np.int64) for a in np.nonzero(near))
        known = (~hole).astype(np.uint8)  # bridged lines are context, never a source
        self.source = cv2.erode(known, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool) & inside
        self.src_y, self.src_x = (a.astype(np.int64) for a in np.nonzero(self.source))
        self.index = np.full((h, w), -1, np.int64)
        self.index[self.ty, self.tx] = np.arange(self.ty.size)
        dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
        self.rel = (dy * w + dx).ravel().astype(np.int64)
        self.target_flat = self.ty * w + self.tx
        # Votes of patches deep in the hole count less (Wexler et al.: γ^-distance to the known part).
        inward = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
        self.trust = np.power(BOUNDARY_GAMMA, -inward[self.ty, self.tx]).astype(np.float32)
        self.targets: Floats = np.zeros((0,), np.float32)
        self.coherence = 0.0  # set per round from the distances (see _keep_better)
        nb = []
        for ey, ex in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            ny, nx = np.clip(self.ty + ey, 0, h - 1), np.clip(self.tx + ex, 0, w - 1)
            nb.append(np.where((ny == self.ty + ey) & (nx == self.tx + ex), self.index[ny, nx], -1))
        self.neighbours = np.stack(nb, 1)
        self.kernels = _dct_kernels(patch, DCT_LUMA)
        self.desc: Floats = np.zeros((0, len(self.kernels)), np.float32)

    def refresh(self) -> None:
        """Describe every patch of the current estimate (after a vote) by its low frequencies.

        The sources' descriptions never change (they lie in the known part); the targets' follow the vote.
        """
        opp = _opponent(self.est)
        desc = np.empty((self.h, self.w, len(self.kernels)), np.float32)
        for i, (channel, kernel) in enumerate(self.kernels):
            desc[..., i] = cv2.filter2D(opp[..., channel], cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT)
        self.desc = desc.reshape(-1, desc.shape[-1])
        self.targets = self.desc[self.target_flat]

    def distance(self, sy: Ints, sx: Ints) -> Floats:
        """Squared distance (on the basis) from each target patch to the patch at (sy, sx); inf if not a source."""
        ok = (sy >= 0) & (sy < self.h) & (sx >= 0) & (sx < self.w)
        at = np.where(ok, sy, 0) * self.w + np.where(ok, sx, 0)
        ok &= self.source.ravel()[at]
        diff = self.desc[at] - self.targets
        d = np.einsum("nk,nk->n", diff, diff)
        return np.where(ok, d, np.inf).astype(np.float32)

    def init(self, offsets: npt.NDArray[np.int32] | None, rng: np.random.Generator) -> tuple[Ints, Ints]:
        """Starting matches: the coarser level's (offsets ×2) where they land on a source, else random."""
        n = self.ty.size
        pick = rng.integers(0, self.src_y.size, n)
        sy, sx = self.src_y[pick].copy(), self.src_x[pick].copy()
        if offsets is not None:
            ch, cw = offsets.shape[:2]
            py, px = np.minimum(self.ty // 2, ch - 1), np.minimum(self.tx // 2, cw - 1)
            uy, ux = self.ty + 2 * offsets[py, px, 0], self.tx + 2 * offsets[py, px, 1]
            ok = (uy >= 0) & (uy < self.h) & (ux >= 0) & (ux < self.w)
            ok[ok] = self.source[uy[ok], ux[ok]]
            sy[ok], sx[ok] = uy[ok], ux[ok]
        return sy, sx

    def patchmatch(self, sy: Ints, sx: Ints, dist: Floats, rng: np.random.Generator) -> tuple[Ints, Ints, Floats]:
        """One sweep, every target at once: the neighbours' matches shifted back, then a random search."""
        for step in (1, 4):
            for ey, ex in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                ny, nx = self.ty + step * ey, self.tx + step * ex
                ok = (ny >= 0) & (ny < self.h) & (nx >= 0) & (nx < self.w)
                j = np.full(ny.shape, -1, np.int64)
                j[ok] = self.index[ny[ok], nx[ok]]
                has = j >= 0
                cy, cx = np.full_like(sy, -1), np.full_like(sx, -1)
                cy[has], cx[has] = sy[j[has]] - step * ey, sx[j[has]] - step * ex
                sy, sx, dist = self._keep_better(sy, sx, dist, cy, cx)
        radius = max(self.h, self.w)
        while radius >= 1:
            cy = sy + np.rint(rng.uniform(-radius, radius, sy.shape)).astype(np.int64)
            cx = sx + np.rint(rng.uniform(-radius, radius, sx.shape)).astype(np.int64)
            sy, sx, dist = self._keep_better(sy, sx, dist, cy, cx)
            radius //= 2
        return sy, sx, dist

    def _keep_better(self, sy: Ints, sx: Ints, dist: Floats, cy: Ints, cx: Ints) -> tuple[Ints, Ints, Floats]:
        """Keep the candidate where it scores better: its distance plus a price for being a different
        shift than the neighbours' (so the matches form coherent pieces that copy, not noise)."""
        d = self.distance(cy, cx)
        if self.coherence > 0:
            oy, ox = sy - self.ty, sx - self.tx
            cur = dist + self.coherence * self._incoherence(oy, ox, oy, ox)
            new = d + self.coherence * self._incoherence(oy, ox, cy - self.ty, cx - self.tx)
            better = new < cur
        else:
            better = d < dist
        return np.where(better, cy, sy), np.where(better, cx, sx), np.where(better, d, dist)

    def _incoherence(self, oy: Ints, ox: Ints, qy: Ints, qx: Ints) -> Floats:
        """Per target, the fraction of its neighbouring targets whose shift (oy, ox) differs from (qy, qx)."""
        same = np.zeros(qy.shape, np.float32)
        total = np.zeros(qy.shape, np.float32)
        for k in range(4):
            j = self.neighbours[:, k]
            has = j >= 0
            jj = np.where(has, j, 0)
            total += has
            same += has & (oy[jj] == qy) & (ox[jj] == qx)
        return np.asarray(1.0 - same / np.maximum(total, 1.0), np.float32)

    def vote(self, sy: Ints, sx: Ints, dist: Floats, *, best_only: bool = False) -> None:
        """Every hole pixel := the weighted mean of what the overlapping matched patches say there
        (``best_only``: what the best-matched of them says, so the last round copies, never averages)."""
        finite = np.isfinite(dist)
        sigma2 = float(np.percentile(dist[finite], 75)) if finite.any() else 1.0
        weight = np.where(finite, self.trust * np.exp(-dist / (2.0 * max(sigma2, 1e-3))), 0.0).astype(np.float32)
        flat = self.est.reshape(-1, 3)
        acc = np.zeros_like(flat)
        wsum = np.zeros(flat.shape[0], np.float32)
        src = np.where(finite, sy * self.w + sx, 0)
        for d in self.rel:  # for one offset, the targets' pixels are distinct: no index repeats
            at = self.target_flat + d
            if best_only:
                take = weight > wsum[at]
                acc[at[take]] = flat[src[take] + d]
                wsum[at[take]] = weight[take]
            else:
                acc[at] += weight[:, None] * flat[src + d]
                wsum[at] += weight
        hole = self.mask.ravel() & (wsum > 0)
        new = flat.copy()
        new[hole] = acc[hole] if best_only else acc[hole] / wsum[hole, None]
        self.est = new.reshape(self.est.shape)

    def offset_field(self, sy: Ints, sx: Ints) -> npt.NDArray[np.int32]:
        """Per pixel, (dy, dx) from a target to its match; 0 elsewhere."""
        off = np.zeros((self.h, self.w, 2), np.int32)
        off[self.ty, self.tx, 0] = sy - self.ty
        off[self.ty, self.tx, 1] = sx - self.tx
        return off


def _opponent(image: Floats) -> Floats:
    """RGB → an orthonormal luminance / two chroma basis: squared distances are unchanged."""
    m = np.array(
        [[1 / 3**0.5, 1 / 3**0.5, 1 / 3**0.5], [1 / 2**0.5, -1 / 2**0.5, 0.0], [1 / 6**0.5, 1 / 6**0.5, -2 / 6**0.5]],
        np.float32,
    )
    return np.asarray(cv2.transform(image, m), dtype=np.float32)


def _dct_kernels(patch: int, luma: int) -> list[tuple[int, Floats]]:
    """Orthonormal 2-D DCT-II kernels, lowest frequencies first: ``luma`` for luminance, 3 per chroma channel.

    A patch's squared distance to another on these is the squared distance of their low-passed
    versions (a truncated orthonormal basis): most of the difference, for a fraction of the work.
    """
    n = np.arange(patch)
    basis = [np.cos(np.pi * (n + 0.5) * u / patch) * (np.sqrt(1 / patch) if u == 0 else np.sqrt(2 / patch)) for u in n]
    order = sorted(((u, v) for u in n for v in n), key=lambda uv: (uv[0] + uv[1], uv[0]))
    kernels: list[tuple[int, Floats]] = []
    for channel, count in ((0, luma), (1, 3), (2, 3)):
        for u, v in order[:count]:
            kernels.append((channel, np.outer(basis[u], basis[v]).astype(np.float32)))
    return kernels


def ring_texture(image: Image, mask: npt.NDArray[np.bool_], width: int = 8, percentile: float = 97.0) -> float:
    """How textured the photo is right around the mask: a high percentile of the grey gradient
    (grey levels per px) in a ``width`` px ring outside it, skipping the 2 px next to it (the
    feather). The 97th: a roof edge or a spire in a tenth of the ring counts."""
    if not mask.any():
        return 0.0
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    m = width + 2
    y0, y1, x0, x1 = max(0, ys.min() - m), min(h, ys.max() + m + 1), max(0, xs.min() - m), min(w, xs.max() + m + 1)
    local = mask[y0:y1, x0:x1].astype(np.uint8)
    outer = cv2.dilate(local, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * m + 1, 2 * m + 1)))
    inner = cv2.dilate(local, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    ring = (outer > 0) & (inner == 0)
    if not ring.any():
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return float(np.percentile(np.sqrt(gx * gx + gy * gy)[ring], percentile))
