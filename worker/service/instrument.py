"""The daemon as a service: what it tells systemd (``service.notify``) and Prometheus (``service.metrics``).

``apelier-worker run`` wraps the daemon in :func:`instrumented`, which

* reads the service manager's ``NOTIFY_SOCKET``/``WATCHDOG_USEC`` (and hides them from child
  processes), pings through model loading, then says ``READY=1`` on the daemon's ``ready`` event;
* turns daemon events and pipeline progress into ``STATUS=`` lines and watchdog pings, all from
  the daemon's main thread (see :class:`worker.pipeline.stream.PipelineWatcher`);
* serves metrics when ``WORKER_METRICS_PORT`` is set.
"""

from __future__ import annotations

import contextlib
import faulthandler
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from worker import __version__
from worker.errors import first_line
from worker.pipeline import stream as pipeline
from worker.pipeline.stream import WAITING_ON_PHASES, PhotoResult, PipelineWatcher
from worker.service import logs, notify
from worker.service.config import Settings
from worker.service.metrics import Metrics

log = logs.get("service")

EventHook = Callable[[str, dict[str, Any]], None]


def io_budget_s(settings: Settings) -> float:
    """The longest the main thread may legitimately wait on I/O with no photo done and no storage
    request finished (:func:`worker.service.notify.transferred`).

    Every attempt of one request timing out, with the storage client's backoff (at most 30 s)
    between attempts; an attempt of a resumable upload's chunk can be two requests (asking the
    server where it stopped, then sending). Beyond that the storage client has given up on the
    request and the photo has failed, so a thread still waiting is hung, and the watchdog is let
    to fire. Counted per request, not per file: a large file's resumable upload is many. A
    download is one request, and its timeout bounds each read, not the whole: one that keeps
    trickling for longer than this (a 50 MB RAW at under ~50 kB/s) is taken for a hang.
    """
    attempts = settings.storage_retries + 1
    return attempts * (2 * settings.storage_timeout_s + 30.0) + 60.0


@dataclass
class StatusReporter(PipelineWatcher):
    """Daemon events and pipeline progress → ``STATUS=`` lines and watchdog pings."""

    notifier: notify.Notifier
    poll_interval_s: float = 5.0
    job: str = ""
    photos_total: int | None = None
    photos_done: int = 0
    jobs_done: int = 0
    listening: bool = True
    _phase: str = field(default="", repr=False)
    _photo_status_at: float = field(default=0.0, repr=False)

    def starting(self, what: str) -> None:
        self.notifier.status(f"starting: {what}")
        self.notifier.alive()

    def idle_text(self) -> str:
        how = "LISTEN + poll" if self.listening else f"polling every {self.poll_interval_s:g}s"
        return f"idle, waiting for jobs ({how}); {self.jobs_done} job(s) run since start"

    def on_event(self, name: str, fields: dict[str, Any]) -> None:
        n = self.notifier
        if name == "ready":
            self.listening = bool(fields.get("listen", True))
            n.ready(self.idle_text())
        elif name == "idle":
            n.status(self.idle_text())
            n.alive()
        elif name == "database_unavailable":
            n.status("database unreachable; retrying")
            n.alive()  # the loop turns: the worker is not hung, the database is down
        elif name == "job_started":
            self.job = f"job {fields.get('job_id')} ({fields.get('job_type', '?')})"
            self.photos_total, self.photos_done, self._phase = None, 0, ""
            n.status(f"{self.job}: starting")
            n.alive()
        elif name == "job_finished":
            self.jobs_done += 1
            n.status(f"{self.job}: {fields.get('status', 'finished')}")
            n.alive()
            self.job = ""
        elif name == "stopping":
            what = f"; releasing {self.job}" if self.job else ""
            n.stopping(f"stopping ({fields.get('signal', 'signal')}){what}")

    def _progress(self) -> str:
        total = "?" if self.photos_total is None else str(self.photos_total)
        phase = f"{self._phase}, " if self._phase else ""
        job = f"{self.job}: " if self.job else ""
        return f"{job}{phase}{self.photos_done} of {total} photos"

    # -- pipeline (main thread) ---------------------------------------------------------------
    def started(self, photos: int | None) -> None:
        self.photos_total, self.photos_done, self._phase = photos, 0, "download"
        self.notifier.status(self._progress())
        self.notifier.alive()

    def phase_started(self, phase: str, photos: int) -> None:
        self._phase = phase
        self.notifier.status(self._progress())
        self.notifier.alive()

    def phase_done(self, phase: str, photos: int, seconds: float) -> None:
        self.notifier.alive()

    def photo_done(self, result: PhotoResult) -> None:
        self.photos_done += 1
        # Photos finish in bursts (a batch at a time): say so at most twice a second, and at the end.
        # Each phase start carries the count too.
        now = time.monotonic()
        if now - self._photo_status_at >= 0.5 or self.photos_done == self.photos_total:
            self._photo_status_at = now
            self.notifier.status(self._progress())
        self.notifier.alive()

    def waiting(self, on: str) -> None:
        self.notifier.status(f"{self._progress()} (waiting on {on})")
        if on != WAITING_ON_PHASES:
            self.notifier.waiting()
        # Waiting on the lanes is no sign of life: their phase events are. A lane stuck in a GPU
        # call must starve the watchdog as a phase stuck on this thread would.


