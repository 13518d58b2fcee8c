"""The seam between the queue's Python and its database: named statements in, rows (dicts) out.

:class:`Connection` is all the stores (``store.py``, ``app_data.py``, ``admin.py``) see.
:class:`PgConnection` runs the statements of ``sql/queries.sql`` on PostgreSQL;
``memory.py`` answers the same names from dicts. Connections are autocommit and never use
server-side prepared statements, so the worker also runs behind a transaction pooler (where only
LISTEN is lost: it polls).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from worker.queue.sql import q

Row = dict[str, Any]


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
    """A :class:`Connection` to PostgreSQL, opened on first use and again after it was lost."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    @property
    def raw(self) -> psycopg.Connection[dict[str, Any]]:
        """The psycopg connection itself (tests and benchmarks run their own SQL on it)."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url)
        return self._conn

    def one(self, query: str, /, **params: Any) -> Row | None:
        try:
            return self.raw.execute(q(query), _adapt(params)).fetchone()
        except psycopg.OperationalError:
            self.close()  # reconnect next time
            raise

    def all(self, query: str, /, **params: Any) -> list[Row]:
        try:
            return self.raw.execute(q(query), _adapt(params)).fetchall()
        except psycopg.OperationalError:
            self.close()
            raise

    def script(self, sql: str) -> None:
        try:
            self.raw.execute(sql.encode())
        except psycopg.OperationalError:
            self.close()
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.raw.transaction():
            yield

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _adapt(params: dict[str, Any]) -> dict[str, Any]:
    """dicts passed as plain values become JSON."""
    return {k: (Jsonb(v) if isinstance(v, dict) else v) for k, v in params.items()}
