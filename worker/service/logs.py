"""Structured logging: events with fields, JSON when stderr is not a terminal.

Bind ``job_id``/``photo_id`` once with :func:`bind`; every event logged inside
carries them. Secrets never reach a log: settings are logged through
``Settings.redacted()`` and connection strings through ``redact_url``.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any, TypeVar

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Set up structlog (and route stdlib logging through the same level) once per process."""
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(_LEVELS.get(level, logging.INFO), logging.WARNING), stream=sys.stderr)


def _stderr_logger(*args: Any) -> structlog.PrintLogger:
    """Whatever ``sys.stderr`` is at the time of the event (tests and tools swap it)."""
    return structlog.PrintLogger(file=sys.stderr)


def get(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` to every event logged in this block (this thread/context only)."""
    tokens = structlog.contextvars.bind_contextvars(**fields)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


_T = TypeVar("_T")


def submit(pool: Executor, fn: Callable[..., _T], *args: Any) -> Future[_T]:
    """``pool.submit`` in a copy of this thread's context: the fields bound here (:func:`bind`, the job
    and photo ids) stay on every line the task logs."""
    return pool.submit(contextvars.copy_context().run, fn, *args)


if not structlog.is_configured():
    # Until the CLI configures logging from the settings: events to stderr, never stdout.
    configure()
