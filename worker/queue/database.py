"""What the rest of the worker holds: a :class:`Queue` per connection, and the database it comes from.

``Queue(url, worker_id)`` opens one connection (lazily) and exposes its three sides:
``.jobs`` (the job lifecycle, ``store.py``), ``.app`` (reads of the app's tables, ``app_data.py``)
and ``.admin`` (migrations, enqueue, status, ``admin.py``). A thread uses its own ``Queue``.
A :class:`Database` makes queues and listeners: :class:`Postgres` at a URL, or
``memory.MemoryDatabase``, the in-memory double for tests.
"""

from __future__ import annotations

from typing import Any, Protocol

import psycopg

from worker.queue.admin import Admin
from worker.queue.app_data import AppData
from worker.queue.connection import Connection, PgConnection
from worker.queue.listener import Listener, Listening
from worker.queue.store import JobStore


class Queue:
    """One connection's worth of the queue (use one per thread)."""

    def __init__(self, database: str | Connection, worker_id: str) -> None:
        self.connection: Connection = PgConnection(database) if isinstance(database, str) else database
        self.worker_id = worker_id
        self.jobs = JobStore(self.connection, worker_id)
        self.app = AppData(self.connection)
        self.admin = Admin(self.connection)

    @property
    def conn(self) -> psycopg.Connection[dict[str, Any]]:
        """The psycopg connection, for SQL of one's own (tests, benchmarks); PostgreSQL only."""
        if not isinstance(self.connection, PgConnection):
            raise TypeError(f"{type(self.connection).__name__} runs no SQL")
        return self.connection.raw

    def close(self) -> None:
        self.connection.close()


class Database(Protocol):
    def queue(self, worker_id: str) -> Queue: ...

    def listener(self) -> Listening: ...


class Postgres:
    """PostgreSQL at ``url``: a new connection for each queue and listener."""

    def __init__(self, url: str) -> None:
        self.url = url

    def queue(self, worker_id: str) -> Queue:
        return Queue(self.url, worker_id)

    def listener(self) -> Listening:
        return Listener(self.url)


def as_database(target: str | Database) -> Database:
    """A URL is PostgreSQL; anything else is already a :class:`Database`."""
    return Postgres(target) if isinstance(target, str) else target
