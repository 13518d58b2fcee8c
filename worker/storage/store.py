"""Storage: where originals are read and deliverables written. The only other module that talks out.

:class:`Storage` is a small protocol with two implementations:

* :class:`LocalStorage` — a directory (the embedded default, the demo, tests);
  keys can never leave it.
* :class:`SupabaseStorage` — Supabase Storage through ``storage3`` with the
  service-role key. ``storage3`` has no retries of its own, a 20 s timeout,
  ``text/plain`` as its default content type and wants ``upsert`` as the
  string ``"true"``; all of that is handled here. Timeouts, connection errors,
  5xx and 429 are retried with exponential backoff (tenacity); 4xx never are.
  Files over 6 MB go through the resumable (TUS) endpoint, as Supabase advises.

The worker holds a key that can read every tenant's files, so every key it is
handed by a job is checked with :func:`check_tenant_key` first.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

import httpx
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from worker.errors import (
    MissingObjectError,
    StorageError,
    TenantViolationError,
    TransientStorageError,
    first_line,
)
from worker.service import logs, notify

T = TypeVar("T")
log = logs.get("storage")

RESUMABLE_THRESHOLD = 6 * 1024 * 1024
TUS_CHUNK = 6 * 1024 * 1024  # Supabase's resumable endpoint takes 6 MB chunks


class Storage(Protocol):
    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder), recursively, sorted."""
        ...

    def describe(self) -> str: ...


def validate_key(key: str) -> str:
    """A storage key is a relative POSIX path without ``..``, ``.``, empty parts, backslashes or NUL."""
    if not isinstance(key, str) or not key:
        raise StorageError("empty storage key")
    if "\x00" in key or "\\" in key:
        raise StorageError(f"storage key {key!r} contains a NUL or backslash")
    if key.startswith("/") or PurePosixPath(key).is_absolute():
        raise StorageError(f"storage key {key!r} is absolute")
    parts = key.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        raise StorageError(f"storage key {key!r} has an empty, '.' or '..' segment")
    return key


def check_tenant_key(key: str | None, photographer_id: str, *, what: str = "photo") -> str:
    """Refuse any key that is not inside the photographer's own folder (``{photographer_id}/…``)."""
    if not key:
        raise TenantViolationError(f"{what} has no storage key")
    try:
        validate_key(key)
    except StorageError as exc:
        raise TenantViolationError(f"{what} key refused: {exc.message}") from None
    if key.split("/", 1)[0] != str(photographer_id) or "/" not in key:
        raise TenantViolationError(
            f"{what} key {key!r} is outside photographer {photographer_id}'s folder; refused (never read)"
        )
    return key


class LocalStorage:
    """Objects as files under ``root``; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"storage key {key!r} escapes the storage folder")
        return path

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MissingObjectError(f"{key} is not in storage; upload the photo again") from None

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root).as_posix())
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".upload-")
        )

    def describe(self) -> str:
        return f"local folder {self.root}"


def _status_of(exc: BaseException) -> int | None:
    from storage3.exceptions import StorageApiError

    if isinstance(exc, StorageApiError):
        try:
            return int(exc.status)
        except (TypeError, ValueError):
            return None
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: timeouts, connection failures, 5xx, 429. Never other 4xx."""
    if isinstance(exc, httpx.TimeoutException | httpx.TransportError):
        return True
    status = _status_of(exc)
    return status is not None and (status >= 500 or status == 429)


