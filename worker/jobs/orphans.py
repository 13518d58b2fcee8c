"""Outputs a job uploaded for photos whose rows it never wrote: collected, then deleted.

A photo's outputs are uploaded before its row is written (``apelier.finish_photo``, which marks it
edited and bills it). When the row is not written — the job was canceled in between (by
``apelier.cancel_job`` or by the app's ``status='failed'``), or its row deleted — the objects are
orphans: no photo row points at them, the app never shows them, nobody is billed for them.
:class:`Unrecorded` collects their keys as they happen (from any thread); :meth:`Unrecorded.delete`
removes those that no photo row points at. A restyle writes a photo's outputs in place, under the
keys its row already holds: those keys are referenced and stay.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable

from worker.errors import StorageError, first_line
from worker.service import logs
from worker.storage.base import Storage

log = logs.get("orphans")


class Unrecorded:
    """Storage keys uploaded for photos whose rows were not written (thread-safe)."""

    def __init__(self) -> None:
        self._keys: dict[str, None] = {}  # insertion-ordered set
        self._lock = threading.Lock()

    def add(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._keys.update(dict.fromkeys(k for k in keys if k))

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def delete(self, storage: Storage, referenced: Collection[str]) -> list[str]:
        """Delete every collected key that is not in ``referenced`` (the keys photo rows point at).

        Returns the keys deleted. A key that cannot be deleted is logged and forgotten: cleaning up
        never fails the job's end.
        """
        with self._lock:
            keys, self._keys = list(self._keys), {}
        deleted: list[str] = []
        for key in keys:
            if key in referenced:
                continue
            try:
                storage.delete(key)
            except (StorageError, OSError) as exc:
                log.warning("orphan_not_deleted", key=key, error=first_line(exc))
                continue
            deleted.append(key)
        if deleted:
            log.info("orphans_deleted", count=len(deleted))
        return deleted
