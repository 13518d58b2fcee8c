"""Phase 1 — style: apply the photographer's learned look, or pass the photo through.

The job's style model (loaded once per job from its style profile) is in
``ctx.style_model``. Without one the photo passes through untouched and the
report says why, so the app can tell "no style" from "style applied".
"""

from __future__ import annotations

from typing import Protocol

from worker.frame import Frame, Image
from worker.phases import PhaseContext

NAME = "style"


class StyleModel(Protocol):
    name: str

    def apply(self, image: Image, device: str) -> Image:
        """The edited image, same shape and dtype."""
        ...


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    model: StyleModel | None = ctx.style_model
    for frame in frames:
        if model is None:
            frame.report[NAME] = {"applied": False, "reason": ctx.style_note}
            if ctx.style_expected:
                frame.report[NAME]["needs_review"] = ctx.style_note
            continue
        frame.image = model.apply(frame.image, ctx.models.device)
        frame.report[NAME] = {"applied": True, "method": model.name}
