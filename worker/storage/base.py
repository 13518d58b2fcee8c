"""What every storage is: the :class:`Storage` protocol, and the checks every key passes first.

The worker holds a key that can read every tenant's files, so every key it is handed by a job is
checked with :func:`check_tenant_key` before it is read or written; :func:`validate_key` is the shape
every implementation insists on (a relative POSIX path that cannot climb out).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Protocol

from worker.errors import StorageError, TenantViolationError


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
