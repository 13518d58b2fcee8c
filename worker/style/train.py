"""Train a photographer's look from before/after pairs (the image-adaptive 3D LUT, ``models/lut3d.py``).

The API the daemon's ``train_style`` job and ``apelier-worker style train`` share::

    style = train(pairs, epochs=None, device="auto", on_progress=cb, should_stop=stop)
    data = worker.style.model.save(style)            # bytes for storage
    style.metadata["heldout_psnr"], ...              # the numbers for style_profiles

``pairs`` are ``(before, after)`` uint8 RGB arrays, any size (an ``after`` of
the same aspect but another size is resized to its ``before``). The look is
global, so training works on copies at most 512 px on the long edge; the model
then applies to photos of any size.

Recipe (each choice measured on the FiveK Expert-C pairs, ``docs/style.md``):

* **held-out split** — a fifth of the pairs (at least one, when there are three
  or more) is held out; its PSNR is measured every few steps, the best state is
  kept (early stopping), and its PSNR/ΔE2000 and identity baseline go into the
  model's metadata;
* **loss** — MSE on a random subsample of pixels of each photo;
* **regularisers** — smoothness of ``global LUT − identity`` and of each
  adaptive basis (mean squared gradient), monotonicity along each channel's own
  axis (and a running maximum in the forward pass), L2 on the basis weights,
  weight decay on the encoder;
* **augmentation** — random crops (the encoder sees the crop's thumbnail),
  horizontal flips, and mild exposure/white-balance jitter of the *input only*,
  so the adaptive part learns to carry a look across exposures;
* **schedule** — Adam, one-cycle learning rate over a fixed number of steps;
* **a starting point** (``start=``, a Lightroom preset's LUT: ``worker/style/preset.py``) — the
  model's fixed input LUT: every photo passes through it first, and the recipe learns, as usual
  from the identity, what the pairs add on top of it (the photographer's touch after the preset);
  the start itself is a candidate of the early stopping, so when no step beats it on the
  held-out pairs, the preset alone is the model;
* **coverage** — a compact record of all the pairs (a descriptor of each before and after, the
  befores' colour occupancy: ``worker/style/confidence.py``) goes into the model, from which phase 1
  says how sure it is of each photo.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

from worker.errors import JobCanceled, JobInputError
from worker.imaging.resize import shrink
from worker.models import lut3d
from worker.models.device import resolve_device
from worker.style.confidence import Coverage
from worker.style.metrics import delta_e2000, psnr
from worker.style.model import LutStyle

MIN_PAIRS = 5  # the daemon's and the CLI's floor; train() itself accepts fewer (tests)
MIN_PAIRS_WITH_PRESET = 3  # refining a preset: one is held out, to keep the preset alone if nothing beats it
MAX_EPOCHS = 1000
# The metadata a finished training reports: the CLI's JSON line and the job's ``progress.metrics``.
SUMMARY_KEYS = (  # of a trained style's metadata, for the job's progress and the CLI (histogram: the last one)
    "pairs_used", "heldout_pairs", "heldout_psnr", "heldout_delta_e2000", "heldout_identity_psnr",
    "heldout_identity_delta_e2000", "train_psnr", "adaptive", "epochs", "training_time_s", "device",
    "references_used",
)  # fmt: skip
Pair = tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of the training recipe; the defaults are the measured ones."""

    model: lut3d.LUT3DConfig = field(default_factory=lut3d.LUT3DConfig)
    epochs: int | None = None  # None: as many as make about `steps` optimiser steps
    steps: int = 600
    batch_size: int = 8
    pixels_per_image: int = 8192
    long_edge: int = 512
    lr: float = 3e-3
    encoder_lr: float = 3e-3
    smooth: float = 1e-2  # global LUT − identity
    basis_smooth: float = 1e-1  # adaptive bases
    mono: float = 10.0
    weight_l2: float = 1e-3  # on the basis weights (summed over bases)
    gain_l2: float = 1e-4  # on the input log-gains (summed over channels)
    weight_decay: float = 1e-2
    crop_min: float = 0.8  # smallest crop side, as a fraction of the photo's side
    jitter_prob: float = 0.3
    jitter_ev: float = 0.15  # σ of the input exposure jitter, in stops
    jitter_wb: float = 0.03  # σ of the per-channel input gain jitter (log)
    holdout: float = 0.2
    adaptive_share: float = 0.5  # of the epochs, spent on the adaptive stage
    # The adaptive part stays unless the held-out pairs say it is clearly worse than the global LUT: its mean
    # PSNR difference is below zero by more than `adaptive_fallback_z` standard errors (with one held-out
    # pair: by more than `adaptive_fallback_db`). A held-out set of 1–10 photos is too small to demand
    # that it be better: on the FiveK folds that demand threw away an adaptive part that helped.
    adaptive_fallback_z: float = 2.0
    adaptive_fallback_db: float = 1.0
    refit: bool = True  # after the choice, train the chosen variant again on all pairs, from scratch
    # A stage ends when its held-out PSNR has not improved for this many evaluations (0: never early).
    patience: int = 0
    # Fewer training pairs (after the split) than this: no adaptive stage, the global LUT alone. An encoder
    # fitted to two or three photos (a preset's refinement may have 3 pairs) decided on one held-out photo
    # cost up to 3 dB in benchmarks/style_preset.py; the daemon's 5-pair floor leaves 4, which keep it.
    adaptive_min_pairs: int = 4
    eval_every: int = 25  # steps between held-out evaluations (and progress reports)
    seed: int = 0
    # Torch threads while training on the CPU: the tensors are small and extra threads only add
    # overhead (on a busy machine, 2 threads made a step 5× slower than 1).
    cpu_threads: int = 1


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: what the job row's ``progress`` shows while a style trains."""

    epoch: int
    total_epochs: int
    step: int
    total_steps: int
    heldout_psnr: float | None  # current held-out PSNR (dB); None without a held-out split
    best_psnr: float | None
    elapsed_s: float
    eta_s: float | None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("heldout_psnr", "best_psnr", "elapsed_s", "eta_s"):
            if out[key] is not None:
                out[key] = round(float(out[key]), 2)
        return out


