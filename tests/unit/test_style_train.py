"""Training: synthetic looks on real photos are recovered; LUTs stay monotonic; progress, stop, errors.

Looks are applied to real photos from the wheels (scikit-image, scikit-learn,
matplotlib); one photo (Chelsea the cat) is never trained on and scores the
result at full resolution. Training runs for few steps on small copies.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest
import torch

from worker.errors import JobCanceled, JobInputError
from worker.imaging.colour import linear_to_srgb, srgb_to_linear
from worker.models import lut3d
from worker.style.metrics import psnr
from worker.style.model import LutStyle
from worker.style.train import TrainConfig, TrainProgress, align_pair, clearly_worse, split_holdout, train

U8 = npt.NDArray[np.uint8]

FAST = TrainConfig(steps=120, long_edge=256, pixels_per_image=4096, eval_every=40, refit=False)


def _photos() -> list[U8]:
    import matplotlib.cbook as cbook
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        hopper = np.asarray(img.convert("RGB"))
    return [data.astronaut(), data.coffee(), data.rocket(), *load_sample_images().images, hopper]


@pytest.fixture(scope="module")
def photos() -> list[U8]:
    return _photos()


@pytest.fixture(scope="module")
def chelsea() -> U8:
    from skimage import data

    return np.asarray(data.chelsea())


def global_look(img: U8) -> U8:
    """A tone curve (lifted mids, soft shoulder) plus a warm colour shift: the same for every photo."""
    y = img / 255.0
    y = y**0.85
    y = y + 0.12 * np.sin(np.pi * y) * (y - 0.4)
    y = y * np.array([1.05, 1.0, 0.9]) + np.array([0.0, 0.01, 0.04])
    return (np.clip(y, 0, 1) * 255).round().astype(np.uint8)


def expose(img: U8, stops: float) -> U8:
    return (linear_to_srgb(np.clip(srgb_to_linear(img / 255.0) * 2.0**stops, 0.0, 1.0)) * 255).round().astype(np.uint8)


def exposure_look(img: U8) -> U8:
    """Depends on the photo: normalise its exposure (mean luminance → 18 % grey), then a curve and a tint."""
    lin = srgb_to_linear(img / 255.0)
    gain = np.clip(0.18 / float((lin @ [0.2126, 0.7152, 0.0722]).mean()), 0.25, 4.0)
    y = linear_to_srgb(np.clip(lin * gain, 0.0, 1.0))
    y = y + 0.15 * y * (1 - y) * (2 * y - 0.3)
    y = y * np.array([1.04, 1.0, 0.92]) + np.array([0.0, 0.0, 0.03])
    return (np.clip(y, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def global_style(photos: list[U8]) -> LutStyle:
    return train([(p, global_look(p)) for p in photos], device="cpu", config=FAST)


@pytest.mark.slow  # several seconds on two cores: `make test-fast` skips it
def test_synthetic_global_look_is_recovered(global_style: LutStyle, chelsea: U8) -> None:
    out = global_style.apply(chelsea, "cpu")
    identity = psnr(chelsea, global_look(chelsea))
    assert identity < 25.0  # the look is a real change
    assert psnr(out, global_look(chelsea)) >= 35.0
    assert global_style.metadata["heldout_psnr"] >= 35.0


def test_trained_luts_are_monotonic(global_style: LutStyle, chelsea: U8, photos: list[U8]) -> None:
    for lut in (
        global_style.lut_for(chelsea),
        global_style.lut_for(photos[0]),
        global_style.model.average_lut(),
    ):
        assert float(lut3d.monotonicity(lut)) == 0.0
        assert (lut[0].diff(dim=-1) >= 0).all()
        assert (lut[1].diff(dim=-2) >= 0).all()
        assert (lut[2].diff(dim=-3) >= 0).all()


def test_metadata_holds_the_held_out_metrics(global_style: LutStyle) -> None:
    meta = global_style.metadata
    assert meta["pairs_used"] == 6
    assert meta["heldout_pairs"] == 1
    assert meta["train_pairs"] == 5
    assert meta["heldout_identity_psnr"] < meta["heldout_psnr"]
    assert meta["heldout_delta_e2000"] < meta["heldout_identity_delta_e2000"]
    assert meta["parameters"] < 1_000_000
    assert isinstance(meta["adaptive"], bool)
    assert meta["training_time_s"] > 0


@pytest.mark.slow  # several seconds on two cores: `make test-fast` skips it
def test_exposure_dependent_look_needs_and_gets_the_adaptive_part(photos: list[U8], chelsea: U8) -> None:
    pairs = [(expose(p, ev), exposure_look(expose(p, ev))) for p in photos for ev in (-1.0, 0.0, 0.7)]
    cfg = replace(FAST, steps=300, long_edge=192)
    adaptive = train(pairs, device="cpu", config=cfg)
    assert adaptive.metadata["adaptive"] is True
    global_only = lut3d.LUT3DConfig(bases=0, exposure=False)
    fixed = train(pairs, device="cpu", config=replace(cfg, steps=120, model=global_only))
    for ev in (-0.5, 0.0, 0.5):
        x = expose(chelsea, ev)
        target = exposure_look(x)
        got = psnr(adaptive.apply(x, "cpu"), target)
        assert got >= 30.0, (ev, got)
        assert got >= psnr(fixed.apply(x, "cpu"), target) + 3.0


def test_progress_reports_and_stop(photos: list[U8]) -> None:
    pairs = [(p, global_look(p)) for p in photos[:4]]
    seen: list[TrainProgress] = []
    cfg = replace(FAST, steps=20, eval_every=5)
    style = train(pairs, device="cpu", config=cfg, on_progress=seen.append)
    assert seen, "no progress reported"
    assert [p.step for p in seen] == sorted(p.step for p in seen)
    last = seen[-1]
    assert last.step == last.total_steps
    assert last.epoch == last.total_epochs == style.metadata["epochs"]
    assert last.eta_s == pytest.approx(0.0)
    assert all(p.heldout_psnr is not None for p in seen)
    assert set(last.to_json()) >= {"epoch", "total_epochs", "heldout_psnr", "eta_s"}

    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(JobCanceled):
        train(pairs, device="cpu", config=cfg, should_stop=stop)


@pytest.mark.slow  # several seconds on two cores: `make test-fast` skips it
def test_refit_trains_the_chosen_variant_on_all_pairs(photos: list[U8], chelsea: U8) -> None:
    pairs = [(p, global_look(p)) for p in photos]
    seen: list[TrainProgress] = []
    style = train(pairs, device="cpu", config=replace(FAST, refit=True), on_progress=seen.append)
    meta = style.metadata
    assert meta["refit"] is True
    assert meta["heldout_pairs"] == 1  # the split's metrics are kept
    assert meta["steps"] > FAST.steps
    assert seen[-1].step == seen[-1].total_steps and seen[-1].epoch == seen[-1].total_epochs
    assert psnr(style.apply(chelsea, "cpu"), global_look(chelsea)) >= 35.0


@pytest.mark.slow  # several seconds on two cores: `make test-fast` skips it
def test_a_refit_without_its_dropped_adaptive_part_reports_the_epochs_and_steps_it_ran(photos: list[U8]) -> None:
    pairs = [(p, global_look(p)) for p in photos]
    seen: list[TrainProgress] = []
    # Negative thresholds: the held-out pairs always find the adaptive part "clearly worse".
    cfg = replace(FAST, steps=40, refit=True, adaptive_fallback_z=-1e9, adaptive_fallback_db=-1e9)
    meta = train(pairs, device="cpu", config=cfg, on_progress=seen.append).metadata
    assert meta["adaptive"] is False and meta["refit"] is True
    # One step per epoch (5 and 6 pairs, batches of 8): split 20 + 20 epochs, then the refit's global 20 only.
    assert meta["epochs"] == meta["steps"] == 60
    last = seen[-1]
    assert (last.epoch, last.step) == (last.total_epochs, last.total_steps) == (meta["epochs"], meta["steps"])
    assert all(p.step <= p.total_steps and p.epoch <= p.total_epochs for p in seen)


@pytest.mark.parametrize("epochs", [0, -3, 1001, 2.5, True])
def test_epochs_outside_1_to_1000_are_job_input_errors(photos: list[U8], epochs: object) -> None:
    pairs = [(p, global_look(p)) for p in photos[:2]]
    with pytest.raises(JobInputError, match=rf"^epochs={epochs!r} must be a whole number from 1 to 1000"):
        train(pairs, epochs=epochs, device="cpu", config=FAST)  # type: ignore[arg-type]


def test_epochs_override_and_tiny_sets(photos: list[U8]) -> None:
    pairs = [(p, global_look(p)) for p in photos[:2]]
    style = train(pairs, epochs=4, device="cpu", config=replace(FAST, eval_every=1000))
    assert style.metadata["epochs"] == 4
    assert style.metadata["heldout_pairs"] == 0  # two pairs: nothing to spare
    assert "heldout_psnr" not in style.metadata


def test_unusable_pairs_are_job_input_errors(photos: list[U8]) -> None:
    a, b = photos[0], photos[1]
    with pytest.raises(JobInputError, match="not the same photo"):
        train([(a, b)], device="cpu", config=FAST)
    with pytest.raises(JobInputError, match="no before/after pairs"):
        train([], device="cpu", config=FAST)
    gray = np.zeros((64, 64), dtype=np.uint8)
    with pytest.raises(JobInputError, match="RGB"):
        train([(gray, gray)], device="cpu", config=FAST)


def test_align_pair_resizes_an_after_of_the_same_aspect(photos: list[U8]) -> None:
    before = photos[1]  # 400×600
    after = np.ascontiguousarray(before[::2, ::2])
    b, a = align_pair(before, after)
    assert a.shape == b.shape


def test_adaptive_part_is_dropped_only_when_clearly_worse() -> None:
    assert not clearly_worse(np.array([]), 2.0, 1.0)
    assert not clearly_worse(np.array([-0.5]), 2.0, 1.0)
    assert clearly_worse(np.array([-1.5]), 2.0, 1.0)
    assert not clearly_worse(np.array([-3.0, 2.0]), 2.0, 1.0)  # two photos disagree: noise
    assert clearly_worse(np.array([-1.0, -1.2, -0.9, -1.1]), 2.0, 1.0)
    assert not clearly_worse(np.array([0.5, -0.2, 0.1]), 2.0, 1.0)


def test_split_holdout() -> None:
    assert split_holdout(2, 0.2, 0) == ([0, 1], [])
    train_idx, held = split_holdout(12, 0.2, 0)
    assert len(held) == 2 and sorted(train_idx + held) == list(range(12))
    assert split_holdout(12, 0.2, 0) == (train_idx, held)  # deterministic
    assert len(split_holdout(3, 0.9, 0)[0]) == 2


@pytest.mark.gpu
def test_gpu_training_matches_cpu_quality(photos: list[U8], chelsea: U8) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    style = train([(p, global_look(p)) for p in photos], device="cuda", config=FAST)
    assert psnr(style.apply(chelsea, "cuda"), global_look(chelsea)) >= 35.0


def test_a_batch_cut_on_the_device_matches_the_cpu_batch(photos: list[U8]) -> None:
    """The GPU batch path (run here on CPU tensors) makes the same draws: same pixels, same jitter,
    thumbnails within two levels of OpenCV's on average (sharp edges differ more)."""
    from worker.style.train import _batch, _batch_on_device, _OnDevice, _prepare

    samples = _prepare([(p, global_look(p)) for p in photos], 512)
    resident = [_OnDevice(torch.from_numpy(s.before), torch.from_numpy(s.after), s.thumb) for s in samples]
    cfg = replace(FAST, jitter_prob=0.5, crop_min=0.4)  # crops below the thumbnail's size too
    idx = list(range(len(samples)))
    for seed in range(3):
        cpu = _batch(samples, idx, cfg, np.random.default_rng(seed))
        dev = _batch_on_device(resident, idx, cfg, np.random.default_rng(seed))
        torch.testing.assert_close(dev[1], cpu[1])  # pixels, with the same input jitter
        torch.testing.assert_close(dev[2], cpu[2])
        small = lut3d.THUMB // lut3d.POOL  # the encoder's view, cut from each crop
        assert dev[0].shape == cpu[0].shape == (len(idx), 3, small, small)
        assert (dev[0] - cpu[0]).abs().mean() < 2.5 / 255  # torch's area bins are whole pixels, OpenCV's not


