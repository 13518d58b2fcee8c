"""The seam between the queue's Python and its database: named statements in, rows (dicts) out.

:class:`Connection` is all the stores (``store.py``, ``app_data.py``, ``admin.py``) see.
:class:`PgConnection` runs the statements of ``sql/queries.sql`` on PostgreSQL;
``memory.py`` answers the same names from dicts. Connections are autocommit and never use
server-side prepared statements, so the worker also runs behind a transaction pooler (where only
LISTEN is lost: it polls).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from worker.queue.sql import q

Row = dict[str, Any]
_T = TypeVar("_T")


class Connection(Protocol):
    """One database session. Parameters are plain Python values; a ``dict`` is stored as JSON."""

    def one(self, query: str, /, **params: Any) -> Row | None:
        """The first row of the named statement, or None."""
        ...

    def all(self, query: str, /, **params: Any) -> list[Row]:
        """Every row of the named statement."""
        ...

    def script(self, sql: str) -> None:
        """Run SQL text (several statements, no parameters): a migration file."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Everything inside commits together, or not at all."""
        ...

    def close(self) -> None: ...


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    """An autocommit connection with dict rows and no server-side prepared statements."""
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, prepare_threshold=None, connect_timeout=10)


class PgConnection:
    """A :class:`Connection` to PostgreSQL, opened on first use and again after it was lost.

    Threads may share one: statements (and transactions) run one at a time. A thread that must not
    wait on another's statements uses a connection of its own (the heartbeat does).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._lock = threading.RLock()

    @property
    def raw(self) -> psycopg.Connection[dict[str, Any]]:
        """The psycopg connection itself (tests and benchmarks run their own SQL on it)."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url)
        return self._conn

    def one(self, query: str, /, **params: Any) -> Row | None:
        with self._lock:
            try:
                return self.raw.execute(q(query), _adapt(params)).fetchone()
            except psycopg.OperationalError:
                self.close()  # reconnect next time
                raise

    def all(self, query: str, /, **params: Any) -> list[Row]:
        with self._lock:
            try:
                return self.raw.execute(q(query), _adapt(params)).fetchall()
            except psycopg.OperationalError:
                self.close()
                raise

    def script(self, sql: str) -> None:
        with self._lock:
            try:
                self.raw.execute(sql.encode())
            except psycopg.OperationalError:
                self.close()
                raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, self.raw.transaction():
            yield

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class RetryingConnection:
    """A :class:`Connection` that rides out a short database outage (a restart, a failover).

    A statement that fails because the connection is gone (``psycopg.OperationalError``) is run
    again on a new connection, after 0.25 s, 0.5 s, … (at most 4 s), for up to ``within_s``; then the
    error goes up. For statements that may run twice: a job's lease-checked writes (heartbeat,
    progress, photo started/processed/finished/failed, complete, the end of an attempt; billing is
    once per photo whatever happens) and reads. Never a claim: one whose answer was lost would lease a
    job nobody runs. ``on_retry(query, error)`` is told of each retry.
    """

    def __init__(
        self,
        inner: Connection,
        within_s: float,
        *,
        on_retry: Callable[[str, psycopg.OperationalError], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.within_s = within_s
        self.on_retry = on_retry
        self.sleep = sleep

    def _retry(self, query: str, run: Callable[[], _T]) -> _T:
        deadline = time.monotonic() + self.within_s
        pause = 0.25
        while True:
            try:
                return run()
            except psycopg.OperationalError as exc:
                if time.monotonic() + pause > deadline:
                    raise
                if self.on_retry is not None:
                    self.on_retry(query, exc)
                self.sleep(pause)
                pause = min(4.0, pause * 2)

    def one(self, query: str, /, **params: Any) -> Row | None:
        return self._retry(query, lambda: self.inner.one(query, **params))

    def all(self, query: str, /, **params: Any) -> list[Row]:
        return self._retry(query, lambda: self.inner.all(query, **params))

    def script(self, sql: str) -> None:
        self.inner.script(sql)

    def transaction(self) -> AbstractContextManager[None]:
        return self.inner.transaction()

    def close(self) -> None:
        self.inner.close()


def _adapt(params: dict[str, Any]) -> dict[str, Any]:
    """dicts passed as plain values become JSON."""
    return {k: (Jsonb(v) if isinstance(v, dict) else v) for k, v in params.items()}