@dataclass
class _Sample:
    before: npt.NDArray[np.uint8]  # ≤ long_edge, H×W×3
    after: npt.NDArray[np.uint8]
    thumb: Tensor  # 3×256×256, [0, 1]
    small: Tensor  # 3×64×64: the thumbnail averaged 4×4, as the encoder sees it (made once)


def align_pair(before: npt.NDArray[np.uint8], after: npt.NDArray[np.uint8]) -> Pair:
    """Check a pair and bring ``after`` to ``before``'s size; a pair that cannot match raises ValueError."""
    for name, img in (("before", before), ("after", after)):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"{name} image must be H×W×3 uint8 RGB, got {img.shape} {img.dtype}")
        if min(img.shape[:2]) < 16:
            raise ValueError(f"{name} image is too small ({img.shape[1]}×{img.shape[0]})")
    if before.shape != after.shape:
        ar_b = before.shape[1] / before.shape[0]
        ar_a = after.shape[1] / after.shape[0]
        if abs(ar_a / ar_b - 1.0) > 0.02:
            raise ValueError(
                f"before is {before.shape[1]}×{before.shape[0]} but after is "
                f"{after.shape[1]}×{after.shape[0]}:"
                " not the same photo (cropped or rotated?)"
            )
        after = np.asarray(
            cv2.resize(after, (before.shape[1], before.shape[0]), interpolation=cv2.INTER_AREA),
            dtype=np.uint8,
        )
    return before, after


def _prepare(pairs: Sequence[Pair], long_edge: int) -> list[_Sample]:
    samples = []
    for before, after in pairs:
        b, a = align_pair(np.asarray(before), np.asarray(after))
        # Writable and C-ordered, for torch.from_numpy.
        b, a = (np.require(shrink(img, long_edge), requirements=["C", "W"]) for img in (b, a))
        thumb = lut3d.thumbnail(b)
        samples.append(_Sample(b, a, thumb, F.avg_pool2d(thumb.unsqueeze(0), lut3d.POOL)[0]))
    return samples


