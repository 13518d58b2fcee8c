"""Phase 1 — style: apply the photographer's learned look, or pass the photo through.

The job's style model (loaded once per job from its style profile) is in
``ctx.style_model``. Without one the photo passes through untouched and the
report says why, so the app can tell "no style" from "style applied".

A batch's LUTs come from one call (:meth:`~worker.style.model.Style.edits_for`: the photos'
thumbnails on the photo threads, the model once for all); each photo is then rendered
through its LUT: on the photo threads with Pillow on the CPU, one photo at a time on a GPU
(each photo goes up and comes back down, 72 MB each way at 24 MP).

Each styled photo's report carries ``confidence`` (0–1, ``worker/style/confidence.py``; None when
the model keeps no record of its training pairs) and, below the job's
``EditSettings.style_review_threshold``, ``needs_review`` with the reason: the photo is unlike the
pairs the style learned from. The photo row's ``edit_confidence`` and ``needs_review`` come from
there (``worker/jobs/gallery.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from worker.frame import Frame, Image
from worker.phases import PhaseContext
from worker.style.confidence import StyleEdit
from worker.style.render import Each, render

NAME = "style"


class StyleModel(Protocol):
    name: str

    def edits_for(self, images: Sequence[Image], device: str, each: Each) -> list[StyleEdit]:
        """One ``3×D×D×D`` LUT per photo, with its confidence when the model can give one."""
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
    edits = model.edits_for([frame.image for frame in frames], device, ctx.each)
    threshold = ctx.edit.style_review_threshold

    def paint(job: tuple[Frame, StyleEdit]) -> None:
        frame, edit = job
        frame.image = render(edit.lut, frame.image, device)
        frame.report[NAME] = report(model.name, edit, threshold)

    jobs = list(zip(frames, edits, strict=True))
    if torch.device(device).type == "cuda":
        for job in jobs:
            paint(job)
    else:
        ctx.each(paint, jobs)


def report(method: str, edit: StyleEdit, threshold: float) -> dict[str, Any]:
    """A styled photo's ``report["style"]``: the method, the confidence and its signals, and
    ``needs_review`` when the confidence is below ``threshold``."""
    entry: dict[str, Any] = {"applied": True, "method": method, "confidence": None}
    c = edit.confidence
    if c is None:
        return entry
    entry["confidence"] = round(c.value, 3)
    entry["signals"] = c.to_json()
    if c.value < threshold:
        entry["needs_review"] = c.reason(threshold)
    return entry
