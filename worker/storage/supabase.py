"""Supabase Storage through ``storage3`` with the service-role key.

``storage3`` has no retries of its own, a 20 s timeout, ``text/plain`` as its default content type and
wants ``upsert`` as the string ``"true"``; all of that is handled here. Timeouts, connection errors,
5xx and 429 are retried with exponential backoff (tenacity); 4xx never are. Files over 6 MB go
through the resumable (TUS) endpoint (``tus.py``), as Supabase advises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from worker.errors import MissingObjectError, StorageError, TransientStorageError, first_line
from worker.service import logs, notify
from worker.storage import tus
from worker.storage.base import validate_key

T = TypeVar("T")
log = logs.get("storage")

RESUMABLE_THRESHOLD = 6 * 1024 * 1024  # Supabase advises standard uploads up to 6 MB, resumable above


def _status_of(exc: BaseException) -> int | None:
    from storage3.exceptions import StorageApiError  # noqa: PLC0415 - storage3 (0.16 s), only with Supabase

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
        from storage3 import SyncStorageClient  # noqa: PLC0415 - storage3 (0.16 s), only with Supabase

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
            endpoint = f"{self.url}/storage/v1/upload/resumable"

            def attempt(fn: Callable[[], T]) -> T:  # each of its requests is retried on its own
                return self._call("upload", key, fn)

            tus.upload(self._http, endpoint, key, data, bucket=self.bucket, content_type=content_type, attempt=attempt)
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


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    if isinstance(exc, httpx.HTTPStatusError):  # a resumable request: Storage's reason is the body, as text
        reason = (exc.response.text.strip() or exc.response.reason_phrase).splitlines()
        return f"HTTP {exc.response.status_code}: {reason[0][:160] if reason else 'no reason given'}"
    return f"{type(exc).__name__}: {first_line(exc, 160)}" if str(exc).strip() else type(exc).__name__
