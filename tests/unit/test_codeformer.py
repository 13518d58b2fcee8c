"""CodeFormer: the architecture written here is the official one, key by key and number by number.

``../shared/models`` holds the official model's key list and its output for a fixed
weight fill and input (see its README). Matching that output proves the architecture
(attention layout, AdaIN, fusion points, padding) — not just the shapes — is the same.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.errors import ModelFileError
from worker.models import codeformer as cf

SHARED_MODELS = Path(__file__).resolve().parents[3] / "shared" / "models"


@pytest.fixture(scope="module")
def reference_keys() -> dict[str, tuple[int, ...]]:
    tsv = SHARED_MODELS / "codeformer_state_dict.tsv"
    if not tsv.is_file():
        pytest.skip(f"CodeFormer reference not found at {SHARED_MODELS}")
    rows = [line.rstrip("\n").split("\t") for line in tsv.read_text().splitlines()[1:] if line.strip()]
    return {key: tuple(int(s) for s in shape.split("x")) for key, shape, _dtype in rows}


def _fixed_fill(keys: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The deterministic weights of ../shared/models/README.md."""
    state = {}
    for key, shape in keys.items():
        r = torch.randn(shape, generator=torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8"))))
        state[key] = 1 + 0.02 * r if key.endswith(".weight") and len(shape) == 1 else 0.02 * r
    return state


def test_state_dict_has_exactly_the_official_keys_and_shapes(reference_keys):
    mine = cf.state_dict_shapes(cf.CodeFormer())
    assert sorted(mine) == sorted(reference_keys)
    assert {k: tuple(v) for k, v in mine.items()} == reference_keys


@pytest.mark.slow  # two CPU forward passes at 512²: ~35 s on two cores
def test_reproduces_the_official_output_and_codes(reference_keys):
    model = cf.codeformer(_fixed_fill(reference_keys))  # strict load
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1234)) * 2 - 1
    for w in (0.0, 0.7):
        with torch.inference_mode():
            out, logits, _ = model(x, w=w, adain=True)
        expected = np.load(SHARED_MODELS / f"codeformer_ref_out_w{w}.npy").astype(np.float32)
        codes = np.load(SHARED_MODELS / f"codeformer_ref_idx_w{w}.npy")
        assert np.abs(out[0].numpy() - expected).max() < 2e-3, f"w={w}"
        np.testing.assert_array_equal(logits.argmax(-1).flatten().numpy(), codes.astype(np.int64))


def test_checkpoint_filter_picks_params_ema():
    ema = {"a": torch.zeros(1)}
    assert cf.checkpoint_filter({"params_ema": ema, "params": {"b": torch.zeros(1)}}) == ema
    assert cf.checkpoint_filter({"params": ema}) == ema
    assert cf.checkpoint_filter(ema) == ema
    with pytest.raises(ModelFileError):
        cf.checkpoint_filter({"optimizer": "state", "iter": 3})


def test_a_foreign_state_dict_is_refused_in_one_line():
    with pytest.raises(ModelFileError, match="does not match"):
        cf.codeformer({"encoder.blocks.0.weight": torch.zeros(64, 3, 3, 3)})


def test_restorer_takes_and_returns_uint8_rgb_crops():
    class Echo(torch.nn.Module):
        """Returns its input: checks the [-1, 1] round trip and the layout, not the network."""

        def forward(self, x, w=0.0, adain=True):
            return x, None, None

    restorer = cf.CodeFormerRestorer(Echo(), batch_size=2)  # type: ignore[arg-type]
    faces = np.random.default_rng(0).integers(0, 256, (3, 512, 512, 3), dtype=np.uint8)
    out = restorer.restore(faces, fidelity=0.7)
    np.testing.assert_array_equal(out, faces)
    with pytest.raises(ValueError):
        restorer.restore(faces[:, :256], fidelity=0.7)


@pytest.mark.gpu
def test_half_precision_on_gpu_stays_close_to_float32():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    # The reference fill over the architecture's own keys: no reference data needed on the GPU box.
    state = _fixed_fill({k: tuple(s) for k, s in cf.state_dict_shapes(cf.codeformer()).items()})
    faces = np.random.default_rng(1).integers(0, 256, (4, 512, 512, 3), dtype=np.uint8)
    cpu = cf.CodeFormerRestorer(cf.codeformer(state, "cpu"), "cpu").restore(faces[:1], 0.7)
    gpu = cf.CodeFormerRestorer(cf.codeformer(state, "cuda"), "cuda").restore(faces, 0.7)
    assert np.abs(gpu[:1].astype(int) - cpu.astype(int)).mean() < 2.0
