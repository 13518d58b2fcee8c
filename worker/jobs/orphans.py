"""Outputs uploaded for photos whose rows were never written: deleted from storage, one way.

A photo's output keys are written down before they are uploaded (``apelier.photo_processed``, into
``apelier.pending_outputs``) and struck off when its row names them (``apelier.finish_photo``, which
marks it edited and bills it). Keys left over were uploaded for a photo never recorded: its job was
canceled in between (``apelier.cancel_job`` or the app's ``status='failed'``), its row deleted, or
its worker died and the job then ended. Nobody is billed for them and the app never shows them.
:func:`delete_unrecorded` removes them, forgetting each row once its object is gone:

* the worker whose run ends canceled (or finds the job row deleted) deletes its own at once
  (``JobStore.own_unrecorded_outputs``), before the cancel is acknowledged;
* every worker between jobs sweeps what is left a lease after its job ended
  (``JobStore.unrecorded_outputs``): a dead worker's, or a delete that failed.

A key the photo's row names (a restyle writes in place, under the keys the row already holds) is only
forgotten, never deleted; a key outside the photographer's folder is never touched. The rows have no
foreign key, so they outlive the app deleting the job row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from worker.errors import StorageError, TenantViolationError, first_line
from worker.queue.store import JobStore
from worker.service import logs
from worker.storage.base import Storage, check_tenant_key

log = logs.get("orphans")


def delete_unrecorded(
    jobs: JobStore, storage: Storage, rows: Iterable[dict[str, Any]], owner: str | None = None
) -> list[str]:
    """Delete each row's object unless ``referenced``, then forget the row; returns the keys deleted.

    ``owner``: the photographer whose folder every key must be in (else each row's). A delete that
    fails keeps its row, for the periodic sweep to try again; cleaning up never fails a job's end.
    """
    deleted: list[str] = []
    for row in rows:
        key, photographer = str(row["key"]), owner or row.get("photographer_id")
        if not row["referenced"] and photographer is not None:
            try:
                storage.delete(check_tenant_key(key, str(photographer), what="unrecorded output"))
            except TenantViolationError as exc:
                log.error("unrecorded_output_refused", key=key, reason=exc.message)
            except (StorageError, OSError) as exc:  # kept: the sweep tries again
                log.warning("unrecorded_output_not_deleted", key=key, reason=first_line(exc))
                continue
            else:
                deleted.append(key)
                log.info("unrecorded_output_deleted", key=key, job_id=str(row["job_id"]))
        jobs.forget_output(str(row["job_id"]), key)
    return deleted
