"""Failures, typed, and the one place that decides what each one means.

Two questions decide what happens after an exception:

* **scope** — does it spoil one photo (a truncated JPEG) or the whole job
  (storage unreachable, the database gone)?
* **retryable** — can the same work succeed later (a timeout, a 503) or never
  (a text file named ``.jpg``, a key outside the photographer's folder)?

A photo failure never fails its gallery: the photo is marked ``needs_review``
with the reason and the others go on. A job failure puts the job back in the
queue with a backoff while attempts remain (:class:`RetryStrategy`), else marks
it ``failed`` with the reason. Messages are written for the person who reads
them: what went wrong and what to do, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["photo", "job"]


class WorkerError(Exception):
    """Base of every error this package raises on purpose."""

    scope: Scope = "job"
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(WorkerError):
    """The settings cannot work; the message names the variable to change."""


class PhotoError(WorkerError):
    """One photo cannot be processed; the gallery goes on without it."""

    scope: Scope = "photo"
    #: Which phase found the problem (``download``, ``analysis``, …).
    phase: str = "analysis"

    def __init__(self, message: str, *, phase: str | None = None) -> None:
        super().__init__(message)
        if phase is not None:
            self.phase = phase


class DecodeError(PhotoError):
    """The bytes are not an image we can read (empty, truncated, not an image, too large)."""


class MissingObjectError(PhotoError):
    """The photo's original is not in storage."""

    phase = "download"


class TenantViolationError(PhotoError):
    """A storage key outside the photographer's own folder: refused, never read."""

    phase = "download"


class StorageError(WorkerError):
    """Storage answered with an error that retrying will not fix (4xx)."""


class TransientStorageError(StorageError):
    """Storage timed out or answered 5xx/429 after every retry; the job can run again later."""

    retryable = True


class JobCanceled(WorkerError):  # noqa: N818 - a signal, not a failure
    """The job was canceled (by the app) or its lease was taken by another worker."""


class JobInputError(WorkerError):
    """The job row itself cannot run (no gallery, bad payload); retrying will not help."""


class ModelFileError(WorkerError):
    """A model file is missing, corrupt, of a foreign format, or fails its hash."""


class RequestError(WorkerError):
    """A request to the HTTP API (``worker/api/``) that is refused: ``status`` is the HTTP status it gets
    (401 who are you, 403 not yours to ask, 404 no such row of yours, 400/422 a body that cannot be
    queued, 503 the database is unreachable). Nothing was queued."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Failure:
    """What an exception means for the job: decided by :func:`classify` alone."""

    scope: Scope
    retryable: bool
    reason: str
    kind: str


def classify(exc: BaseException) -> Failure:
    """Map any exception to its scope, retryability and a readable one-line reason."""
    if isinstance(exc, WorkerError):
        return Failure(exc.scope, exc.retryable, exc.message, type(exc).__name__)
    # Imported here: every module imports errors.py, and the phases and `process` never need the driver (0.1 s).
    import psycopg  # noqa: PLC0415 - the database driver, only to classify its errors

    if isinstance(exc, psycopg.OperationalError):
        return Failure("job", True, f"database connection lost: {first_line(exc)}", "DatabaseUnavailable")
    if isinstance(exc, MemoryError):
        hint = "lower WORKER_BATCH_SIZE, WORKER_PHASE_LANES or WORKER_PREFETCH_PHOTOS"
        return Failure("job", True, f"out of memory; {hint}", "OOM")
    name = type(exc).__name__
    if name == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
        return Failure("job", True, "GPU out of memory; lower WORKER_BATCH_SIZE or WORKER_PHASE_LANES", "GpuOOM")
    return Failure("job", True, f"internal error {name}: {first_line(exc)}", name)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (at most ``limit`` characters), or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0][:limit] if text else type(exc).__name__


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_s: float


@dataclass(frozen=True)
class RetryStrategy:
    """Exponential backoff for whole jobs: ``base * 2**(attempt-1)``, capped, while attempts remain.

    ``attempts`` is the number of times the job has been claimed, counted by
    the claim itself (so a crash mid-job still used up an attempt); ``max_attempts``
    is the job row's own (the app's default is 3).
    """

    base_delay_s: float = 10.0
    max_delay_s: float = 600.0

    def decide(self, failure: Failure, attempts: int, max_attempts: int) -> RetryDecision:
        if not failure.retryable or attempts >= max_attempts:
            return RetryDecision(False, 0.0)
        delay = min(self.max_delay_s, self.base_delay_s * (2 ** max(0, attempts - 1)))
        return RetryDecision(True, delay)
