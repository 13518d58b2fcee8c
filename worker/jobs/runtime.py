"""What every job runner shares: the warm runtime and the reasons a job must stop early."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from worker.models.bundle import ModelBundle
from worker.service.config import Settings
from worker.storage.base import Storage

# Job states (from the queue functions) that mean "stop working on this job".
STOP_STATES = {"canceled", "lost", "deleted", "queued", "failed", "completed", "delivered"}


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

    def should_stop(self) -> bool:
        return self.shutdown.is_set() or self._state is not None
