"""The daemon loop: wait (NOTIFY or poll) → claim → run → finish; signals; heartbeats.

* Waits on ``LISTEN apelier_jobs`` (a new job wakes it within milliseconds) and
  polls every ``poll_interval_s`` as well, so it also works behind a
  transaction pooler where LISTEN does not.
* While a job runs, a heartbeat thread (its own connection) keeps the lease
  alive and notices a cancel; a reaper thread (``reaper.py``) requeues jobs
  whose worker stopped heartbeating (``apelier.requeue_stale``), busy or idle.
* SIGTERM/SIGINT: stop claiming, finish the photos already encoded, put the job
  back to ``queued`` with its progress kept, exit 0.
* A job's database calls ride out an outage of up to one lease
  (``RetryingConnection``). A failed job goes back to the queue with exponential
  backoff (``errors.RetryStrategy``) while attempts remain, else ``failed`` with a
  one-line reason (``apelier.end_attempt``: an attempt that edited photos, or
  failed for a cause outside the job, is given back). A failure the database
  could not take is recorded as soon as it is back, before the next claim.
* Between jobs, outputs uploaded for photos no run will record (their job ended)
  are deleted from storage.
* A claim takes a chunk of a split gallery first (``apelier.claim_chunk``), else a
  job; a chunk runs as its job does, restricted to its photos (``jobs/gallery.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import psycopg

from worker import __version__
from worker.errors import (
    Failure,
    JobInputError,
    RetryStrategy,
    classify,
    first_line,
)
from worker.jobs.gallery import run_gallery_job
from worker.jobs.orphans import delete_unrecorded
from worker.jobs.runtime import JobControl, JobOutcome, Runtime
from worker.jobs.style import run_style_job
from worker.queue.connection import RetryingConnection
from worker.queue.database import Database, Queue, as_database
from worker.queue.migrations import check_worker_can_run, latest_version
from worker.queue.store import JOB_TYPES, Job
from worker.service import logs, notify
from worker.service.reaper import Reaper, reap_interval_s

log = logs.get("daemon")


@dataclass
class DaemonStats:
    jobs_completed: int = 0
    jobs_failed: int = 0
    jobs_released: int = 0


JobRunner = Callable[[Job, Queue, Runtime, JobControl], JobOutcome]


def default_runners() -> dict[str, JobRunner]:
    return {"gallery": run_gallery_job, "restyle": run_gallery_job, "train_style": run_style_job}


class Daemon:
    def __init__(
        self,
        runtime: Runtime,
        database: str | Database,
        *,
        drain: bool = False,
        job_types: Sequence[str] = JOB_TYPES,
        runners: dict[str, JobRunner] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        reaper: Reaper | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.database = as_database(database)  # a URL, or a Database such as the in-memory double
        self.drain = drain
        self.job_types = list(job_types)
        self.runners = runners or default_runners()
        self.on_event = on_event or (lambda name, fields: None)
        self.worker_id = self.settings.worker_id
        self.queue = self.database.queue(self.worker_id)
        self.listener = self.database.listener()
        self.shutdown = threading.Event()
        self.retry = RetryStrategy(self.settings.retry_base_delay_s, self.settings.retry_max_delay_s)
        self.stats = DaemonStats()
        self.current_job: Job | None = None
        self.reaper = reaper or Reaper(
            self.database,
            self.worker_id,
            lease_s=self.settings.lease_s,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
        )
        # Failures the database could not take when they happened: recorded before the next claim.
        self._unrecorded: list[tuple[Job, Failure, float | None]] = []
        self._next_sweep = 0.0

    # -- signals ------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            if not self.shutdown.is_set():
                log.info("shutdown_requested", signal=signal.Signals(signum).name)
                self.on_event("stopping", {"signal": signal.Signals(signum).name})
            self.shutdown.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> int:
        self._check_schema()
        listening = self.listener.start()
        log.info(
            "worker_started",
            worker=self.worker_id,
            listen=listening,
            drain=self.drain,
            storage=self.runtime.storage.describe(),
            models=self.runtime.models.describe(),
            settings=self.settings.redacted(),
        )
        self._seen("idle")
        self.reaper.start()
        self.on_event("ready", {"listen": listening})
        try:
            while not self.shutdown.is_set():
                try:
                    self._record_failures()
                    self._maybe_sweep_outputs()
                    job = self.queue.jobs.claim(self.job_types)
                    drained = job is None and self.drain and self.queue.jobs.pending(self.job_types) == (0, 0)
                except psycopg.OperationalError as exc:
                    log.warning("database_unavailable", error=first_line(exc))
                    self.on_event("database_unavailable", {})
                    self._sleep(min(self.settings.poll_interval_s, 5.0))
                    continue
                if job is not None:
                    self._run_job(job)
                    continue
                if drained:
                    log.info("queue_drained")
                    break
                self.on_event("idle", {})
                self._wait_for_work()
        finally:
            self.reaper.stop()
            self._seen("stopped")
            self.listener.close()
            self.queue.close()
        log.info("worker_stopped", **self.stats.__dict__)
        return 0

    def _check_schema(self) -> None:
        """Refuse a database older than this worker needs; run on a newer one (another box migrated first)."""
        version = self.queue.admin.schema_version()
        check_worker_can_run(version)
        if version is not None and version > latest_version():
            log.info("schema_newer_than_this_release", schema_version=version, release_schema=latest_version())

    def _wait_for_work(self) -> None:
        """Until a NOTIFY, the poll interval, or shutdown — whichever first."""
        deadline = time.monotonic() + self.settings.poll_interval_s
        while not self.shutdown.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.listener.wait(min(left, 0.25)):
                return

    def _sleep(self, seconds: float) -> None:
        self.shutdown.wait(seconds)

    def _maybe_sweep_outputs(self) -> None:
        """Delete outputs uploaded for photos no run will record (their job ended a lease ago, and the
        run that held it did not delete them: it died, or a delete failed); at most 50 a round
        (``worker/jobs/orphans.py``).

        A key the photo's row names (an earlier edit at the same key) is only forgotten; a key outside
        the photographer's folder is never touched.
        """
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 2 * reap_interval_s(self.settings.lease_s)
        rows = self.queue.jobs.unrecorded_outputs(self.settings.lease_s, limit=50)
        delete_unrecorded(self.queue.jobs, self.runtime.storage, rows)

    # -- one job ------------------------------------------------------------------------------
    def _run_job(self, job: Job) -> None:
        control = JobControl(shutdown=self.shutdown)
        self.current_job = job
        chunk = {} if job.chunk is None else {"chunk": job.chunk}
        with logs.bind(job_id=job.id, job_type=job.job_type, attempt=job.attempts, **chunk):
            log.info("job_claimed", gallery_id=job.gallery_id, max_attempts=job.max_attempts, chunks=job.chunks)
            self._seen("busy", job.id)
            self.on_event(
                "job_started",
                {
                    "job_id": job.id,
                    "job_type": job.job_type,
                    "attempts": job.attempts,
                    "first_claim": job.first_claim,
                    "created_at": job.created_at,
                    "started_at": job.started_at,
                },
            )
            beat = _Heartbeat(self, job, control)
            beat.start()
            status = "failed"
            try:
                runner = self.runners.get(job.job_type)
                if runner is None:
                    raise JobInputError(f"unknown job_type {job.job_type!r}")
                status = runner(job, self._job_queue(), self.runtime, control).status
                if status == "split":
                    log.info("job_handed_to_chunks")
                elif status == "released":
                    self.stats.jobs_released += 1
                elif status == "completed":
                    self.stats.jobs_completed += 1
            except Exception as exc:
                self._fail_job(job, exc)
            finally:
                beat.stop()
                self.current_job = None
                self._seen("idle")
                self.on_event("job_finished", {"job_id": job.id, "job_type": job.job_type, "status": status})

    def _job_queue(self) -> Queue:
        """The runner's queue: this daemon's connection, riding out a database outage of up to a lease."""

        def retrying(query: str, exc: psycopg.OperationalError) -> None:
            log.warning("database_retry", query=query, error=first_line(exc))

        connection = RetryingConnection(self.queue.connection, self.settings.lease_s, on_retry=retrying)
        return Queue(connection, self.worker_id)

    def _fail_job(self, job: Job, exc: BaseException) -> None:
        failure = classify(exc)
        if failure.kind not in {"JobInputError", "TenantViolationError"}:
            log.error("job_error", reason=failure.reason, kind=failure.kind, exc_info=exc)
        decision = self.retry.decide(failure, job.attempts)
        retry_in = decision.delay_s if decision.retry else None
        self._unrecorded.append((job, failure, retry_in))
        try:
            self._record_failures()
        except psycopg.OperationalError as db_exc:
            log.error("could_not_record_failure", error=first_line(db_exc), action="recorded once the database is back")

    def _record_failures(self) -> None:
        """Record each failed attempt the database has not taken yet (raises while it is still away).

        A failure the database refuses for another reason (not a lost connection) is dropped, logged:
        the job's lease lapses and the reaper takes it back.
        """
        while self._unrecorded:
            job, failure, retry_in = self._unrecorded[0]
            with logs.bind(job_id=job.id, job_type=job.job_type, attempt=job.attempts):
                try:
                    state = self.queue.jobs.end_attempt(job.id, failure.reason, retry_in, outside=failure.outside)
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as exc:
                    self._unrecorded.pop(0)
                    log.error("could_not_record_failure", error=first_line(exc), action="its lease will lapse")
                    continue
                self._unrecorded.pop(0)
                self.stats.jobs_failed += 1
                log.warning(
                    "job_failed", reason=failure.reason, outside=failure.outside, retry_in_s=retry_in, state=state
                )

    # -- worker registry ----------------------------------------------------------------------
    def _seen(self, state: str, job_id: str | None = None, queue: Queue | None = None) -> None:
        with contextlib.suppress(psycopg.Error):  # the registry is informational; never let it stop work
            (queue or self.queue).jobs.worker_seen(
                hostname=socket.gethostname(),
                pid=os.getpid(),
                version=__version__,
                device=self.runtime.models.device,
                state=state,
                job_id=job_id,
                info={"storage": self.runtime.storage.describe(), "models": self.runtime.models.describe()},
            )


class _Heartbeat:
    """Keeps a job's lease alive from its own thread and connection; notices a cancel."""

    def __init__(self, daemon: Daemon, job: Job, control: JobControl) -> None:
        self.daemon = daemon
        self.job = job
        self.control = control
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job.id[:8]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        queue = self.daemon.database.queue(self.daemon.worker_id)
        interval = self.daemon.settings.heartbeat_interval_s
        with logs.bind(job_id=self.job.id):
            try:
                while not self._stop.wait(interval):
                    if notify.stalled():  # the main thread hangs (a GPU call): let the lease lapse
                        log.error("main_thread_stalled", action="lease left to lapse; another worker takes the job")
                        self._stop.wait(self.daemon.settings.lease_s)
                        continue
                    try:
                        state = queue.jobs.heartbeat(self.job.id)
                    except psycopg.Error as exc:
                        log.warning("heartbeat_failed", error=first_line(exc))
                        continue
                    if state != "processing":
                        log.info("job_state_changed", state=state)
                    self.control.saw_state(state)
                    self.daemon._seen("busy", self.job.id, queue)
            finally:
                queue.close()