class SupabaseStorage:
    """Supabase Storage with the service-role key."""

    def __init__(
        self,
        url: str,
        service_key: str,
        bucket: str,
        *,
        timeout_s: float = 60.0,
        retries: int = 5,
        backoff_s: float = 0.5,
    ) -> None:
        from storage3 import SyncStorageClient

        self.url = url.rstrip("/")
        self.bucket = bucket
        self.retries = retries
        self.backoff_s = backoff_s
        self._headers = {"apikey": service_key, "Authorization": f"Bearer {service_key}"}
        self._http = httpx.Client(
            headers=self._headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        self._client = SyncStorageClient(f"{self.url}/storage/v1/", self._headers, http_client=self._http)
        self._files = self._client.from_(bucket)

    def close(self) -> None:
        self._http.close()

    # -- retry plumbing -----------------------------------------------------------------------
    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("storage_retry", op=what, key=key, attempt=state.attempt_number, error=_short(exc))

        retrying = retry(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_random_exponential(multiplier=self.backoff_s, max=30.0),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            result = retrying(fn)()
        except Exception as exc:
            raise self._translate(what, key, exc) from exc
        notify.transferred()  # I/O moves: the watchdog's budget for waiting on it starts again
        return result

    def _translate(self, what: str, key: str, exc: Exception) -> Exception:
        if isinstance(exc, StorageError):
            return exc
        if is_transient(exc):
            return TransientStorageError(
                f"storage {what} of {key} kept failing ({_short(exc)}) after {self.retries} retries; "
                "the job will be retried — check Supabase status if this persists"
            )
        status = _status_of(exc)
        if what == "download" and status in (400, 404):
            return MissingObjectError(f"{key} is not in storage ({_short(exc)}); upload the photo again")
        if status in (401, 403):
            return StorageError(
                f"storage refused {what} of {key} ({status}); check SUPABASE_SERVICE_ROLE_KEY and STORAGE_BUCKET"
            )
        return StorageError(f"storage {what} of {key} failed: {_short(exc)}")

    # -- Storage ------------------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        validate_key(key)
        return self._call("download", key, lambda: self._files.download(key))

    def put(self, key: str, data: bytes, content_type: str) -> None:
        validate_key(key)
        if len(data) > RESUMABLE_THRESHOLD:
            self._put_resumable(key, data, content_type)  # each of its requests is retried on its own
            return
        options: dict[str, Any] = {"content-type": content_type, "cache-control": "3600", "upsert": "true"}
        self._call("upload", key, lambda: self._files.upload(key, data, options))  # type: ignore[arg-type]

    def exists(self, key: str) -> bool:
        validate_key(key)
        return self._call("exists", key, lambda: self._files.exists(key))

    def delete(self, key: str) -> None:
        validate_key(key)
        self._call("delete", key, lambda: self._files.remove([key]))

    def list(self, prefix: str) -> list[str]:
        folder = prefix.strip("/")
        if folder:
            validate_key(folder)
        found: list[str] = []
        pending = [folder]
        while pending:
            current = pending.pop()
            offset = 0
            while True:
                page = self._call(
                    "list",
                    current or "/",
                    lambda current=current, offset=offset: self._files.list(  # type: ignore[misc]
                        current, {"limit": 1000, "offset": offset}
                    ),
                )
                for entry in page:
                    name = f"{current}/{entry['name']}" if current else entry["name"]
                    if entry.get("id") is None:
                        pending.append(name)  # a folder
                    else:
                        found.append(name)
                if len(page) < 1000:
                    break
                offset += 1000
        return sorted(found)

    def describe(self) -> str:
        return f"Supabase Storage {self.url} bucket {self.bucket}"

    # -- resumable uploads (TUS 1.0.0) --------------------------------------------------------
    def _put_resumable(self, key: str, data: bytes, content_type: str) -> None:
        endpoint = f"{self.url}/storage/v1/upload/resumable"
        metadata = ",".join(
            f"{name} {base64.b64encode(value.encode()).decode()}"
            for name, value in (
                ("bucketName", self.bucket),
                ("objectName", key),
                ("contentType", content_type),
                ("cacheControl", "3600"),
            )
        )

        def create() -> str:
            created = self._http.post(
                endpoint,
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Upload-Length": str(len(data)),
                    "Upload-Metadata": metadata,
                    "x-upsert": "true",
                },
            )
            created.raise_for_status()
            location = created.headers.get("Location")
            if not location:
                raise StorageError(f"resumable upload of {key}: the server gave no Location")
            return str(httpx.URL(endpoint).join(location))

        location = self._call("upload", key, create)
        offset = 0
        resync = False  # after a failed PATCH, ask the server how much it kept before sending again

        def send() -> int:
            nonlocal resync
            start = offset
            if resync:
                head = self._http.head(location, headers={"Tus-Resumable": "1.0.0"})
                head.raise_for_status()
                start = int(head.headers.get("Upload-Offset", offset))
                if start >= len(data):  # the last chunk arrived; only its answer was lost
                    return start
            resync = True
            chunk = data[start : start + TUS_CHUNK]
            resp = self._http.patch(
                location,
                content=chunk,
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Upload-Offset": str(start),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            resp.raise_for_status()
            resync = False
            return int(resp.headers.get("Upload-Offset", start + len(chunk)))

        while offset < len(data):
            offset = self._call("upload", key, send)  # the same backoff as every other request


def from_settings(settings: Any) -> Storage:
    """The storage the settings describe: Supabase when ``SUPABASE_URL`` is set, else a local folder."""
    if settings.supabase_url:
        return SupabaseStorage(
            settings.supabase_url,
            settings.supabase_service_role_key,
            settings.storage_bucket,
            timeout_s=settings.storage_timeout_s,
            retries=settings.storage_retries,
        )
    return LocalStorage(Path(settings.data_dir) / "storage" / settings.storage_bucket)


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    return f"{type(exc).__name__}: {first_line(exc, 160)}" if str(exc).strip() else type(exc).__name__
