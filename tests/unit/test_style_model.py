"""Model files: save → load gives identical output; corrupt, foreign or newer files give ModelFileError."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.errors import ModelFileError, WorkerError
from worker.frame import Frame, SourceInfo
from worker.models import lut3d
from worker.phases import PhaseContext
from worker.phases import style as style_phase
from worker.style import histogram as style_histogram
from worker.style import model as style_model


@pytest.fixture
def lut_style() -> style_model.LutStyle:
    """A model with non-trivial weights (no training needed to test the file format)."""
    torch.manual_seed(3)
    model = lut3d.build()
    with torch.no_grad():
        model.global_lut.copy_(lut3d.identity_lut(model.config.global_grid) ** 0.8)
        model.bases.normal_(0.0, 0.02)
        for p in model.encoder.parameters() if model.encoder is not None else []:
            p.add_(0.05 * torch.randn_like(p))
        model.mean_weights.copy_(0.2 * torch.randn(model.mean_weights.shape))
    model.eval()
    return style_model.LutStyle(model, {"heldout_psnr": 23.4, "pairs_used": 7})


def test_lut_style_round_trips_exactly(lut_style: style_model.LutStyle, astronaut: np.ndarray) -> None:
    data = style_model.save(lut_style)
    loaded = style_model.load(data)
    assert isinstance(loaded, style_model.LutStyle)
    assert loaded.metadata["heldout_psnr"] == 23.4
    before = lut_style.apply(astronaut, "cpu")
    assert not np.array_equal(before, astronaut)
    assert np.array_equal(loaded.apply(astronaut, "cpu"), before)
    assert np.array_equal(loaded.cube(), lut_style.cube())


def test_non_adaptive_flag_survives_save(lut_style: style_model.LutStyle, astronaut: np.ndarray) -> None:
    lut_style.model.adaptive.fill_(False)
    loaded = style_model.load(style_model.save(lut_style))
    assert isinstance(loaded, style_model.LutStyle)
    assert not bool(loaded.model.adaptive)
    # Not adaptive: every photo gets the average LUT.
    assert torch.allclose(loaded.lut_for(astronaut), loaded.model.average_lut())


def test_histogram_style_round_trips(astronaut: np.ndarray, coffee: np.ndarray) -> None:
    hist = style_histogram.fit([coffee])
    loaded = style_model.load(style_model.save(hist))
    assert isinstance(loaded, style_histogram.HistogramStyle)
    assert np.array_equal(loaded.apply(astronaut, "cpu"), hist.apply(astronaut, "cpu"))


def test_file_helpers_write_atomically(lut_style: style_model.LutStyle, tmp_path: Path) -> None:
    path = tmp_path / "styles" / "look.pt"
    style_model.save_file(lut_style, path)
    assert path.is_file() and not path.with_name("look.pt.tmp").exists()
    assert style_model.load_file(path).metadata["pairs_used"] == 7
    with pytest.raises(ModelFileError, match="does not exist"):
        style_model.load_file(tmp_path / "missing.pt")


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def _torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not a model at all", id="text"),
        pytest.param(bytes(range(256)) * 8, id="random-bytes"),
        pytest.param(pickle.dumps({"format": "apelier-style"}), id="plain-pickle"),
        pytest.param(_torch_bytes({"conv.weight": torch.zeros(3)}), id="foreign-torch-file"),
        pytest.param(_torch_bytes(torch.zeros(3)), id="bare-tensor"),
        pytest.param(_torch_bytes({"format": "apelier-style", "version": 99}), id="newer-version"),
        pytest.param(_torch_bytes({"format": "apelier-style", "version": 1, "method": "magic"}), id="unknown-method"),
    ],
)
def test_bad_files_raise_model_file_error(data: bytes) -> None:
    with pytest.raises(ModelFileError) as info:
        style_model.load(data)
    assert isinstance(info.value, WorkerError)
    assert "\n" not in info.value.message


def test_pickled_code_is_never_run(capsys: pytest.CaptureFixture[str]) -> None:
    data = _torch_bytes({"format": "apelier-style", "version": 1, "method": "lut3d", "evil": _Evil()})
    with pytest.raises(ModelFileError):
        style_model.load(data)
    assert "must never run" not in capsys.readouterr().out


def test_truncated_file_is_an_error(lut_style: style_model.LutStyle) -> None:
    data = style_model.save(lut_style)
    with pytest.raises(ModelFileError):
        style_model.load(data[: len(data) // 2])


def test_wrong_shapes_and_non_finite_weights_are_errors(lut_style: style_model.LutStyle) -> None:
    archive = {"format": "apelier-style", "version": 1, **lut_style.to_archive()}
    archive["state"] = dict(archive["state"])
    bases = archive["state"]["bases"]
    archive["state"]["bases"] = torch.zeros(bases.shape[0] + 1, *bases.shape[1:])
    with pytest.raises(ModelFileError, match=r"size mismatch for bases.*retrain the style"):
        style_model.load(_torch_bytes(archive))
    archive["state"]["bases"] = torch.full(bases.shape, float("nan"))
    with pytest.raises(ModelFileError, match="not finite"):
        style_model.load(_torch_bytes(archive))
    del archive["state"]["bases"]
    with pytest.raises(ModelFileError, match=r"Missing key\(s\) in state_dict: \"bases\".*retrain the style"):
        style_model.load(_torch_bytes(archive))


def test_style_phase_applies_the_model(lut_style: style_model.LutStyle, astronaut: np.ndarray) -> None:
    frame = Frame("p1", "a.jpg", astronaut.copy(), SourceInfo("JPEG", 512, 512))
    plain = Frame("p2", "b.jpg", astronaut.copy(), SourceInfo("JPEG", 512, 512))
    style_phase.run([frame], PhaseContext(style_model=lut_style))
    style_phase.run([plain], PhaseContext())
    assert frame.report["style"]["applied"] is True
    assert frame.report["style"]["method"] == "lut3d"
    assert np.array_equal(frame.image, lut_style.apply(astronaut, "cpu"))
    assert plain.report["style"]["applied"] is False
    assert np.array_equal(plain.image, astronaut)


@pytest.mark.parametrize("method", ["lut3d", "histogram"])
def test_a_batch_styled_at_once_on_photo_threads_is_styled_as_one_by_one(
    lut_style: style_model.LutStyle,
    astronaut: np.ndarray,
    coffee: np.ndarray,
    method: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Phase 1 on a batch: thumbnails (or statistics) on the photo threads, the model called once
    for all, each photo rendered on the threads: the pixels of each photo alone (the LUT network on
    a batch rounds differently in the 7th digit: a handful of pixels one level apart)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from worker.style import histogram as style_histogram

    style = lut_style if method == "lut3d" else style_histogram.fit([coffee])
    photos = [astronaut, coffee, astronaut[::-1].copy()]
    frames = [
        Frame(f"p{i}", "x.jpg", p.copy(), SourceInfo("JPEG", p.shape[1], p.shape[0])) for i, p in enumerate(photos)
    ]
    threads: set[str] = set()
    render = style_phase.render

    def spy(lut: torch.Tensor, image: np.ndarray, device: str) -> np.ndarray:
        threads.add(threading.current_thread().name)
        return render(lut, image, device)

    monkeypatch.setattr(style_phase, "render", spy)
    with ThreadPoolExecutor(3, thread_name_prefix="photo") as pool:
        style_phase.run(frames, PhaseContext(style_model=style, photo_pool=pool))
    assert threads and all(name.startswith("photo") for name in threads)
    for frame, photo in zip(frames, photos, strict=True):
        assert frame.report["style"] == {"applied": True, "method": method, "confidence": None}
        alone = style.apply(photo, "cpu").astype(int)
        diff = np.abs(frame.image.astype(int) - alone).max(axis=2)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