def _colour_fields(n: int, seed: int, size: int = 96) -> list[U8]:
    """Small images made here: smooth random colour fields (gradients and blobs) that fill the RGB cube."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for _ in range(n):
        img = np.zeros((size, size, 3))
        for c in range(3):
            a, b, f, p = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(1, 4), rng.uniform(0, 2 * np.pi)
            img[..., c] = 0.5 + 0.35 * (a * xx + b * yy - (a + b) / 2) + 0.25 * np.sin(f * (xx + yy) * np.pi + p)
        img = img * rng.uniform(0.5, 1.2) + rng.uniform(-0.15, 0.15)  # each its own exposure
        out.append(np.asarray(np.clip(img, 0, 1) * 255 + 0.5, dtype=np.uint8))
    return out


def smooth_look(img: U8) -> U8:
    """A preset-like look: S-curve, matte blacks, split toning by luminance, muted greens."""
    y = img / 255.0
    lum = y @ np.array([0.2126, 0.7152, 0.0722])
    greens = np.clip((y[..., 1] - np.maximum(y[..., 0], y[..., 2])) * 4, 0, 1)[..., None]
    y = lum[..., None] + (y - lum[..., None]) * (1 - 0.5 * greens)
    y = y - 0.4 * np.sin(2 * np.pi * y) / (2 * np.pi)
    y = 0.06 + 0.9 * y
    shadows = np.clip(1 - 2 * lum, 0, 1)[..., None]
    y = y + shadows * np.array([-0.02, 0.01, 0.05]) + (1 - shadows) * np.array([0.04, 0.01, -0.03])
    return np.asarray(np.clip(y, 0, 1) * 255 + 0.5, dtype=np.uint8)


def test_a_smooth_look_is_learned_closely_on_images_made_here() -> None:
    befores = _colour_fields(13, seed=1)
    held, train_set = befores[0], befores[1:]
    style = train([(b, smooth_look(b)) for b in train_set], device="cpu", config=replace(FAST, long_edge=96))
    assert psnr(held, smooth_look(held)) < 31.0  # the look is a real change (about 8 levels RMS)
    assert psnr(style.apply(held, "cpu"), smooth_look(held)) >= 38.0


def test_early_stopping_ends_a_stage_that_stops_improving(photos: list[U8]) -> None:
    pairs = [(p, global_look(p)) for p in photos]
    seen: list[TrainProgress] = []
    # No learning at all: the held-out PSNR never improves after the first evaluation.
    cfg = replace(FAST, steps=200, eval_every=5, patience=2, lr=0.0, encoder_lr=0.0, refit=False)
    meta = train(pairs, device="cpu", config=cfg, on_progress=seen.append).metadata
    # Each stage: the first evaluation is the best, two more without improvement, then it stops.
    assert meta["steps"] == 2 * 3 * 5 < 200
    assert (seen[-1].step, seen[-1].total_steps) == (meta["steps"], meta["steps"])
    assert seen[-1].epoch == seen[-1].total_epochs == meta["epochs"]