def split_holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, held-out): ``round(fraction·n)`` held out, at least 1 of 3+ pairs; 2+ kept to train."""
    if n < 3 or fraction <= 0:
        return list(range(n)), []
    k = min(max(1, round(fraction * n)), n - 2)
    order = np.random.default_rng(seed).permutation(n)
    held = sorted(int(i) for i in order[:k])
    return [i for i in range(n) if i not in held], held


@dataclass(frozen=True)
class _Draw:
    """The random choices for one sample of a batch: crop, flip, pixels, input jitter."""

    top: int
    left: int
    height: int
    width: int
    whole: bool  # the crop is the whole photo (its thumbnail is already made)
    flip: bool
    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    gains: npt.NDArray[np.float64] | None


def _draw(shape: tuple[int, ...], cfg: TrainConfig, rng: np.random.Generator) -> _Draw:
    h, w = shape[:2]
    ch = max(8, round(h * rng.uniform(cfg.crop_min, 1.0)))
    cw = max(8, round(w * rng.uniform(cfg.crop_min, 1.0)))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    flip = bool(rng.random() < 0.5)
    rows = rng.integers(top, top + ch, cfg.pixels_per_image)
    cols = rng.integers(left, left + cw, cfg.pixels_per_image)
    gains = None
    if cfg.jitter_prob > 0 and rng.random() < cfg.jitter_prob:
        gains = np.exp2(rng.normal(0.0, cfg.jitter_ev)) * np.exp(rng.normal(0.0, cfg.jitter_wb, 3))
    return _Draw(top, left, ch, cw, ch == h and cw == w, flip, rows, cols, gains)


def _batch(
    samples: list[_Sample], idx: Sequence[int], cfg: TrainConfig, rng: np.random.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """A batch on the CPU: the encoder's view of random crops (:func:`lut3d.pooled`, 64², as the photo's
    own thumbnail averaged) and random pixels of them."""
    thumbs, xs, ys = [], [], []
    for i in idx:
        s = samples[i]
        d = _draw(s.before.shape, cfg, rng)
        thumb = s.small if d.whole else lut3d.pooled(s.before[d.top : d.top + d.height, d.left : d.left + d.width])
        x = torch.from_numpy(s.before[d.rows, d.cols]).float().div_(255.0)
        y = torch.from_numpy(s.after[d.rows, d.cols]).float().div_(255.0)
        thumb, x = _augment(d, thumb, x)
        thumbs.append(thumb)
        xs.append(x)
        ys.append(y)
    return torch.stack(thumbs), torch.stack(xs), torch.stack(ys)


def _augment(d: _Draw, thumb: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """The draw's flip (of the thumbnail) and input-only exposure/white-balance jitter."""
    if d.flip:
        thumb = thumb.flip(2)
    if d.gains is not None:
        g = torch.tensor(d.gains, dtype=torch.float32).to(x.device, non_blocking=True)
        x = lut3d.input_gain(x, g)  # input only, in (approximately) linear light
        thumb = lut3d.input_gain(thumb, g.view(3, 1, 1))
    return thumb, x


@dataclass(frozen=True)
class _OnDevice:
    """A sample's photos and thumbnail kept on the GPU, so a batch is cut there."""

    before: Tensor  # H×W×3 uint8
    after: Tensor
    thumb: Tensor  # 3×64×64 float: the encoder's view (_Sample.small)


