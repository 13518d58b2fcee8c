"""The six phases, in order. Each module exposes ``run(frames, ctx) -> None``.

``run`` receives a batch of frames (a single photo is a batch of one) and the
job's :class:`PhaseContext`. It replaces ``frame.image`` with its edited version
(a new array, or a view of the one it was given, as a crop is; never writing
into it: when a batch fails, the pipeline reruns it photo by photo from the
frames as they were), and records its
decisions in ``frame.report[<name>]``. Phases are pure over frames and
settings: no SQL, no storage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.models.bundle import ModelBundle
from worker.profile import EditSettings

PHASES: tuple[str, ...] = ("analysis", "style", "retouch", "cleanup", "composition", "output")


@dataclass(frozen=True)
class PhaseContext:
    """What a phase may use besides the frames: the job's settings and the warm models."""

    edit: EditSettings = field(default_factory=EditSettings)
    models: ModelBundle = field(default_factory=ModelBundle)
    # The job's style model (phase 1), loaded per job from the style profile; None = pass-through.
    style_model: Any = None
    style_note: str = "no style profile on this job"
    # True when the job asked for a trained style that could not be used: photos go to review.
    style_expected: bool = False
    # The photographer's logo (output.Watermark, prepared once per job), when the job asks for one.
    watermark: Any = None
