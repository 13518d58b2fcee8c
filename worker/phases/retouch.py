"""Phase 2 — retouch: restore and smooth faces, subtly, and paste them back seamlessly."""

from __future__ import annotations

from worker.frame import Frame
from worker.phases import PhaseContext

NAME = "retouch"


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    for frame in frames:
        if ctx.edit.retouch_intensity == "off":
            frame.report[NAME] = {"applied": False, "reason": "retouch_intensity is off", "faces": []}
            continue
        frame.report[NAME] = {
            "applied": False,
            "reason": "no face restorer loaded" if frame.faces else "no faces",
            "faces": [{"box": f.to_json()["box"], "method": "skipped"} for f in frame.faces],
        }
