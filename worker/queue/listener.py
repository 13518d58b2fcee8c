"""LISTEN ``apelier_jobs`` on a dedicated connection: wakes the daemon when a job is queued."""

from __future__ import annotations

import select
import time
from typing import Any, Protocol

import psycopg

from worker.queue.connection import connect
from worker.queue.sql import q


class Listening(Protocol):
    """What the daemon waits on: :class:`Listener`, or the in-memory double's."""

    def start(self) -> bool: ...

    def wait(self, timeout_s: float) -> bool: ...

    def close(self) -> None: ...


class Listener:
    """Behind a transaction pooler LISTEN does not work; ``wait`` then just sleeps out its timeout
    and the daemon finds jobs by polling."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def start(self) -> bool:
        try:
            self._conn = connect(self.url)
            self._conn.execute(q("listen"))
            return True
        except psycopg.Error:
            self.close()
            return False

    def wait(self, timeout_s: float) -> bool:
        """Block until a job is queued (True) or ``timeout_s`` passes (False)."""
        if self._conn is None and not self.start():
            time.sleep(timeout_s)
            return False
        assert self._conn is not None
        try:
            got = False
            for _ in self._conn.notifies(timeout=timeout_s, stop_after=1):
                got = True
            # Swallow any further notifications that arrived meanwhile.
            while select.select([self._conn.fileno()], [], [], 0)[0]:
                if not list(self._conn.notifies(timeout=0, stop_after=8)):
                    break
            return got
        except psycopg.Error:
            self.close()
            return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
