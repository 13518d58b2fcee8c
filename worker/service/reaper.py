"""Jobs whose worker is gone go back to the queue within about one lease, whatever this worker does.

Every daemon runs a :class:`Reaper` (``apelier-worker run`` starts it before loading torch and the
models, so that a worker restarting after a crash already does its part): a thread with its own
connection that calls
``apelier.requeue_stale`` every ``min(lease/4, 5 s)`` (at least every 0.5 s), while the daemon waits
for work and while it runs a job alike, so a job whose worker died is requeued within the lease plus
that interval as long as any worker is up. Every worker may run it: the function skips rows another
one is handling (``FOR UPDATE SKIP LOCKED``) and only touches jobs whose heartbeat is older than the
lease.

A database outage interrupts every worker's heartbeats at once. Once this worker's connection is
back after an outage longer than the heartbeats can miss (the lease less two heartbeat intervals),
it waits one more lease before requeuing, so that live workers beat again first instead of losing
their jobs (and an attempt's photos a death) to an outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from worker.errors import first_line
from worker.queue.database import Database
from worker.service import logs

log = logs.get("reaper")


def reap_interval_s(lease_s: float) -> float:
    """How often stale jobs are looked for: a quarter of the lease, at most 5 s, at least 0.5 s."""
    return max(0.5, min(5.0, lease_s / 4))


class Reaper:
    """Requeues jobs whose worker stopped heartbeating (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        worker_id: str,
        *,
        lease_s: float,
        heartbeat_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.clock = clock
        self.worker_id = worker_id
        self.lease_s = lease_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.interval_s = reap_interval_s(lease_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)
        self._lost_since: float | None = None
        self._hold_until = 0.0

    def start(self) -> None:
        """Start the thread (again: nothing happens)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        queue = self.database.queue(self.worker_id)
        try:
            while True:
                self.tick(queue.jobs)
                if self._stop.wait(self.interval_s):
                    return
        finally:
            queue.close()

    def tick(self, jobs: Any) -> list[dict[str, Any]]:
        """One round: requeue stale jobs (``jobs``: a :class:`~worker.queue.store.JobStore`), unless the
        database was just lost or is back from a long outage. Returns the rows requeued."""
        now = self.clock()
        try:
            if self._lost_since is not None:
                jobs.pending()  # is it back?
            elif now < self._hold_until:
                return []
            else:
                rows: list[dict[str, Any]] = jobs.requeue_stale(self.lease_s)
                for row in rows:
                    log.warning(
                        "stale_job_requeued",
                        job_id=str(row["job_id"]),
                        new_status=row["new_status"],
                        previous_worker=row["previous_worker"],
                    )
                return rows
        except psycopg.OperationalError as exc:
            if self._lost_since is None:
                self._lost_since = now
                log.warning("reaper_database_unavailable", error=first_line(exc))
            return []
        except psycopg.Error as exc:  # e.g. a schema without the function: the daemon refuses it at start
            log.error("reaper_failed", error=first_line(exc))
            return []
        down_s = now - self._lost_since
        self._lost_since = None
        if down_s > self.lease_s - 2 * self.heartbeat_interval_s:
            self._hold_until = now + self.lease_s
            log.info("reaper_waits_after_outage", down_s=round(down_s, 1), wait_s=self.lease_s)
        return []
