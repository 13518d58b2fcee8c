"""A bounded pool of :class:`~worker.queue.database.Queue` objects for a many-threaded server (the HTTP API).

A ``Queue`` is one connection, for one thread at a time. The API answers requests on a pool of threads;
each request borrows a queue for its duration and gives it back, so at most ``size`` connections are
open however many requests arrive (a Supabase pooler counts them). A connection that was lost reconnects
on its next use (``PgConnection``).
"""

from __future__ import annotations

import queue as stdlib_queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from worker.queue.database import Database, Queue


class QueuePool:
    def __init__(self, database: Database, *, size: int, worker_id: str, wait_s: float = 10.0) -> None:
        if size < 1:
            raise ValueError("a QueuePool needs at least one connection")
        self._database = database
        self._worker_id = worker_id
        self._wait_s = wait_s
        self._slots = threading.BoundedSemaphore(size)
        self._idle: stdlib_queue.LifoQueue[Queue] = stdlib_queue.LifoQueue()

    @contextmanager
    def borrow(self) -> Iterator[Queue]:
        """A queue of one's own until the block ends; TimeoutError when none frees up within ``wait_s``."""
        if not self._slots.acquire(timeout=self._wait_s):
            raise TimeoutError(f"every database connection stayed in use for {self._wait_s:g} s")
        try:
            try:
                queue = self._idle.get_nowait()
            except stdlib_queue.Empty:
                queue = self._database.queue(self._worker_id)
            try:
                yield queue
            finally:
                self._idle.put(queue)
        finally:
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except stdlib_queue.Empty:
                return
