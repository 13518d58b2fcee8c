"""Job progress as the app shows it live: counts per phase, rate, ETA, failures — throttled.

Supabase Realtime sends every UPDATE of ``processing_jobs`` to the subscribed
browsers and bills messages, so :class:`ProgressTracker` writes at most once
per ``interval_s`` (default 0.5 s) per job, plus a final write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.phases import PHASES

MAX_LISTED_FAILURES = 50


@dataclass
class ProgressTracker:
    total: int
    already_done: int = 0  # photos finished by an earlier attempt of this job
    interval_s: float = 0.5
    write: Callable[[ProgressTracker], str] | None = None  # returns the job's state ("processing", …)
    clock: Callable[[], float] = time.monotonic
    row_total: int | None = None  # the job row's total_images as its creator set it (Job.kept_total)

    processed: int = 0  # finished (edited) in this attempt
    failed: int = 0
    phase_done: dict[str, int] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    current_phase: str = "starting"
    failures: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    _started: float = field(default=0.0, init=False)
    _last_write: float = field(default=float("-inf"), init=False)
    last_state: str = field(default="processing", init=False)

    def __post_init__(self) -> None:
        self._started = self.clock()

    # -- events -------------------------------------------------------------------------------
    def phase_finished(self, phase: str, count: int) -> None:
        self.phase_done[phase] = self.phase_done.get(phase, 0) + count
        self.current_phase = phase
        self.maybe_write()

    def photo_done(self, timings: dict[str, float]) -> None:
        self.processed += 1
        self._add_timings(timings)
        self.phase_done["output"] = self.phase_done.get("output", 0) + 1
        self.maybe_write()

    def photo_failed(self, photo_id: str, filename: str, phase: str | None, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append({"photo_id": photo_id, "filename": filename, "phase": phase, "reason": reason})
        self.maybe_write()

    def _add_timings(self, timings: dict[str, float]) -> None:
        for name, seconds in timings.items():
            self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + seconds

    # -- derived ------------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        """Photos the app can show as done: edited now or earlier."""
        return self.already_done + self.processed

    def row_counts(self) -> tuple[int, int]:
        """``(processed_images, total_images)`` for the job row, in the app's terms.

        Without a ``row_total`` they are this tracker's own: photos edited (now or earlier) of the
        job's ``total``. With one (the app set ``total_images`` when it created the job), that total
        stays, and ``processed_images`` is the photos edited, never more than the total: the app's
        bar never passes 100 %, and never counts a photo that is not edited.
        """
        if self.row_total is None:
            return self.finished, self.total
        return min(self.row_total, self.finished), self.row_total

    def eta_s(self) -> float | None:
        elapsed = self.clock() - self._started
        done = self.processed + self.failed
        remaining = self.total - self.already_done - done
        if done == 0 or elapsed <= 0:
            return None
        return max(0.0, remaining * elapsed / done)

    def as_json(self) -> dict[str, Any]:
        elapsed = self.clock() - self._started
        eta = self.eta_s()
        done = self.processed + self.failed
        out: dict[str, Any] = {
            "total": self.total,
            "processed": self.finished,
            "failed": self.failed,
            "resumed_from": self.already_done,
            "phases": {
                phase: {"done": min(self.phase_done.get(phase, 0), self.total), "total": self.total} for phase in PHASES
            },
            "elapsed_s": round(elapsed, 1),
            "photos_per_min": round(60.0 * done / elapsed, 1) if elapsed > 0 and done else None,
            "eta_s": round(eta, 1) if eta is not None else None,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if self.failures:
            out["failures"] = self.failures
        out.update(self.extra)
        return out

    def timings_json(self) -> dict[str, Any]:
        count = max(1, self.processed)
        return {
            name: {"total_s": round(seconds, 3), "mean_ms": round(1000.0 * seconds / count, 1)}
            for name, seconds in self.phase_seconds.items()
        }

    # -- writing ------------------------------------------------------------------------------
    def maybe_write(self, *, force: bool = False) -> str:
        """Write if ``interval_s`` has passed (or ``force``); returns the job state seen last."""
        now = self.clock()
        if self.write is None or (not force and now - self._last_write < self.interval_s):
            return self.last_state
        self._last_write = now
        self.last_state = self.write(self)
        return self.last_state
