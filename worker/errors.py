"""Failures, typed, and the one place that decides what each one means.

Two questions decide what happens after an exception:

* **scope** — does it spoil one photo (a truncated JPEG) or the whole job
  (storage unreachable, the database gone)?
* **retryable** — can the same work succeed later (a timeout, a 503) or never
  (a text file named ``.jpg``, a key outside the photographer's folder)?

and a third for job failures:

* **outside** — is the cause outside the job (the database connection lost,
  storage down after every retry)? Then the attempt is given back: it does not
  use up the job's ``max_attempts``. So is any attempt that edited a photo
  before it failed (the database decides that: ``apelier.end_attempt``).

A photo failure never fails its gallery: the photo is marked ``needs_review``
with the reason and the others go on. A job failure puts the job back in the
queue with a backoff (:class:`RetryStrategy`) while attempts remain, else marks
it ``failed`` with the reason. Messages are written for the person who reads
them: what went wrong and what to do, in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Scope = Literal["photo", "job"]


class WorkerError(Exception):
    """Base of every error this package raises on purpose."""

    scope: Scope = "job"
    retryable: bool = False
    outside: bool = False  # the cause is outside the job (see the module docstring)

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
    outside = True


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


class DatabaseError(WorkerError):
    """The database cannot be used as configured (a malformed ``DATABASE_URL``, a login refused, an
    error the server answered with); the message names what to change. Built by :func:`database_error`."""


class DatabaseUnavailable(DatabaseError):  # noqa: N818 - named as classify() has always reported it
    """The database did not answer (refused, unknown host, timed out) or the connection dropped: later it may."""

    retryable = True
    outside = True


class DatabaseSchemaError(DatabaseError):
    """The database has no worker schema, or another version of it: ``apelier-worker migrate``."""


@dataclass(frozen=True)
class Failure:
    """What an exception means for the job: decided by :func:`classify` alone."""

    scope: Scope
    retryable: bool
    reason: str
    kind: str
    outside: bool = False  # the cause is the infrastructure's, not the job's: the attempt is given back


def classify(exc: BaseException) -> Failure:
    """Map any exception to its scope, retryability and a readable one-line reason."""
    if isinstance(exc, WorkerError):
        return Failure(exc.scope, exc.retryable, exc.message, type(exc).__name__, exc.outside)
    typed = _setup_error(exc)  # a database error our own SQL caused stays an internal error below
    if typed is not None:
        return Failure(typed.scope, typed.retryable, typed.message, type(typed).__name__, typed.outside)
    if isinstance(exc, MemoryError):
        hint = "lower WORKER_BATCH_SIZE, WORKER_PHASE_LANES or WORKER_PREFETCH_PHOTOS"
        return Failure("job", True, f"out of memory; {hint}", "OOM")
    name = type(exc).__name__
    if name == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
        return Failure("job", True, "GPU out of memory; lower WORKER_BATCH_SIZE or WORKER_PHASE_LANES", "GpuOOM")
    return Failure("job", True, f"internal error {name}: {first_line(exc)}", name)


# -- the database ---------------------------------------------------------------------------------------
# What psycopg says (its message, lower-cased) → the reason shown in brackets, for a connection that failed.
_UNREACHABLE = (
    (("connection refused",), "connection refused"),
    (("servname not supported", "invalid port", "invalid integer value"), "the port is not a number"),
    (("timeout expired", "timed out"), "no answer before the connect timeout"),
    (
        (
            "failed to resolve host",
            "could not translate host name",
            "name or service not known",
            "nodename nor servname",
            "temporary failure in name resolution",
            "no address associated",
        ),
        "the host name does not resolve",
    ),
    (("no route to host", "network is unreachable", "cannot assign requested address"), "no route to the host"),
    (("ssl negotiation", "ssl syscall", "ssl error"), "the TLS handshake failed (is it a PostgreSQL server?)"),
    (("the database system is starting up", "the database system is shutting down"), "the server is restarting"),
    (("too many connections", "remaining connection slots"), "the server has no connection slot left"),
)
# The connection worked once and was lost: the worker reconnects by itself.
_LOST = (
    "server closed the connection", "terminating connection", "connection is closed", "consuming input failed",
    "connection is lost", "the connection is closed", "ssl connection has been closed", "could not receive data",
)  # fmt: skip


def database_error(exc: BaseException, url: str | None = None) -> DatabaseError | None:
    """What a psycopg exception means for the person running the worker: a typed error whose one-line
    message says what is wrong and what to do, never the password. ``url``: the ``DATABASE_URL``
    that was used (None: the embedded database, or unknown). None when ``exc`` is not psycopg's.

    The one place that reads psycopg's errors: the CLI catches them at its boundary, ``doctor`` words
    its database line with it, and :func:`classify` decides a job's fate with it.
    """
    typed = _setup_error(exc, url)
    if typed is not None or not _is_psycopg(exc):
        return typed
    where = f"the database at {_display_url(url)}" if url else "the database"
    reason = _first_meaningful_line(_scrub(str(exc), url))
    return DatabaseError(f"{where} answered with an error ({reason}); `apelier-worker doctor` checks the setup")


def _is_psycopg(exc: BaseException) -> bool:
    # Imported here: every module imports errors.py, and the phases and `process` never need the driver (0.1 s).
    import psycopg  # noqa: PLC0415 - the database driver, only to read its errors

    return isinstance(exc, psycopg.Error)


def _setup_error(exc: BaseException, url: str | None = None) -> DatabaseError | None:
    """The typed error for a database that cannot be used as set up (unreachable, a malformed URL, a login
    refused, no schema); None for anything else, an error our own SQL caused included."""
    if not _is_psycopg(exc):
        return None
    import psycopg  # noqa: PLC0415 - the database driver, only to read its errors (see _is_psycopg)
    from psycopg import errors as pg  # noqa: PLC0415 - the same

    where = f"the database at {_display_url(url)}" if url else "the database"
    text = _scrub(str(exc), url)
    lowered = text.lower()
    reason = _first_meaningful_line(text)
    if isinstance(exc, psycopg.ProgrammingError) and (
        "connection info string" in lowered or "invalid uri" in lowered or "invalid connection option" in lowered
        or "invalid dsn" in lowered
    ):  # fmt: skip
        reason = re.sub(r'(after|near) "[^"]*"', r'\1 "…"', reason)  # a piece of the string: the password, maybe
        return DatabaseError(
            f"DATABASE_URL is not a PostgreSQL connection string ({reason}); "
            "set it to postgresql://USER:PASSWORD@HOST:5432/DATABASE"
        )
    if isinstance(exc, pg.UndefinedTable | pg.UndefinedFunction | pg.InvalidSchemaName):
        return DatabaseSchemaError(f"{where} has no worker schema ({reason}): run `apelier-worker migrate`")
    if isinstance(exc, pg.InsufficientPrivilege):
        return DatabaseError(
            f"{where} refused an operation ({reason}): `migrate` and `enqueue` need the database owner's connection "
            "string; for the worker's own role, run `apelier-worker migrate` as the owner so this release's grants "
            "exist (docs/deploy.md §5)"
        )
    if not isinstance(exc, psycopg.OperationalError):
        return None
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        pooler = ".pooler.supabase.com" in (url or "")
        return DatabaseError(
            f"{where} refused the login ({reason}): check the user and password in DATABASE_URL"
            + (
                " (the Supabase session pooler's user is <role>.<project-ref>: postgres.<project-ref>, "
                "apelier_worker.<project-ref>)"
                if pooler
                else ""
            )
        )
    if "does not exist" in lowered and "database" in lowered:
        return DatabaseError(f"{where} has no such database ({reason}): create it, or fix the name in DATABASE_URL")
    if any(marker in lowered for marker in _LOST):
        return DatabaseUnavailable(f"lost the connection to {where} ({reason}); check that PostgreSQL is running")
    why = next((said for markers, said in _UNREACHABLE if any(m in lowered for m in markers)), reason)
    fix = "check DATABASE_URL and that PostgreSQL is running"
    host = _host_of(url)
    if host.startswith("db.") and host.endswith(".supabase.co") and why in {
        "no route to the host", "the host name does not resolve",
    }:  # fmt: skip
        fix = (
            "Supabase direct connections are IPv6-only and this box has no IPv6 route: use the session "
            "pooler (…pooler.supabase.com:5432) or the project's IPv4 add-on"
        )
    elif url:
        fix = "check DATABASE_URL, that PostgreSQL is running and that this box may reach it (firewall)"
    return DatabaseUnavailable(f"cannot reach {where} ({why}): {fix}")


def _password_of(url: str | None) -> str | None:
    if not url:
        return None
    match = re.search(r"://[^/@]*?:([^@/]*)@", url) or re.search(r"password\s*=\s*('[^']*'|[^&\s]+)", url)
    if match is None:
        match = re.match(r"^[^/@:\s]*:([^@/\s]+)@", url)  # user:password@host, the scheme forgotten
    return match.group(1).strip("'") if match and match.group(1) else None


def _scrub(text: str, url: str | None) -> str:
    """``text`` without the password in ``url``, nor any quoted piece of a URL with credentials in it."""
    secret = _password_of(url)
    if secret:
        text = text.replace(secret, "***")
    return re.sub(r'"[^"]*@[^"]*"', '"…"', text)


def _display_url(url: str) -> str:
    from worker.service.config import redact_url  # noqa: PLC0415 - config imports this module

    return redact_url(url)


def _host_of(url: str | None) -> str:
    match = re.search(r"@([^/:?]+)", url or "") or re.search(r"host\s*=\s*(\S+)", url or "")
    return match.group(1) if match else ""


def _first_meaningful_line(text: str) -> str:
    """psycopg's message without its "connection failed: connection to server at …, port N failed:" preamble."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[0] if lines else "no detail"
    line = re.sub(r"^connection failed:\s*", "", line)
    line = re.sub(r'^connection to server at "[^"]*"(?: \([^)]*\))?, port \d+ failed:\s*', "", line)
    line = re.sub(r"^FATAL:\s*", "", line)
    return line[:200] or "no detail"


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
    """Exponential backoff for whole jobs: ``base * 2**(attempt-1)``, capped.

    ``attempts`` is the job's attempt number (the claim counts it; an attempt given back is
    subtracted again). Whether attempts remain is not decided here: an attempt that edited photos,
    or failed for a cause outside the job, is given back, and only the database knows what the run
    recorded (``apelier.end_attempt`` fails a retryable job whose counted attempt was its last,
    ``max_attempts`` being the job row's own: the app's default is 3).
    """

    base_delay_s: float = 10.0
    max_delay_s: float = 600.0

    def decide(self, failure: Failure, attempts: int) -> RetryDecision:
        if not failure.retryable:
            return RetryDecision(False, 0.0)
        delay = min(self.max_delay_s, self.base_delay_s * (2 ** max(0, attempts - 1)))
        return RetryDecision(True, delay)
