"""The job lifecycle: what a worker does to the jobs it runs, over one :class:`Connection`.

Claim, heartbeat, progress, each photo started, processed, finished or failed, culling
suggestions, complete, the end of a failed attempt (with retry), release, cancel, requeue stale
jobs, outputs never recorded, the worker registry, and the two steps of a style training that touch
its profile. Each is one SQL function of ``sql/migrations/0003_functions.sql`` (or a later
migration: ``0007`` for runs, photos in flight and pending outputs, ``0008`` for chunks of a split
job, whose holder uses the same operations on the job), called by name from
``sql/queries.sql``; every write after the claim checks that the job is still leased to this
worker and answers the job's state for it ('processing', 'canceled', 'lost', 'deleted'…).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from worker.queue.connection import Connection

JOB_TYPES = ("gallery", "restyle", "train_style")


@dataclass(frozen=True)
class Job:
    """A claimed ``processing_jobs`` row."""

    id: str
    job_type: str
    photographer_id: str
    gallery_id: str | None
    style_profile_id: str | None
    payload: dict[str, Any]
    settings_override: dict[str, Any]
    attempts: int
    max_attempts: int
    progress: dict[str, Any]
    total_images: int = 0  # as the row held it when claimed
    created_at: Any = None
    started_at: Any = None  # set by the first claim, on the database's clock
    # This claim is the job's first (its wait in the queue ends now). Not ``attempts == 1``: a release
    # on shutdown gives the attempt back, and the app's re-queue resets the count to 0.
    first_claim: bool = False
    # A chunk of a split job (migration 8): its number (None: the job itself), the job's chunk count,
    # and the chunk's photos. ``attempts`` is then the chunk's.
    chunk: int | None = None
    chunks: int = 0
    chunk_photo_ids: tuple[str, ...] = ()

    @property
    def kept_total(self) -> int | None:
        """``total_images`` as the job's creator set it, which the worker keeps; None: the worker counts.

        The app sets it when it creates a job and never changes it; the worker writes its own count
        only where the row has none (0), or still holds the count a worker wrote (``progress.total``):
        a job the app re-queues for new uploads is counted again.
        """
        if self.total_images > 0 and self.total_images != self.progress.get("total"):
            return self.total_images
        return None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(
            id=str(row["id"]),
            job_type=row.get("job_type") or "gallery",
            photographer_id=str(row["photographer_id"]),
            gallery_id=str(row["gallery_id"]) if row.get("gallery_id") else None,
            style_profile_id=str(row["style_profile_id"]) if row.get("style_profile_id") else None,
            payload=row.get("payload") or {},
            settings_override=row.get("settings_override") or {},
            attempts=int(row.get("attempts") or 0),
            max_attempts=int(row.get("max_attempts") or 3),
            progress=row.get("progress") or {},
            total_images=int(row.get("total_images") or 0),
            created_at=row.get("created_at"),
            started_at=row.get("started_at"),
            # The claim sets heartbeat_at to now(), and started_at too on the first claim only.
            first_claim=row.get("started_at") is not None and row.get("started_at") == row.get("heartbeat_at"),
        )

    @classmethod
    def from_chunk_row(cls, row: dict[str, Any]) -> Job:
        """A claimed chunk (``apelier.claim_chunk``): its job's row, and the chunk's number, attempts and photos."""
        job = cls.from_row(row["job"])
        return replace(
            job,
            attempts=int(row["chunk_attempts"]),
            first_claim=False,
            chunk=int(row["chunk_no"]),
            chunks=int(row["chunk_count"]),
            chunk_photo_ids=tuple(str(p) for p in row["chunk_photos"]),
        )


class JobStore:
    """The job lifecycle for one worker (``worker_id``) over one connection."""

    def __init__(self, connection: Connection, worker_id: str) -> None:
        self.connection = connection
        self.worker_id = worker_id

    def _state(self, query: str, /, **params: Any) -> str:
        row = self.connection.one(query, worker=self.worker_id, **params)
        return str(row["state"]) if row else "deleted"

    def claim(self, job_types: Sequence[str] = JOB_TYPES) -> Job | None:
        """The next chunk of a split job (they belong to galleries already started), else the next job."""
        row = self.connection.one("claim_chunk", worker=self.worker_id, job_types=list(job_types))
        if row:
            return Job.from_chunk_row(row)
        row = self.connection.one("claim_job", worker=self.worker_id, job_types=list(job_types))
        return Job.from_row(row) if row else None

    def split(self, job_id: str, photo_ids: Sequence[str], chunk_size: int, *, processed: int, total: int) -> str:
        """Split a job this worker holds into chunks of ``chunk_size`` photos (in this order), which any
        worker may claim; the job row keeps ``processed``/``total``. Returns the job's state before
        ('processing': split)."""
        return self._state(
            "split_job",
            job=job_id,
            photos=list(photo_ids),
            chunk_size=chunk_size,
            processed=processed,
            total=total,
        )

    def end_chunk(self, job_id: str) -> str:
        """This worker's chunk is done. 'finalise': it was the last, and the job is now leased to this
        worker to finish; 'done': others remain; else the job's state for this worker ('canceled'…)."""
        return self._state("end_chunk", job=job_id)

    def chunks(self, job_id: str) -> list[dict[str, Any]]:
        """The job's chunks: chunk, status, attempts, locked_by, photos, edited."""
        return self.connection.all("job_chunks", job=job_id)

    def chunk_workers(self, job_id: str) -> dict[str, int]:
        """Photos of the job's chunks it edited, per worker that edited them."""
        return {str(r["worker"]): int(r["photos"]) for r in self.connection.all("chunk_workers", job=job_id)}

    def heartbeat(self, job_id: str) -> str:
        return self._state("heartbeat", job=job_id)

    def update_progress(
        self,
        job_id: str,
        *,
        phase: str,
        processed: int,
        total: int,
        progress: dict[str, Any],
        phase_timings: dict[str, Any],
    ) -> str:
        return self._state(
            "update_progress",
            job=job_id,
            phase=phase,
            processed=processed,
            total=total,
            progress=progress,
            phase_timings=phase_timings,
        )

    def finish_photo(self, job_id: str, photo_id: str, fields: dict[str, Any], *, bill: bool = True) -> str:
        return self._state("finish_photo", job=job_id, photo=photo_id, fields=fields, bill=bill)

    def fail_photo(self, job_id: str, photo_id: str, error: dict[str, Any]) -> str:
        return self._state("fail_photo", job=job_id, photo=photo_id, error=error)

    def merge_photo_suggestions(self, job_id: str, suggestions: dict[str, dict[str, Any]]) -> int:
        row = self.connection.one("merge_photo_suggestions", job=job_id, worker=self.worker_id, suggestions=suggestions)
        return int(row["updated"]) if row else 0

    def complete(
        self,
        job_id: str,
        *,
        processed: int,
        total: int,
        progress: dict[str, Any],
        phase_timings: dict[str, Any],
        summary: str | None,
    ) -> bool:
        row = self.connection.one(
            "complete_job",
            job=job_id,
            worker=self.worker_id,
            processed=processed,
            total=total,
            progress=progress,
            phase_timings=phase_timings,
            summary=summary,
        )
        return bool(row and row["ok"])

    def fail(self, job_id: str, error: str, retry_in_s: float | None) -> str:
        """The job failed; the attempt counts whatever happened (``end_attempt`` decides instead)."""
        return self._state("fail_job", job=job_id, error=error, retry_in_s=retry_in_s)

    def end_attempt(self, job_id: str, error: str, retry_in_s: float | None, *, outside: bool) -> str:
        """This run failed: back to the queue after ``retry_in_s`` (None: not retryable), or 'failed'.

        The attempt counts against ``max_attempts`` only when the run edited no photo and the cause
        is the job's own (``outside`` False); otherwise it is given back (``apelier.end_attempt``).
        Returns the job's new state ('queued', 'failed'), or what it is for this worker.
        """
        return self._state("end_attempt", job=job_id, error=error, retry_in_s=retry_in_s, outside=outside)

    def setup_done(self, job_id: str) -> str:
        """The job's own set-up is done: a death from now on with no photo being processed is not its fault."""
        return self._state("job_setup_done", job=job_id)

    def photo_started(self, job_id: str, photo_id: str) -> str:
        """A photo is being processed (decoding begins): a death now is held against it."""
        return self._state("photo_started", job=job_id, photo=photo_id)

    def photo_processed(self, job_id: str, photo_id: str, keys: Sequence[str]) -> str:
        """A photo's outputs are encoded; ``keys`` are about to be uploaded (pending until recorded)."""
        return self._state("photo_processed", job=job_id, photo=photo_id, keys=list(keys))

    def photos_in_flight(self, job_id: str) -> dict[str, tuple[int, bool]]:
        """Photos of the job that runs of it died processing: photo id → (deaths, isolated)."""
        rows = self.connection.all("photos_in_flight", job=job_id)
        return {str(r["photo_id"]): (int(r["deaths"]), bool(r["isolated"])) for r in rows}

    def release(self, job_id: str) -> bool:
        row = self.connection.one("release_job", job=job_id, worker=self.worker_id)
        return bool(row and row["ok"])

    def ack_cancel(self, job_id: str, processed: int, progress: dict[str, Any]) -> bool:
        row = self.connection.one(
            "ack_cancel", job=job_id, worker=self.worker_id, processed=processed, progress=progress
        )
        return bool(row and row["ok"])

    def cancel(self, job_id: str) -> str | None:
        """Cancel a queued or running job (the app's action; any worker may run it)."""
        row = self.connection.one("cancel_job", job=job_id)
        return str(row["status"]) if row and row["status"] else None

    def requeue_stale(self, lease_s: float) -> list[dict[str, Any]]:
        return self.connection.all("requeue_stale", lease_s=lease_s)

    def unrecorded_outputs(self, lease_s: float, limit: int = 100) -> list[dict[str, Any]]:
        """Outputs uploaded for photos no run will record (their job ended): job_id, key,
        photographer_id, referenced (the photo's row names the key: forget it, never delete it)."""
        return self.connection.all("unrecorded_outputs", lease_s=lease_s, limit=limit)

    def own_unrecorded_outputs(self, job_id: str) -> list[dict[str, Any]]:
        """This worker's outputs of a job canceled for it (or deleted) whose photos it never recorded, at
        once (same fields as :meth:`unrecorded_outputs`); none while the job is processing for it."""
        return self.connection.all("own_unrecorded_outputs", job=job_id, worker=self.worker_id)

    def forget_output(self, job_id: str, key: str) -> None:
        self.connection.one("forget_output", job=job_id, key=key)

    def pending(self, job_types: Sequence[str] = JOB_TYPES) -> tuple[int, int]:
        row = self.connection.one("queue_pending", job_types=list(job_types))
        return (int(row["queued"]), int(row["processing"])) if row else (0, 0)

    def worker_seen(
        self,
        *,
        hostname: str,
        pid: int,
        version: str,
        device: str,
        state: str,
        job_id: str | None,
        info: dict[str, Any],
    ) -> None:
        self.connection.one(
            "worker_seen",
            worker=self.worker_id,
            hostname=hostname,
            pid=pid,
            version=version,
            device=device,
            state=state,
            job=job_id,
            info=info,
        )

    def start_style_training(self, job_id: str) -> str:
        """Move a ``train_style`` job's profile to 'training' if the job is still ours and processing.

        Returns the job's state for this worker ('processing' when the profile was moved), as
        :meth:`heartbeat` does: a cancel that came first leaves the profile as it was.
        """
        return self._state("start_style_training", job=job_id)

    def update_style_training(
        self,
        profile_id: str,
        *,
        training_status: str,
        training_method: str | None = None,
        model_key: str | None = None,
        model_filename: str | None = None,
        training_time_s: float | None = None,
        pairs_used: int | None = None,
        training_error: str | None = None,
    ) -> None:
        self.connection.one(
            "update_style_training",
            profile=profile_id,
            training_status=training_status,
            training_method=training_method,
            model_key=model_key,
            model_filename=model_filename,
            training_time_s=training_time_s,
            pairs_used=pairs_used,
            training_error=training_error,
        )
