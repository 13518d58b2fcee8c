"""What every job runner shares: the warm runtime, the reasons a job must stop early, how a run ended."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from worker.models.bundle import ModelBundle
from worker.service.config import Settings
from worker.storage.base import Storage

# Job states (from the queue functions) that mean "stop working on this job".
STOP_STATES = {"canceled", "lost", "deleted", "queued", "failed", "completed", "delivered"}
# Those that mean "canceled". The app cancels with status='failed' (error_log 'Cancelled by user') and
# never clears locked_by, so a job still leased to this worker that reads 'failed' was failed by the
# app: the worker's own failures let go of the job in the same statement. Since migration 10 the
# queue answers 'canceled' for it; an older schema answers 'failed'.
CANCEL_STATES = {"canceled", "failed"}

# How a run ended without raising: completed (a chunk: its photos are done); released (shutdown: the
# job is queued again); canceled (by the app); lost (another worker owns the job now, or its row is
# gone: nothing more was written); split (its photos are now chunks that any worker claims).
OutcomeStatus = Literal["completed", "released", "canceled", "lost", "split"]


@dataclass(frozen=True)
class JobOutcome:
    """How a job run ended, for the daemon (a run that raises has failed instead).

    The counts are the job's units: photos for a gallery job, pairs (or references) for a style.
    """

    status: OutcomeStatus
    processed: int = 0
    failed: int = 0
    skipped: int = 0  # already done by an earlier attempt
    total: int = 0
    wall_s: float = 0.0
    phase_s: dict[str, float] = field(default_factory=dict)  # summed over photos


@dataclass
class Runtime:
    """Loaded once at daemon start, shared by every job."""

    settings: Settings
    storage: Storage
    models: ModelBundle


@dataclass
class JobControl:
    """Why a running job must stop: shutdown (SIGTERM) or the job's state changed under it."""

    shutdown: threading.Event = field(default_factory=threading.Event)
    _state: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def saw_state(self, state: str) -> None:
        """Record a job state read from the database; a stop state makes the job stop."""
        if state in STOP_STATES:
            with self._lock:
                if self._state is None:
                    self._state = state

    @property
    def job_state(self) -> str | None:
        """The stop state seen (``canceled``, ``lost``, ``deleted``…), or None while the job may go on."""
        return self._state

    @property
    def canceled(self) -> bool:
        """The job was canceled, by ``apelier.cancel_job`` or by the app (``status='failed'``)."""
        return self._state in CANCEL_STATES

    def should_stop(self) -> bool:
        return self.shutdown.is_set() or self._state is not None
