"""Rendering a photo through its LUT, shared by every style method and by phase 1."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import torch
from torch import Tensor

from worker.frame import Image
from worker.models import lut3d

_I = TypeVar("_I")
_T = TypeVar("_T")


class Each(Protocol):
    """Maps a function over a batch's photos, in order (phase 1 passes ``PhaseContext.each``)."""

    def __call__(self, fn: Callable[[_I], _T], items: Sequence[_I], /) -> list[_T]: ...


def one_by_one(fn: Callable[[_I], _T], items: Sequence[_I], /) -> list[_T]:
    return [fn(item) for item in items]


def render(lut: Tensor, image: Image, device: str) -> Image:
    """``image`` through one LUT: ``grid_sample`` on a GPU, Pillow's ``Color3DLUT`` on the CPU."""
    if torch.device(device).type == "cuda":
        return lut3d.apply_lut_image_torch(lut, image, device)
    return lut3d.apply_lut_image_pillow(lut, image)
