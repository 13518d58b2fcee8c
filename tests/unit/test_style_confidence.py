"""A styled photo's confidence: high on photos like the training pairs, low on photos unlike them;
the coverage record travels in the model file, and model files without one still load."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from worker.errors import ModelFileError
from worker.frame import Frame, SourceInfo
from worker.imaging.resize import shrink
from worker.models import lut3d
from worker.phases import PhaseContext, review
from worker.phases import style as style_phase
from worker.profile import EditSettings
from worker.style import confidence
from worker.style import histogram as style_histogram
from worker.style import model as style_model
from worker.style.metrics import psnr
from worker.style.train import TrainConfig, train


def warm_look(img: np.ndarray) -> np.ndarray:
    """The photographer's look: a gentle S-curve and a warm shift."""
    x = img.astype(np.float32) / 255.0
    x = 0.5 + (x - 0.5) * 1.15
    x = x * np.array([1.08, 1.0, 0.9], np.float32)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def shifted(img: np.ndarray, stops: float = 0.0, gains: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The photo with its exposure and colour balance changed, in linear light."""
    lin = (img.astype(np.float32) / 255.0) ** 2.2 * 2.0**stops * np.asarray(gains, np.float32)
    return (np.clip(lin, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def daylight_photos() -> list[np.ndarray]:
    """Four bright daylight photos (a portrait, a still life, a cat, a landscape), 320 px."""
    import sklearn.datasets
    from skimage import data

    photos = [np.asarray(getattr(data, n)())[:, :, :3] for n in ("astronaut", "coffee", "chelsea")]
    china = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
    photos.append(np.asarray(Image.open(china).convert("RGB")))
    return [shrink(p, 320) for p in photos]


@pytest.fixture(scope="module")
def daylight() -> tuple[style_model.LutStyle, list[np.ndarray]]:
    """A style trained on the left 60 % of each daylight photo; the right 40 % (never seen) returned too."""
    photos = daylight_photos()
    cut = [int(p.shape[1] * 0.6) for p in photos]
    left = [np.ascontiguousarray(p[:, :c]) for p, c in zip(photos, cut, strict=True)]
    right = [np.ascontiguousarray(p[:, c:]) for p, c in zip(photos, cut, strict=True)]
    style = train([(p, warm_look(p)) for p in left], epochs=4, device="cpu", config=TrainConfig(long_edge=256))
    assert style.coverage is not None and style.coverage.pairs == 4
    return style, right


def confidences(style: style_model.Style, photos: list[np.ndarray]) -> list[confidence.Confidence]:
    out = []
    for edit in style.edits_for(photos):
        assert edit.confidence is not None
        out.append(edit.confidence)
    return out


def test_photos_like_the_pairs_are_confident(daylight: tuple[style_model.LutStyle, list[np.ndarray]]) -> None:
    style, unseen = daylight
    for c in confidences(style, unseen):
        assert c.value >= 0.6, c
        assert 0.0 <= c.value <= 1.0


def test_a_night_photo_is_not(daylight: tuple[style_model.LutStyle, list[np.ndarray]]) -> None:
    """The daylight style on the same scenes three stops darker (a night shot): low confidence,
    and the reason says it is darker than anything the style was trained on."""
    style, unseen = daylight
    like = confidences(style, unseen)
    dark = confidences(style, [shifted(p, -3.0) for p in unseen])
    for c, d in zip(like, dark, strict=True):
        assert d.value < 0.3 < c.value, (c, d)
        assert d.exposure < -1.0
    assert "stops darker than any photo it was trained on" in dark[0].reason(0.5)


def test_a_strongly_coloured_photo_is_seen_and_costs_what_the_look_moves_it(
    daylight: tuple[style_model.LutStyle, list[np.ndarray]],
) -> None:
    """A strong green cast over the portrait and the landscape: most of its colours are ones no pair
    had, and its result's cast is far from the afters'. This gentle look hardly moves those colours,
    so the estimated error stays small (a strong look that moves them: the pastel test below)."""
    style, unseen = daylight
    like = confidences(style, [unseen[i] for i in (0, 3)])
    green = confidences(style, [shifted(unseen[i], 0.0, (0.5, 1.2, 0.4)) for i in (0, 3)])
    for c, g in zip(like, green, strict=True):
        assert g.uncovered > 0.3 > c.uncovered and g.cast > c.cast, (c, g)
        assert g.colours > 5 * c.colours and g.colours < 0.05, (c, g)


def blobs(rng: np.random.Generator, lo: float, hi: float, size: int = 96) -> np.ndarray:
    """A synthetic photo: smooth colour blobs with channel values between ``lo`` and ``hi``."""
    small = rng.uniform(lo, hi, (6, 6, 3)).astype(np.float32)
    big = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC))
    noise = rng.normal(0, 3, big.shape)
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def vivid_look(img: np.ndarray) -> np.ndarray:
    """A strong look: twice the saturation, more contrast, warm highlights and cool shadows."""
    x = img.astype(np.float32) / 255.0
    luma = x.mean(2, keepdims=True)
    x = luma + 2.0 * (x - luma)
    x = 0.5 + (x - 0.5) * 1.3 + (luma - 0.5) * np.array([0.2, 0.0, -0.2], np.float32)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def pastel() -> style_model.LutStyle:
    """The vivid look learned from eight synthetic photos of soft, mid-tone colours (the global LUT
    alone, to train in seconds: the confidence needs only the record and the photo's LUT)."""
    rng = np.random.default_rng(3)
    photos = [blobs(rng, 0.3, 0.7) for _ in range(8)]
    cfg = TrainConfig(long_edge=96, steps=150, refit=False, model=lut3d.LUT3DConfig(bases=0, exposure=False))
    return train([(p, vivid_look(p)) for p in photos], device="cpu", config=cfg)


def test_synthetic_photos_inside_the_training_colours_are_confident_and_outside_ones_are_not(
    pastel: style_model.LutStyle,
) -> None:
    """New photos drawn like the pairs (soft mid tones) are confident; vivid ones with deep shadows
    and bright highlights, which the pairs never had, are styled worse and go to review."""
    rng = np.random.default_rng(11)
    inside = [blobs(rng, 0.3, 0.7) for _ in range(4)]
    vivid = [np.where(rng.uniform(size=(1, 1, 3)) < 0.5, 0, 255).astype(np.uint8) for _ in range(4)]
    outside = [(0.7 * blobs(rng, 0.0, 1.0) + 0.3 * v).astype(np.uint8) for v in vivid]
    sure, unsure = confidences(pastel, inside), confidences(pastel, outside)
    for c in sure:
        assert c.value >= 0.8 and c.uncovered < 0.05, c
    for c in unsure:
        assert c.value < 0.5 and c.uncovered > 0.3 and c.colours > c.tone, c
        assert "of its colours are in none of the training photos" in c.reason(0.5)
    # and it is right to be unsure: the results outside are further from the look
    worst_inside = min(psnr(pastel.apply(p, "cpu"), vivid_look(p)) for p in inside)
    assert all(psnr(pastel.apply(p, "cpu"), vivid_look(p)) < worst_inside - 3 for p in outside)


def test_coverage_round_trips_through_the_model_file(
    daylight: tuple[style_model.LutStyle, list[np.ndarray]],
) -> None:
    style, unseen = daylight
    loaded = style_model.load(style_model.save(style))
    assert isinstance(loaded, style_model.LutStyle) and loaded.coverage is not None
    assert torch.equal(loaded.coverage.befores, style.coverage.befores)  # type: ignore[union-attr]
    photos = [unseen[0], shifted(unseen[0], -3.0)]
    assert [round(c.value, 6) for c in confidences(loaded, photos)] == [
        round(c.value, 6) for c in confidences(style, photos)
    ]
    # The LUTs are those of luts_for: one thumbnail makes both.
    assert all(
        torch.equal(e.lut, lut) for e, lut in zip(loaded.edits_for(photos), loaded.luts_for(photos), strict=True)
    )


def old_model_file(style: style_model.LutStyle) -> bytes:
    """The bytes a worker wrote before confidence existed: no ``coverage`` key."""
    archive = {"format": "apelier-style", "version": 1, **style.to_archive()}
    archive.pop("coverage", None)
    buf = io.BytesIO()
    torch.save(archive, buf)
    return buf.getvalue()


def test_an_old_model_file_loads_and_gives_no_confidence(
    daylight: tuple[style_model.LutStyle, list[np.ndarray]],
) -> None:
    style, unseen = daylight
    loaded = style_model.load(old_model_file(style))
    assert isinstance(loaded, style_model.LutStyle) and loaded.coverage is None
    edit = loaded.edits_for([unseen[0]])[0]
    assert edit.confidence is None
    assert np.array_equal(loaded.apply(unseen[0], "cpu"), style.apply(unseen[0], "cpu"))
    frame = Frame("p", "a.jpg", shifted(unseen[0], -3.0), SourceInfo("JPEG", 1, 1))
    style_phase.run([frame], PhaseContext(style_model=loaded))
    assert frame.report["style"] == {"applied": True, "method": "lut3d", "confidence": None}
    assert review(frame.report) == (None, [])


def archive_of(style: style_model.LutStyle) -> dict:
    return {"format": "apelier-style", "version": 1, **style.to_archive()}


def as_bytes(archive: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(archive, buf)
    return buf.getvalue()


def test_a_newer_coverage_record_is_ignored_and_a_malformed_one_refused(
    daylight: tuple[style_model.LutStyle, list[np.ndarray]],
) -> None:
    style, _ = daylight
    archive = archive_of(style)
    archive["coverage"]["version"] = confidence.VERSION + 1
    loaded = style_model.load(as_bytes(archive))
    assert isinstance(loaded, style_model.LutStyle) and loaded.coverage is None
    for breakage in ("shape", "nan", "missing"):
        archive = archive_of(style)
        if breakage == "shape":
            archive["coverage"]["colours"] = torch.zeros(7)
        elif breakage == "nan":
            archive["coverage"]["afters"] = torch.full_like(archive["coverage"]["afters"], float("nan"))
        else:
            del archive["coverage"]["befores"]
        with pytest.raises(ModelFileError, match="malformed coverage record; retrain the style"):
            style_model.load(as_bytes(archive))


def test_the_phase_sends_an_unsure_photo_to_review(daylight: tuple[style_model.LutStyle, list[np.ndarray]]) -> None:
    style, unseen = daylight
    day = Frame("d", "day.jpg", unseen[3].copy(), SourceInfo("JPEG", 1, 1))
    night = Frame("n", "night.jpg", shifted(unseen[3], -3.0), SourceInfo("JPEG", 1, 1))
    style_phase.run([day, night], PhaseContext(style_model=style))
    assert day.report["style"]["confidence"] > 0.5 and "needs_review" not in day.report["style"]
    entry = night.report["style"]
    assert entry["applied"] is True and entry["confidence"] < 0.5
    assert set(entry["signals"]) == {
        "estimated_error",
        "tone_error",
        "unseen_colour_error",
        "uncovered_colours",
        "cast_spreads",
        "exposure_stops_outside",
    }
    assert "the style is unsure of this photo" in entry["needs_review"]
    confidence_value, reasons = review(night.report)
    assert confidence_value == entry["confidence"] and reasons == [f"style: {entry['needs_review']}"]

    # The threshold is the job's setting: with 0 no photo goes to review.
    never = Frame("n", "night.jpg", shifted(unseen[3], -3.0), SourceInfo("JPEG", 1, 1))
    style_phase.run([never], PhaseContext(style_model=style, edit=EditSettings(style_review_threshold=0.0)))
    assert never.report["style"]["confidence"] == entry["confidence"] and "needs_review" not in never.report["style"]


def test_the_threshold_setting_is_resolved_and_checked() -> None:
    assert EditSettings().style_review_threshold == 0.5
    assert EditSettings.resolve({"style_review_threshold": 0.7}).style_review_threshold == 0.7
    bad = EditSettings.resolve({"style_review_threshold": 2})
    assert bad.style_review_threshold == 0.5 and bad.ignored == ("style_review_threshold=2",)


def test_a_histogram_style_gives_no_confidence(coffee: np.ndarray, astronaut: np.ndarray) -> None:
    hist = style_histogram.fit([coffee])
    edit = hist.edits_for([astronaut])[0]
    assert edit.confidence is None and torch.equal(edit.lut, hist.lut_for(astronaut))


def test_signals_on_synthetic_thumbnails() -> None:
    """The coverage of a record of mid-grey befores and afters: a mid-grey photo through the identity
    is like them; a black one is far below their exposure and its result far below their blacks; a
    saturated red one has no covered colour, which costs nothing when the LUT leaves it alone and
    much when the LUT moves it."""
    torch.manual_seed(0)
    grey = torch.full((3, 3, 64, 64), 0.5) + 0.02 * torch.randn(3, 3, 64, 64)
    record = confidence.Coverage.fit(grey, grey)
    identity = lut3d.identity_lut(9).unsqueeze(0)
    same, black = record.assess(
        torch.stack([grey[0], torch.full((3, 64, 64), 0.02)]), identity.expand(2, -1, -1, -1, -1)
    )
    assert same.value == pytest.approx(1.0) and same.uncovered == 0.0 and same.exposure == 0.0
    assert black.exposure < -5 and black.tone > 0.3 and black.value < 0.2
    assert "stops darker than any photo it was trained on" in black.reason(0.5)

    red = torch.full((1, 3, 64, 64), 0.5)
    red[:, 0] = 0.95
    red[:, 1:] = 0.45  # a mid-tone red: its luminance is like the greys'
    (left,) = record.assess(red, identity)
    moved = identity.clone()
    moved[:, 1] = (moved[:, 1] + 0.3).clamp(0, 1)  # the look turns every colour greener
    (turned,) = record.assess(red, moved)
    assert left.uncovered == turned.uncovered == 1.0
    assert left.colours == pytest.approx(0.0, abs=1e-6) and turned.colours > 0.25 and turned.value < left.value
    assert "of its colours are in none of the training photos" in turned.reason(0.5)
