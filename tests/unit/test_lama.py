"""LaMa loading and calling, exercised with a tiny TorchScript stand-in of our own.

The stand-in has LaMa's TorchScript signature — ``forward(image[1,3,H,W] in [0,1],
mask[1,1,H,W] in {0,1}) -> [1,3,H,W] in [0,1]`` — and fills the mask with the mean colour
of the unmasked pixels, so its output can be predicted exactly.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.cleanup.inpaint import fill_regions
from worker.cleanup.opencv_inpaint import OpenCVInpainter
from worker.cleanup.region import Region
from worker.errors import ConfigError, ModelFileError
from worker.models import bundle
from worker.models.lama import FILENAME, LamaInpainter, load_lama
from worker.service.config import Settings


class MeanFill(torch.nn.Module):
    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - mask
        mean = (image * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
        return image * keep + mean * mask


class WrongShape(torch.nn.Module):
    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return image[:, :, ::2, ::2]


def save_scripted(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():  # TorchScript is deprecated (torch 2.11: DeprecationWarning, 2.14: FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


@pytest.fixture()
def tiny_lama(tmp_path: Path) -> Path:
    return save_scripted(MeanFill(), tmp_path / FILENAME)


def test_tiny_torchscript_goes_through_the_lama_loader(tiny_lama: Path, coffee: np.ndarray) -> None:
    model = load_lama(tiny_lama, "cpu")
    assert isinstance(model, LamaInpainter) and model.name == "lama"
    crop = np.ascontiguousarray(coffee[:256, :320])
    mask = np.zeros(crop.shape[:2], np.uint8)
    mask[100:140, 50:300] = 1
    out = model.inpaint(crop, mask)
    assert out.shape == crop.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[mask == 0], crop[mask == 0])
    expected = crop[mask == 0].astype(np.float64).mean(axis=0)
    assert np.abs(out[mask == 1].astype(np.float64) - expected).max() <= 1.0


def test_lama_refuses_sides_that_are_not_multiples_of_8(tiny_lama: Path) -> None:
    model = load_lama(tiny_lama, "cpu")
    with pytest.raises(ValueError, match="multiples of 8"):
        model.inpaint(np.zeros((30, 32, 3), np.uint8), np.zeros((30, 32), np.uint8))


def test_a_file_that_is_not_torchscript_is_a_model_file_error(tmp_path: Path) -> None:
    bad = tmp_path / FILENAME
    bad.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ModelFileError, match="not a TorchScript file"):
        load_lama(bad, "cpu")


def test_a_module_with_the_wrong_output_is_a_model_file_error(tmp_path: Path) -> None:
    model = load_lama(save_scripted(WrongShape(), tmp_path / FILENAME), "cpu")
    with pytest.raises(ModelFileError, match="returned shape"):
        model.inpaint(np.zeros((32, 32, 3), np.uint8), np.ones((32, 32), np.uint8))


def test_fill_regions_with_tiny_lama_changes_only_the_edit_mask(tiny_lama: Path, coffee: np.ndarray) -> None:
    model = load_lama(tiny_lama, "cpu")
    mask = np.zeros((40, 200), bool)
    mask[18:22, :] = True
    region = Region("power_line", (100, 200, 300, 240), mask, 0.9)
    out, stats = fill_regions(coffee, [region], model)
    changed = (out != coffee).any(axis=2)
    assert changed[200:240, 100:300][mask].mean() > 0.9
    allowed = np.zeros(coffee.shape[:2], bool)
    allowed[198:242, 98:302] = True  # the detector mask grown by the 2 px feather
    assert not changed[~allowed].any()
    assert stats.crops >= 1


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings.from_env({}, models_dir=tmp_path, data_dir=tmp_path, device="cpu", **kw)


def test_bundle_loads_lama_when_asked_for_and_present(
    tiny_lama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.models import registry

    checked: list[str] = []

    def verify(name: str, models_dir: Path) -> Path:  # the stand-in is not the published file
        checked.append(name)
        return Path(models_dir) / FILENAME

    monkeypatch.setattr(registry, "verify", verify)
    models = bundle.load(_settings(tmp_path, inpainter="lama"))
    assert isinstance(models.inpainter, LamaInpainter)
    assert models.describe()["inpainter"] == "lama"
    assert checked == ["big-lama"]


def test_a_big_lama_that_fails_its_hash_is_refused(tiny_lama: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="md5"):
        bundle.load(_settings(tmp_path, inpainter="lama"))


def test_bundle_on_cpu_prefers_opencv_even_with_the_weights(tiny_lama: Path, tmp_path: Path) -> None:
    models = bundle.load(_settings(tmp_path))
    assert isinstance(models.inpainter, OpenCVInpainter)
    assert any("no GPU" in note for note in models.notes)


def test_bundle_without_weights_falls_back_to_opencv_and_says_so(tmp_path: Path) -> None:
    models = bundle.load(_settings(tmp_path))
    assert models.describe()["inpainter"] == "classical"
    assert any("LaMa weights absent" in note for note in models.notes)


def test_bundle_asked_for_lama_without_weights_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WORKER_INPAINTER=lama"):
        bundle.load(_settings(tmp_path, inpainter="lama"))


def test_settings_read_worker_inpainter() -> None:
    assert Settings.from_env({"WORKER_INPAINTER": "OpenCV"}).inpainter == "opencv"
    with pytest.raises(ConfigError, match="WORKER_INPAINTER"):
        Settings.from_env({"WORKER_INPAINTER": "photoshop"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_lama_on_the_gpu(tiny_lama: Path) -> None:
    model = load_lama(tiny_lama, "cuda")
    crop = np.full((1024, 1024, 3), 200, np.uint8)
    mask = np.zeros((1024, 1024), np.uint8)
    mask[500:510] = 1
    out = model.inpaint(crop, mask)
    assert out.shape == crop.shape
    assert (out == 200).all()


def test_calls_run_without_the_jit_optimising_executor() -> None:
    """It recompiles for seconds at every new crop size (docs/benchmarks.md); the worker turns it off per call."""
    seen: list[bool] = []

    class Probe(torch.nn.Module):
        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            seen.append(torch._C._get_graph_executor_optimize())
            return image

    crop = np.full((16, 24, 3), 7, np.uint8)
    out = LamaInpainter(Probe()).inpaint(crop, np.zeros((16, 24), np.uint8))
    np.testing.assert_array_equal(out, crop)
    LamaInpainter(Probe(), jit_optimize=True).inpaint(crop, np.zeros((16, 24), np.uint8))
    assert seen == [False, True]
    assert torch._C._get_graph_executor_optimize()  # the process-wide setting is left as it was