@dataclass
class Hooks:
    """What ``instrumented`` hands the daemon: its event hook, and a way to report start-up steps."""

    on_event: EventHook
    starting: Callable[[str], None]


@contextlib.contextmanager
def instrumented(settings: Settings, *, device: str = "unknown") -> Iterator[Hooks]:
    """Notifier, status, metrics and pipeline watchers for the daemon running in this block."""
    # A watchdog timeout arrives as SIGABRT: print every thread's stack (where it hung) to the journal.
    faulthandler.enable()
    notifier = notify.Notifier.from_env(
        unset=True, liveness_file=settings.liveness_file, io_budget_s=io_budget_s(settings)
    )
    reporter = StatusReporter(notifier, poll_interval_s=settings.poll_interval_s)
    watchers: list[PipelineWatcher] = [reporter]
    hooks: list[EventHook] = [reporter.on_event]
    metrics: Metrics | None = None
    port: int | None = None
    if settings.metrics_port is not None:
        metrics = Metrics(worker_id=settings.worker_id, version=__version__, device=device)
        port = metrics.serve(settings.metrics_port)
        watchers.append(metrics)
        hooks.append(metrics.on_event)
    _check_watchdog(notifier, settings)
    log.info(
        "service_hooks",
        systemd=notifier.enabled,
        watchdog_s=notifier.watchdog_s,
        liveness_file=str(settings.liveness_file) if settings.liveness_file else None,
        metrics_port=port,
    )

    def on_event(name: str, fields: dict[str, Any]) -> None:
        for hook in hooks:
            try:
                hook(name, fields)
            except Exception as exc:  # telling the outside world must never stop the work
                log.warning("service_hook_failed", event=name, error=repr(exc))

    notify.install(notifier)
    final = "stopped"
    try:
        with pipeline.watching(*watchers):
            yield Hooks(on_event=on_event, starting=reporter.starting)
    except Exception as exc:
        final = f"failed: {first_line(exc)}"
        raise
    finally:
        notify.install(None)
        notifier.status(final)
        notifier.close()
        if metrics is not None:
            metrics.close()


def _check_watchdog(notifier: notify.Notifier, settings: Settings) -> None:
    """Warn when the idle loop would not ping often enough for the configured watchdog."""
    if not notifier.watchdog_s:
        return
    idle_turn_s = min(settings.poll_interval_s, max(1.0, settings.lease_s / 4))
    if notifier.watchdog_s < 2 * idle_turn_s:
        log.warning(
            "watchdog_too_short",
            watchdog_s=notifier.watchdog_s,
            idle_turn_s=idle_turn_s,
            fix="raise WatchdogSec= or lower WORKER_POLL_INTERVAL_S",
        )
