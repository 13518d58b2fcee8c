"""Resumable uploads (TUS 1.0.0) to Supabase Storage, for files over the standard upload's 6 MB.

One creating POST, then 6 MB PATCHes. Every request carries ``x-upsert: true``: Supabase Storage
reads it on each resumable request, not only on the POST that creates the upload, and a PATCH
without it over a key that already exists (a restyle, a retried photo) is refused with 409.

Each request goes through the caller's ``attempt`` (its retry and backoff policy) on its own, so a
failed chunk is sent again, never the whole file: after a failed PATCH the server is asked (HEAD)
how much it kept before anything is sent again.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Protocol, TypeVar

import httpx

from worker.errors import StorageError

T = TypeVar("T")

CHUNK = 6 * 1024 * 1024  # Supabase's resumable endpoint takes 6 MB chunks


class Attempt(Protocol):
    """Runs one request with retries; what it returns is the request's result."""

    def __call__(self, fn: Callable[[], T]) -> T: ...


def upload(
    http: httpx.Client, endpoint: str, key: str, data: bytes, *, bucket: str, content_type: str, attempt: Attempt
) -> None:
    """Upload ``data`` to ``bucket/key`` through the resumable endpoint (``…/storage/v1/upload/resumable``)."""
    metadata = ",".join(
        f"{name} {base64.b64encode(value.encode()).decode()}"
        for name, value in (
            ("bucketName", bucket),
            ("objectName", key),
            ("contentType", content_type),
            ("cacheControl", "3600"),
        )
    )

    tus = {"Tus-Resumable": "1.0.0", "x-upsert": "true"}  # on every request (see above)

    def create() -> str:
        created = http.post(endpoint, headers={**tus, "Upload-Length": str(len(data)), "Upload-Metadata": metadata})
        created.raise_for_status()
        location = created.headers.get("Location")
        if not location:
            raise StorageError(f"resumable upload of {key}: the server gave no Location")
        return str(httpx.URL(endpoint).join(location))

    location = attempt(create)
    offset = 0
    resync = False  # after a failed PATCH, ask the server how much it kept before sending again

    def send() -> int:
        nonlocal resync
        start = offset
        if resync:
            head = http.head(location, headers=tus)
            head.raise_for_status()
            start = int(head.headers.get("Upload-Offset", offset))
            if start >= len(data):  # the last chunk arrived; only its answer was lost
                return start
        resync = True
        chunk = data[start : start + CHUNK]
        resp = http.patch(
            location,
            content=chunk,
            headers={**tus, "Upload-Offset": str(start), "Content-Type": "application/offset+octet-stream"},
        )
        resp.raise_for_status()
        resync = False
        return int(resp.headers.get("Upload-Offset", start + len(chunk)))

    while offset < len(data):
        offset = attempt(send)  # the same backoff as every other request
