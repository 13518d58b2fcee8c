"""The LUT model itself: lookup correctness (torch and Pillow paths), monotonic projection, size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.models import lut3d


def _affine_lut(size: int) -> torch.Tensor:
    """A LUT that is an affine map of RGB: trilinear interpolation reproduces it exactly."""
    ident = lut3d.identity_lut(size)
    m = torch.tensor([[0.8, 0.1, 0.05], [0.05, 0.9, 0.0], [0.0, 0.1, 0.7]])
    out = torch.einsum("ij,jbgr->ibgr", m, ident) + torch.tensor([0.02, 0.0, 0.1]).view(3, 1, 1, 1)
    return out.clamp(0, 1)


def test_identity_lut_leaves_photo_alone(astronaut: np.ndarray) -> None:
    ident = lut3d.identity_lut(33)
    assert np.array_equal(lut3d.apply_lut_image_torch(ident, astronaut, "cpu"), astronaut)
    # Pillow's C lookup works in 16-bit fixed point: at most one level off.
    diff = np.abs(lut3d.apply_lut_image_pillow(ident, astronaut).astype(int) - astronaut)
    assert diff.max() <= 1


def test_trilinear_lookup_is_exact_for_an_affine_look(coffee: np.ndarray) -> None:
    lut = _affine_lut(33)
    x = coffee.reshape(-1, 3).astype(np.float64) / 255.0
    m = np.array([[0.8, 0.1, 0.05], [0.05, 0.9, 0.0], [0.0, 0.1, 0.7]])
    expected = np.clip(np.rint((x @ m.T + [0.02, 0.0, 0.1]) * 255.0), 0, 255).reshape(coffee.shape)
    torch_out = lut3d.apply_lut_image_torch(lut, coffee, "cpu")
    pil_out = lut3d.apply_lut_image_pillow(lut, coffee, threads=2)
    assert np.abs(torch_out.astype(int) - expected).max() <= 1
    assert np.abs(pil_out.astype(int) - expected).max() <= 1


def test_pillow_and_torch_paths_agree_on_a_curvy_lut(astronaut: np.ndarray) -> None:
    ident = lut3d.identity_lut(33)
    lut = (ident**0.7 + 0.05 * torch.sin(6 * ident.flip(0))).clamp(0, 1)
    a = lut3d.apply_lut_image_torch(lut, astronaut, "cpu").astype(int)
    b = lut3d.apply_lut_image_pillow(lut, astronaut, threads=3).astype(int)
    assert np.abs(a - b).max() <= 2
    assert np.abs(a - b).mean() < 0.5


def test_make_monotonic_gives_non_decreasing_responses() -> None:
    torch.manual_seed(0)
    lut = lut3d.identity_lut(9) + 0.2 * torch.randn(3, 9, 9, 9)
    assert lut3d.monotonicity(lut) > 0
    mono = lut3d.make_monotonic(lut)
    assert lut3d.monotonicity(mono) == 0
    assert (mono[0].diff(dim=-1) >= 0).all()
    assert (mono[1].diff(dim=-2) >= 0).all()
    assert (mono[2].diff(dim=-3) >= 0).all()
    # A LUT that is already monotonic is unchanged.
    assert torch.equal(lut3d.make_monotonic(lut3d.identity_lut(9)), lut3d.identity_lut(9))


def test_fresh_model_is_the_identity_and_small(astronaut: np.ndarray) -> None:
    model = lut3d.build().eval()
    assert lut3d.parameter_count(model) < 1_000_000
    with torch.no_grad():
        lut = model(lut3d.thumbnail(astronaut).unsqueeze(0))[0]
        # The encoder starts with tiny random outputs: close to, not exactly, the identity.
        assert torch.allclose(lut, lut3d.identity_lut(33), atol=0.01)
        zeros = torch.zeros(1, model.n_gains + model.config.bases)
        assert torch.allclose(model.fuse(zeros)[0], lut3d.identity_lut(33), atol=1e-5)


@pytest.mark.parametrize("grid", [9, 17])
def test_coarse_global_grid_upsamples_to_the_identity(grid: int) -> None:
    model = lut3d.build(lut3d.LUT3DConfig(global_grid=grid, basis_grid=grid)).eval()
    lut = model.fuse(torch.zeros(1, model.config.bases + model.n_gains))[0]
    assert lut.shape == (3, 33, 33, 33)
    assert torch.allclose(lut, lut3d.identity_lut(33), atol=1e-5)


def test_thumbnail_shape_and_range(astronaut: np.ndarray) -> None:
    big = np.repeat(np.repeat(astronaut, 3, axis=0), 2, axis=1)  # 1536×1024
    thumb = lut3d.thumbnail(big)
    assert thumb.shape == (3, 256, 256)
    assert float(thumb.min()) >= 0.0 and float(thumb.max()) <= 1.0
    assert abs(float(thumb.mean()) - astronaut.mean() / 255.0) < 0.01


def test_smoothness_is_zero_for_a_constant_residual_and_grows_with_noise() -> None:
    flat = torch.full((3, 9, 9, 9), 0.1)
    assert float(lut3d.smoothness(flat)) == 0.0
    noisy = flat + 0.05 * torch.randn(3, 9, 9, 9)
    assert float(lut3d.smoothness(noisy)) > 0.01


@pytest.mark.parametrize(("global_grid", "basis_grid"), [(9, 9), (17, 9), (9, 5)])
def test_lookup_in_the_coarse_grid_equals_lookup_in_its_upsampling(global_grid: int, basis_grid: int) -> None:
    """Training looks pixels up in the look's own grid (``raw(coarse=True)``); phase 1 in the fused 33³ one."""
    torch.manual_seed(0)
    model = lut3d.build(lut3d.LUT3DConfig(global_grid=global_grid, basis_grid=basis_grid))
    with torch.no_grad():
        model.global_lut.add_(0.05 * torch.randn_like(model.global_lut))
        model.bases.normal_(0.0, 0.05)
    w = torch.randn(2, lut3d.N_GAINS + model.config.bases)
    pixels = torch.rand(2, 5000, 3)
    coarse = model.raw(w, coarse=True)
    assert coarse.shape[-1] == model.coarse_grid == max(global_grid, basis_grid)
    full = model.raw(w)
    assert full.shape[-1] == model.config.lut_size
    torch.testing.assert_close(lut3d.apply_lut(coarse, pixels), lut3d.apply_lut(full, pixels), atol=1e-5, rtol=0)


