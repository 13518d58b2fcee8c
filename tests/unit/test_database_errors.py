"""What a database that cannot be used looks like to the operator: one typed error, one line, no password.

psycopg's own errors, real ones (a refused port, a server that never answers, a malformed URL) and
constructed ones, through ``worker.errors.database_error`` / ``classify`` and ``worker.service.preflight``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg

from worker.errors import (
    DatabaseError,
    DatabaseSchemaError,
    DatabaseUnavailable,
    classify,
    database_error,
)
from worker.service import preflight
from worker.service.config import Settings, redact_url

SECRET = "s3cr3t-pw"


def _error_of(url: str) -> psycopg.Error:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error as exc:
        return exc
    raise AssertionError(f"{url} connected")


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (a firewall that swallows, a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _one_line(error: DatabaseError | None) -> str:
    assert error is not None
    assert "\n" not in error.message and SECRET not in error.message
    return error.message


def test_a_refused_connection_says_where_and_what_to_check(closed_port: int) -> None:
    url = f"postgresql://worker:{SECRET}@127.0.0.1:{closed_port}/apelier"
    error = database_error(_error_of(url), url)
    assert isinstance(error, DatabaseUnavailable) and error.retryable
    message = _one_line(error)
    assert f"postgresql://worker:***@127.0.0.1:{closed_port}/apelier" in message
    assert "connection refused" in message and "DATABASE_URL" in message and "PostgreSQL is running" in message


@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        f"worker:{SECRET}@db.example.com/apelier",  # the scheme forgotten
        SECRET,  # only the password pasted
        "postgresql://db.example.com/apelier?sslmod=require",
    ],
)
def test_a_malformed_url_is_named_without_repeating_it(url: str) -> None:
    error = database_error(_error_of(url), url)
    assert type(error) is DatabaseError
    message = _one_line(error)
    assert message.startswith("DATABASE_URL is not a PostgreSQL connection string")
    assert "postgresql://USER:PASSWORD@HOST:5432/DATABASE" in message


def test_a_server_that_never_answers_is_given_up_on(silent_server: int, tmp_path: Path) -> None:
    url = f"postgresql://worker:{SECRET}@127.0.0.1:{silent_server}/apelier"
    settings = Settings(database_url=url, data_dir=tmp_path)
    with pytest.raises(DatabaseUnavailable) as caught:
        preflight.database(settings, timeout_s=1)
    assert "no answer before the connect timeout" in _one_line(caught.value)


def test_login_and_missing_database_and_schema() -> None:
    url = f"postgresql://worker:{SECRET}@db.example.com:5432/apelier"
    login = database_error(
        psycopg.OperationalError(
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
            'FATAL:  password authentication failed for user "worker"'
        ),
        url,
    )
    assert "refused the login" in _one_line(login) and "user and password in DATABASE_URL" in _one_line(login)
    nodb = database_error(psycopg.OperationalError('FATAL:  database "apelier" does not exist'), url)
    assert "create it" in _one_line(nodb)
    schema = database_error(pg.UndefinedTable('relation "public.processing_jobs" does not exist'), url)
    assert isinstance(schema, DatabaseSchemaError) and "run `apelier-worker migrate`" in _one_line(schema)


def test_classify_uses_the_same_mapping_and_leaves_our_own_sql_errors_internal() -> None:
    lost = classify(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert (lost.scope, lost.retryable, lost.kind) == ("job", True, "DatabaseUnavailable")
    assert "lost the connection" in lost.reason
    bug = classify(pg.UniqueViolation("duplicate key value violates unique constraint"))
    assert bug.kind == "UniqueViolation" and bug.reason.startswith("internal error")
    assert database_error(ValueError("x")) is None


def test_redact_url_never_shows_a_password() -> None:
    for url in (
        f"postgresql://u:{SECRET}@h/db",
        f"postgresql://h/db?sslmode=require&password={SECRET}",
        f"host=h password={SECRET} dbname=x",
        f"u:{SECRET}@h/db",
        SECRET,
    ):
        assert SECRET not in redact_url(url), url
