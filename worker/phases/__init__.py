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

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from typing import Any, TypeVar

from worker.models.bundle import ModelBundle
from worker.profile import EditSettings
from worker.service import logs

_T = TypeVar("_T")
_I = TypeVar("_I")

PHASES: tuple[str, ...] = ("analysis", "style", "retouch", "cleanup", "composition", "output")


def review(report: dict[str, dict[str, Any]]) -> tuple[float | None, list[str]]:
    """A photo's report → (its edit confidence: the lowest any phase gave, or None; why it needs review).

    A phase asks for review with ``report[phase]["needs_review"]`` (the reason) and gives a
    confidence with ``report[phase]["confidence"]`` (0–1); the photo row's ``edit_confidence`` and
    ``needs_review`` and the ``process`` report come from here.
    """
    reasons: list[str] = []
    confidences: list[float] = []
    for phase in PHASES:
        entry = report.get(phase, {})
        if entry.get("needs_review"):
            reasons.append(f"{phase}: {entry['needs_review']}")
        value = entry.get("confidence")
        if isinstance(value, int | float) and not isinstance(value, bool):
            confidences.append(float(value))
    return (round(min(confidences), 3) if confidences else None), reasons


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
    # Threads for a batch phase's per-photo CPU work (the pipeline's, ``WORKER_PHOTO_THREADS``);
    # None: the photos of a batch one after another.
    photo_pool: Executor | None = None

    def each(self, fn: Callable[[_I], _T], items: Sequence[_I]) -> list[_T]:
        """``fn`` over ``items`` (a batch's frames, or their photos), results in photo order: on
        :attr:`photo_pool` when there is one.

        ``fn`` must touch only the item it is given (and thread-safe state). Every call finishes
        before a failure is raised (the first in photo order), so no thread is still editing a frame
        when the pipeline puts a failed batch back as it was to rerun it photo by photo.
        """
        if self.photo_pool is None or len(items) < 2:
            return [fn(item) for item in items]
        futures = [logs.submit(self.photo_pool, fn, item) for item in items]
        wait_all(futures)
        return [future.result() for future in futures]