def test_the_coarse_grid_is_the_finer_of_grids_that_nest() -> None:
    assert lut3d.build(lut3d.LUT3DConfig(global_grid=17, basis_grid=9)).coarse_grid == 17
    assert lut3d.build(lut3d.LUT3DConfig(global_grid=9, basis_grid=5)).coarse_grid == 9
    model = lut3d.build(lut3d.LUT3DConfig(global_grid=9, basis_grid=7))  # 8 is not a multiple of 6
    assert model.coarse_grid is None
    w = torch.zeros(1, lut3d.N_GAINS + model.config.bases)
    assert model.raw(w, coarse=True).shape[-1] == model.config.lut_size
    assert lut3d.build(lut3d.LUT3DConfig(global_grid=10, basis_grid=10)).coarse_grid is None  # 32 is no multiple of 9


def test_pooled_is_the_encoders_view_of_the_thumbnail(astronaut: np.ndarray) -> None:
    crop = astronaut[37:451, 20:390]
    view = torch.nn.functional.avg_pool2d(lut3d.thumbnail(crop).unsqueeze(0), lut3d.POOL)[0]
    small = lut3d.pooled(crop)
    assert small.shape == view.shape == (3, lut3d.THUMB // lut3d.POOL, lut3d.THUMB // lut3d.POOL)
    assert (small - view).abs().mean() < 1.0 / 255
    model = lut3d.build().eval()
    with torch.no_grad():  # the encoder takes either
        torch.testing.assert_close(model(view.unsqueeze(0)), model(lut3d.thumbnail(crop).unsqueeze(0)))
