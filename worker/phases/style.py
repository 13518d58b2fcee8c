"""Phase 1 — style: apply the photographer's learned look, or pass the photo through.

The job's style model (loaded once per job from its style profile) is in
``ctx.style_model``. Without one the photo passes through untouched and the
report says why, so the app can tell "no style" from "style applied".

A batch's LUTs come from one call (:meth:`~worker.style.model.Style.luts_for`: the photos'
thumbnails on the photo threads, the model once for all); each photo is then rendered
through its LUT: on the photo threads with Pillow on the CPU, one photo at a time on a GPU
(each photo goes up and comes back down, 72 MB each way at 24 MP).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from worker.frame import Frame, Image
from worker.phases import PhaseContext
from worker.style.render import Each, render

NAME = "style"


class StyleModel(Protocol):
    name: str

    def luts_for(self, images: Sequence[Image], device: str, each: Each) -> list[Tensor]:
        """One ``3×D×D×D`` LUT per photo."""
        ...


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    model: StyleModel | None = ctx.style_model
    if model is None:
        for frame in frames:
            frame.report[NAME] = {"applied": False, "reason": ctx.style_note}
            if ctx.style_expected:
                frame.report[NAME]["needs_review"] = ctx.style_note
        return
    device = ctx.models.device
    luts = model.luts_for([frame.image for frame in frames], device, ctx.each)

    def paint(job: tuple[Frame, Tensor]) -> None:
        frame, lut = job
        frame.image = render(lut, frame.image, device)
        frame.report[NAME] = {"applied": True, "method": model.name}

    jobs = list(zip(frames, luts, strict=True))
    if torch.device(device).type == "cuda":
        for job in jobs:
            paint(job)
    else:
        ctx.each(paint, jobs)