def _batch_on_device(
    resident: list[_OnDevice], idx: Sequence[int], cfg: TrainConfig, rng: np.random.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_batch` on the GPU: the same random draws; crops are resized there.

    On a GPU the optimiser step takes a few milliseconds and cutting the batch on the CPU
    would be most of the training time.
    """
    draws = [_draw(tuple(resident[i].before.shape), cfg, rng) for i in idx]
    dev = resident[idx[0]].before.device
    rows = torch.from_numpy(np.stack([d.rows for d in draws])).to(dev, non_blocking=True)
    cols = torch.from_numpy(np.stack([d.cols for d in draws])).to(dev, non_blocking=True)
    thumbs, xs, ys = [], [], []
    for k, (i, d) in enumerate(zip(idx, draws, strict=True)):
        r = resident[i]
        if d.whole:
            thumb = r.thumb
        else:
            crop = r.before[d.top : d.top + d.height, d.left : d.left + d.width]
            planes = crop.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            size = lut3d.THUMB // lut3d.POOL
            if min(d.height, d.width) >= size:  # shrinking: area averaging, as OpenCV's INTER_AREA
                thumb = F.interpolate(planes, size=(size, size), mode="area")[0]
            else:  # enlarging (INTER_AREA is bilinear then)
                thumb = F.interpolate(planes, size=(size, size), mode="bilinear", antialias=True)[0]
        x = r.before[rows[k], cols[k]].float().div_(255.0)
        y = r.after[rows[k], cols[k]].float().div_(255.0)
        thumb, x = _augment(d, thumb, x)
        thumbs.append(thumb)
        xs.append(x)
        ys.append(y)
    return torch.stack(thumbs), torch.stack(xs), torch.stack(ys)


def _to_device(samples: Sequence[_Sample], dev: torch.device) -> list[_OnDevice]:
    return [
        _OnDevice(torch.from_numpy(s.before).to(dev), torch.from_numpy(s.after).to(dev), s.small.to(dev))
        for s in samples
    ]


def _predict(model: lut3d.AdaptiveLUT3D, s: _Sample, device: torch.device) -> npt.NDArray[np.uint8]:
    with torch.no_grad():
        lut = model(s.small.unsqueeze(0).to(device))
        px = torch.from_numpy(s.before.reshape(1, -1, 3)).to(device).float().div_(255.0)
        out = lut3d.apply_lut(lut, px)[0]
        img = (out.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()
    return img.reshape(s.before.shape)


def _evaluate(
    model: lut3d.AdaptiveLUT3D,
    samples: Sequence[_Sample],
    device: torch.device,
    *,
    colour: bool = False,
    per_photo: bool = False,
) -> dict[str, Any]:
    model.eval()
    outs = [_predict(model, s, device) for s in samples]
    scores = [psnr(o, s.after) for o, s in zip(outs, samples, strict=True)]
    result: dict[str, Any] = {"psnr": float(np.mean(scores))}
    if per_photo:
        result["per_photo"] = scores
    if colour:
        result["delta_e2000"] = float(np.mean([delta_e2000(o, s.after) for o, s in zip(outs, samples, strict=True)]))
    return result


def clearly_worse(diffs: npt.NDArray[np.float64], z: float, single_db: float) -> bool:
    """Whether per-photo PSNR differences (adaptive − global) say the adaptive part hurts, beyond noise."""
    if diffs.size == 0:
        return False
    if diffs.size == 1:
        return bool(diffs[0] < -single_db)
    se = float(diffs.std(ddof=1)) / math.sqrt(diffs.size)
    return bool(diffs.mean() + z * se < 0.0)


def model_has_no_encoder(config: lut3d.LUT3DConfig) -> bool:
    return config.bases == 0 and not config.exposure


def _set_mean_weights(model: lut3d.AdaptiveLUT3D, thumbs: Tensor) -> None:
    if model.encoder is None:
        return
    model.eval()
    with torch.no_grad():
        model.mean_weights.copy_(model.weights(thumbs, adaptive=True).mean(0))


def _resolve_device(device: str) -> torch.device:
    return torch.device(resolve_device(device))


@dataclass
class _Counter:
    """Progress over the whole training (split stages, then the refit), for TrainProgress."""

    epoch: int = 0
    step: int = 0
    total_epochs: int = 0
    total_steps: int = 0
    best_psnr: float | None = None


@dataclass
class _Run:
    """What the stages of one fit share: its pairs, held-out pairs, device, randomness, callbacks."""

    cfg: TrainConfig
    samples: list[_Sample]
    train_idx: list[int]
    held: list[_Sample]
    dev: torch.device
    rng: np.random.Generator
    started: float
    on_progress: Callable[[TrainProgress], None] | None
    should_stop: Callable[[], bool] | None
    counter: _Counter
    resident: list[_OnDevice] | None = None  # the samples on the GPU, when training there
    prior: Tensor | None = None  # the starting LUT (the model's input LUT), lut_size³; None: none

    def next_batch(self, idx: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        if self.resident is not None:
            return _batch_on_device(self.resident, idx, self.cfg, self.rng)
        thumbs, xs, ys = _batch(self.samples, idx, self.cfg, self.rng)
        return thumbs.to(self.dev), xs.to(self.dev), ys.to(self.dev)

    @property
    def batch(self) -> int:
        return min(self.cfg.batch_size, len(self.train_idx))

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_idx) / self.batch)


def _optimiser(
    cfg: TrainConfig, model: lut3d.AdaptiveLUT3D, steps: int, *, adaptive: bool
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over the global LUT (and, in the adaptive stage, the bases and the encoder) with its schedule."""
    groups: list[dict[str, Any]] = [{"params": [model.global_lut], "lr": cfg.lr, "weight_decay": 0.0}]
    if adaptive and model.encoder is not None:
        groups.append({"params": [model.bases], "lr": cfg.lr, "weight_decay": 0.0})
        groups.append(
            {
                "params": list(model.encoder.parameters()),
                "lr": cfg.encoder_lr,
                "weight_decay": cfg.weight_decay,
            }
        )
    opt = torch.optim.AdamW(groups)
    sched: torch.optim.lr_scheduler.LRScheduler
    if steps >= 20:
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.1
        )
    else:  # too few steps for a warm-up and decay
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def _regularisation(
    cfg: TrainConfig, model: lut3d.AdaptiveLUT3D, identity: Tensor, raw: Tensor, w: Tensor, *, adaptive: bool
) -> Tensor:
    """Smooth, monotonic LUTs (the global one near identity); in the adaptive stage also smooth bases and
    small gains and weights (``w``: the batch's predicted weights, its gains first)."""
    reg = cfg.smooth * lut3d.smoothness(model.global_lut - identity) + cfg.mono * lut3d.monotonicity(raw)
    if adaptive and model.bases.shape[0]:
        reg = reg + cfg.basis_smooth * lut3d.smoothness(model.bases) * model.bases.shape[0]
    if adaptive and w.shape[1]:
        ng = model.n_gains
        reg = reg + cfg.gain_l2 * w[:, :ng].pow(2).sum(1).mean()
        reg = reg + cfg.weight_l2 * w[:, ng:].pow(2).sum(1).mean()
    return reg


def _step(
    run: _Run,
    model: lut3d.AdaptiveLUT3D,
    opt: torch.optim.Optimizer,
    identity: Tensor,
    idx: list[int],
    *,
    adaptive: bool,
) -> None:
    """One optimiser step on the pairs ``idx``."""
    cfg = run.cfg
    model.train()
    thumbs, xs, ys = run.next_batch(idx)
    w = model.weights(thumbs, adaptive=adaptive)  # stage 1: the (zero) mean weights
    raw = model.raw(w, coarse=True)  # the look's own grid: exact, and far cheaper than the fused 33³
    luts = lut3d.make_monotonic(raw) if cfg.model.monotonic else raw
    loss = F.mse_loss(lut3d.apply_lut(luts, model.pre(model.enter(xs), w)), ys)
    reg = _regularisation(cfg, model, identity, raw, w, adaptive=adaptive)
    opt.zero_grad(set_to_none=True)
    (loss + reg).backward()
    opt.step()


def _report(run: _Run, score: float | None) -> None:
    if run.on_progress is None:
        return
    c = run.counter
    elapsed = time.monotonic() - run.started
    run.on_progress(
        TrainProgress(
            epoch=c.epoch,
            total_epochs=c.total_epochs,
            step=c.step,
            total_steps=c.total_steps,
            heldout_psnr=score,
            best_psnr=c.best_psnr,
            elapsed_s=elapsed,
            eta_s=elapsed / c.step * max(0, c.total_steps - c.step),
        )
    )


def _stage(
    run: _Run, model: lut3d.AdaptiveLUT3D, epochs: int, *, adaptive: bool
) -> tuple[float | None, int, dict[str, Tensor]]:
    """Train for ``epochs`` (fewer when ``patience`` ends it early); returns (best held-out PSNR, its
    step, its state).

    Without held-out pairs: (None, last step, last state).
    """
    cfg = run.cfg
    opt, sched = _optimiser(cfg, model, epochs * run.steps_per_epoch, adaptive=adaptive)
    identity = lut3d.identity_lut(cfg.model.global_grid, device=run.dev)
    train_thumbs = torch.stack([run.samples[i].small for i in run.train_idx]).to(run.dev)
    c = run.counter
    best: tuple[float | None, int, dict[str, Tensor]] | None = None
    planned_step, planned_epoch = c.step + epochs * run.steps_per_epoch, c.epoch + epochs
    stale = 0  # evaluations since the best
    if run.prior is not None and run.held and not adaptive:  # the start is a candidate too
        model.adaptive.fill_(False)
        score = _evaluate(model, run.held, run.dev)["psnr"]
        best = (score, c.step, copy.deepcopy(model.state_dict()))
        c.best_psnr = score if c.best_psnr is None else max(c.best_psnr, score)
    batches = ((e, b) for e in range(epochs) for b in range(run.steps_per_epoch))
    order: list[int] = []
    for _, b in batches:
        if b == 0:
            c.epoch += 1
            order = run.rng.permutation(run.train_idx).tolist()
        if run.should_stop is not None and run.should_stop():
            raise JobCanceled("style training was stopped before it finished")
        _step(run, model, opt, identity, order[b * run.batch : (b + 1) * run.batch], adaptive=adaptive)
        sched.step()
        c.step += 1
        if c.step % cfg.eval_every and c.step != planned_step:
            continue
        score = None
        if adaptive:
            _set_mean_weights(model, train_thumbs)
        if run.held:
            model.adaptive.fill_(adaptive)
            score = _evaluate(model, run.held, run.dev)["psnr"]
            stale += 1
            if best is None or best[0] is None or score > best[0]:
                best, stale = (score, c.step, copy.deepcopy(model.state_dict())), 0
            c.best_psnr = score if c.best_psnr is None else max(c.best_psnr, score)
        stop = bool(cfg.patience and stale >= cfg.patience and c.step != planned_step)
        if stop:  # early: the rest of the stage is not run
            c.total_steps -= planned_step - c.step
            c.total_epochs -= planned_epoch - c.epoch
        _report(run, score)
        if stop:
            break
    if best is None:
        model.adaptive.fill_(adaptive)
        best = (None, c.step, copy.deepcopy(model.state_dict()))
    return best


def train(
    pairs: Sequence[Pair],
    *,
    epochs: int | None = None,
    device: str = "auto",
    on_progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    config: TrainConfig | None = None,
    start: npt.ArrayLike | None = None,
) -> LutStyle:
    """Train the look of ``pairs``; returns a :class:`LutStyle` whose ``metadata`` holds the metrics.

    Two stages: the global LUT alone, then the adaptive gains, bases and
    encoder on top of it; the adaptive part is dropped when the held-out pairs
    say it is clearly worse than the global LUT (see ``TrainConfig``). With
    ``config.refit`` the chosen variant is then trained again on all the pairs
    (the metadata's held-out metrics are those of the split, before the refit).

    ``on_progress`` is called every ``config.eval_every`` steps and at the end
    of each stage; ``should_stop`` is polled every step, and when it returns
    True training ends with :class:`~worker.errors.JobCanceled`. A pair that
    cannot be used (different photos, not RGB), or ``epochs`` outside 1–1000,
    raises :class:`~worker.errors.JobInputError` naming the problem. Each stage
    trains at least one epoch, so with the adaptive part ``epochs=1`` trains 2.

    ``start`` (a ``3×D×D×D`` LUT, e.g. a preset's) is the look before any training, which the
    pairs refine (see the module docstring); the metadata then has ``started_from_lut`` and
    ``heldout_start_psnr``, the start's own held-out score.
    """
    cfg, prior = _checked_config(config or TrainConfig(), epochs, start)
    if not pairs:
        raise JobInputError("no before/after pairs to train a style from")
    started = time.monotonic()
    dev = _resolve_device(device)
    try:
        samples = _prepare(pairs, cfg.long_edge)
    except ValueError as exc:
        raise JobInputError(f"unusable training pair: {exc}") from None
    train_idx, held_idx = split_holdout(len(samples), cfg.holdout, cfg.seed)
    counter = _Counter()
    split = _Run(
        cfg=cfg,
        samples=samples,
        train_idx=train_idx,
        held=[samples[i] for i in held_idx],
        dev=dev,
        rng=np.random.default_rng(cfg.seed),
        started=started,
        on_progress=on_progress,
        should_stop=should_stop,
        counter=counter,
        resident=_to_device(samples, dev) if dev.type == "cuda" else None,
        prior=None if prior is None else prior.to(dev),
    )
    total_epochs = cfg.epochs if cfg.epochs is not None else max(2, math.ceil(cfg.steps / split.steps_per_epoch))
    adaptive_epochs = max(1, round(total_epochs * cfg.adaptive_share))
    if model_has_no_encoder(cfg.model) or len(train_idx) < cfg.adaptive_min_pairs:
        adaptive_epochs = 0
    global_epochs = max(1, total_epochs - adaptive_epochs)
    split_steps = (global_epochs + adaptive_epochs) * split.steps_per_epoch
    refit, refit_epochs = _plan_refit(split, global_epochs, adaptive_epochs)
    counter.total_epochs = global_epochs + adaptive_epochs + sum(refit_epochs)
    counter.total_steps = split_steps + (sum(refit_epochs) * refit.steps_per_epoch if refit is not None else 0)

    with _torch_threads(cfg.cpu_threads if dev.type == "cpu" else None):
        model, fit = _fit(split, global_epochs, adaptive_epochs)
        metadata = _metadata(model, split, fit)
        if prior is not None and split.held and fit.best_step == 0:
            refit = None  # no step beat the start on the held-out pairs: the start is the model
        metadata.update(epochs=counter.epoch, steps=counter.step, refit=refit is not None)
        if refit is not None:
            model = _refit(refit, refit_epochs, fit)
            metadata["epochs"] = counter.total_epochs
            metadata["steps"] = counter.step
            metadata["train_psnr"] = round(_evaluate(model, samples, dev)["psnr"], 3)
    after_thumbs = torch.stack([lut3d.thumbnail(s.after) for s in samples])
    coverage = Coverage.fit(torch.stack([s.thumb for s in samples]), after_thumbs)
    metadata["training_time_s"] = round(time.monotonic() - started, 2)
    model.cpu()
    return LutStyle(model, metadata, coverage=coverage)


def _plan_refit(split: _Run, global_epochs: int, adaptive_epochs: int) -> tuple[_Run | None, tuple[int, int]]:
    """The refit's run over all the pairs and its (global, adaptive) epochs: the split's schedule again,
    in optimiser steps."""
    cfg = split.cfg
    if not cfg.refit or not split.held:
        return None, (0, 0)
    refit = replace(split, train_idx=list(range(len(split.samples))), held=[])
    scale = split.steps_per_epoch / refit.steps_per_epoch
    return refit, (max(1, math.ceil(scale * global_epochs)), math.ceil(scale * adaptive_epochs))


def _refit(refit: _Run, epochs: tuple[int, int], fit: _Fit) -> lut3d.AdaptiveLUT3D:
    """Train the chosen variant again, from scratch, on all the pairs."""
    cfg, c = refit.cfg, refit.counter
    if not fit.adaptive and epochs[1]:  # the adaptive part was dropped: no adaptive stage
        c.total_epochs -= epochs[1]
        c.total_steps -= epochs[1] * refit.steps_per_epoch
        epochs = (epochs[0], 0)
    torch.manual_seed(cfg.seed + 1)
    model = _new_model(refit)
    if epochs[0]:
        _stage(refit, model, epochs[0], adaptive=False)
    if fit.adaptive:
        _stage(refit, model, epochs[1], adaptive=True)
    model.adaptive.fill_(fit.adaptive)
    model.eval()
    return model


@dataclass(frozen=True)
class _Fit:
    adaptive: bool
    global_score: float | None
    adaptive_gain: float | None
    best_step: int


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit(run: _Run, global_epochs: int, adaptive_epochs: int) -> tuple[lut3d.AdaptiveLUT3D, _Fit]:
    """Stage 1 (global LUT), stage 2 (adaptive part), and the held-out pairs' choice between them."""
    cfg = run.cfg
    torch.manual_seed(cfg.seed)
    model = _new_model(run)
    global_score, best_step, global_state = _stage(run, model, global_epochs, adaptive=False)
    use_adaptive = False
    adaptive_gain: float | None = None
    if adaptive_epochs:
        model.load_state_dict(global_state)
        _, step, state = _stage(run, model, adaptive_epochs, adaptive=True)
        use_adaptive = True  # nothing held out to judge by: keep what fits the pairs
        if run.held:
            model.load_state_dict(global_state)
            plain = _evaluate(model, run.held, run.dev, per_photo=True)["per_photo"]
            model.load_state_dict(state)
            adapted = _evaluate(model, run.held, run.dev, per_photo=True)["per_photo"]
            diffs = np.asarray(adapted) - np.asarray(plain)
            adaptive_gain = float(diffs.mean())
            use_adaptive = not clearly_worse(diffs, cfg.adaptive_fallback_z, cfg.adaptive_fallback_db)
        if use_adaptive:
            model.load_state_dict(state)
            best_step = step
    if not use_adaptive:
        model.load_state_dict(global_state)
    model.adaptive.fill_(use_adaptive)
    model.eval()
    return model, _Fit(use_adaptive, global_score, adaptive_gain, best_step)


def _checked_config(
    cfg: TrainConfig, epochs: int | None, start: npt.ArrayLike | None
) -> tuple[TrainConfig, Tensor | None]:
    """The configuration with ``epochs`` (checked: 1–1000) and, with a ``start``, an input LUT; the start's LUT."""
    prior = None
    if start is not None:
        cfg = replace(cfg, model=replace(cfg.model, input_lut=True))
        prior = resample_lut(torch.as_tensor(np.asarray(start, dtype=np.float32)), cfg.model.lut_size)
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    e = cfg.epochs
    if e is not None and (not isinstance(e, int) or isinstance(e, bool) or not 1 <= e <= MAX_EPOCHS):
        raise JobInputError(f"epochs={e!r} must be a whole number from 1 to {MAX_EPOCHS} (or absent for the default)")
    return cfg, prior


def _new_model(run: _Run) -> lut3d.AdaptiveLUT3D:
    """A fresh model on the run's device, with the run's starting LUT as its input LUT when there is one."""
    model = lut3d.build(run.cfg.model).to(run.dev)
    if run.prior is not None:
        assert model.input_lut is not None
        model.input_lut.copy_(run.prior)
    return model


def resample_lut(lut: Tensor, size: int) -> Tensor:
    """A ``3×D×D×D`` LUT sampled at the nodes of a ``size``³ grid (trilinear; exact where nodes coincide)."""
    if lut.ndim != 4 or lut.shape[0] != 3 or not lut.shape[1] == lut.shape[2] == lut.shape[3] >= 2:
        raise ValueError(f"a starting LUT must be 3×D×D×D, got {tuple(lut.shape)}")
    if lut.shape[-1] == size:
        return lut.clone()
    out: Tensor = F.interpolate(lut.unsqueeze(0), size=(size,) * 3, mode="trilinear", align_corners=True)[0]
    return out


def _metadata(model: lut3d.AdaptiveLUT3D, run: _Run, fit: _Fit) -> dict[str, Any]:
    """The split's metrics, for the model file and ``style_profiles``."""
    held = run.held
    metadata: dict[str, Any] = {
        "method": "lut3d",
        "pairs_used": len(run.samples),
        "train_pairs": len(run.train_idx),
        "heldout_pairs": len(held),
        "best_step": fit.best_step,
        "device": run.dev.type,
        "adaptive": fit.adaptive,
        "global_heldout_psnr": None if fit.global_score is None else round(fit.global_score, 3),
        "adaptive_gain_db": None if fit.adaptive_gain is None else round(fit.adaptive_gain, 3),
        "parameters": lut3d.parameter_count(model),
        "config": asdict(run.cfg),
    }
    if held:
        scored = _evaluate(model, held, run.dev, colour=True)
        metadata.update(
            heldout_psnr=round(scored["psnr"], 3),
            heldout_delta_e2000=round(scored["delta_e2000"], 3),
            heldout_identity_psnr=round(float(np.mean([psnr(s.before, s.after) for s in held])), 3),
            heldout_identity_delta_e2000=round(float(np.mean([delta_e2000(s.before, s.after) for s in held])), 3),
        )
    if run.prior is not None:
        metadata["started_from_lut"] = True
        if held:
            start = _new_model(run)
            start.adaptive.fill_(False)
            metadata["heldout_start_psnr"] = round(_evaluate(start, held, run.dev)["psnr"], 3)
    train_samples = [run.samples[i] for i in run.train_idx]
    metadata["train_psnr"] = round(_evaluate(model, train_samples, run.dev)["psnr"], 3)
    return metadata
