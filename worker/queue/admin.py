"""The operator's side: migrate, the schema version, what the app does (enqueue, the demo's and the
tests' rows, and the HTTP API's jobs and style profiles) and the fleet's status, over one connection."""

from __future__ import annotations

from typing import Any

from worker.queue import migrations
from worker.queue.connection import Connection, Row


class Admin:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- schema -------------------------------------------------------------------------------
    def migrate(self) -> tuple[int | None, int]:
        """Apply the pending migrations (``worker/queue/migrations.py``): versions before and after."""
        return migrations.migrate(self.connection)

    def schema_version(self) -> int | None:
        return migrations.schema_version(self.connection)

    # -- what the app does (for `enqueue`, the demo and tests) --------------------------------
    def enqueue(
        self,
        *,
        photographer_id: str,
        gallery_id: str | None = None,
        style_profile_id: str | None = None,
        job_type: str = "gallery",
        payload: dict[str, Any] | None = None,
        priority: int = 100,
        settings_override: dict[str, Any] | None = None,
    ) -> str:
        total = 0
        if gallery_id is not None:
            row = self.connection.one("count_gallery_photos", gallery=gallery_id)
            total = int(row["n"]) if row else 0
            if payload and payload.get("photo_ids"):
                total = len(payload["photo_ids"])
        row = self.connection.one(
            "insert_job",
            gallery=gallery_id,
            photographer=photographer_id,
            style=style_profile_id,
            total=total,
            job_type=job_type,
            payload=payload or {},
            priority=priority,
            settings_override=settings_override,
        )
        assert row is not None
        return str(row["id"])

    def enqueue_gallery(
        self,
        *,
        gallery_id: str,
        style_profile_id: str | None,
        settings_override: dict[str, Any] | None,
        payload: dict[str, Any] | None = None,
    ) -> tuple[str, bool]:
        """Queue the gallery, unless a gallery job of it is still queued with the same style, settings and
        payload: that is the same request, and its id is the answer (a queued job with different ones is
        a different request: a new job beside it). Returns ``(job_id, reused)``. One SQL path with the
        app's rpc (``apelier.enqueue_gallery``, migration 9); two requests at once queue one job."""
        with self.connection.transaction():
            row = self.connection.one(
                "enqueue_gallery",
                gallery=gallery_id,
                style=style_profile_id,
                settings_override=settings_override,
                payload=payload or {},
            )
        assert row is not None
        return str(row["id"]), bool(row["reused"])

    def enqueue_training(
        self, *, photographer_id: str, style_profile_id: str, payload: dict[str, Any]
    ) -> tuple[str, bool]:
        """Queue a ``train_style`` job for an existing profile, unless one is queued or running: then that
        one's id. Returns ``(job_id, queued_now)``."""
        with self.connection.transaction():
            self.connection.one("lock_style_enqueue", profile=style_profile_id)
            active = self.connection.one("active_training_job", profile=style_profile_id)
            if active is not None:
                return str(active["id"]), False
            job_id = self.enqueue(
                photographer_id=photographer_id,
                style_profile_id=style_profile_id,
                job_type="train_style",
                payload=payload,
            )
            return job_id, True

    def create_style_profile(
        self,
        *,
        photographer_id: str,
        name: str,
        description: str | None,
        reference_keys: list[str],
        settings: dict[str, Any],
        training_method: str,
        payload: dict[str, Any],
    ) -> tuple[str, str]:
        """A new style profile (``pending``) and the ``train_style`` job that trains it, together or not
        at all. Returns ``(style_profile_id, job_id)``."""
        with self.connection.transaction():
            profile_id = self._id(
                "insert_training_style_profile",
                photographer=photographer_id,
                name=name,
                description=description,
                reference_keys=reference_keys,
                settings=settings,
                method=training_method,
            )
            job_id = self.enqueue(
                photographer_id=photographer_id,
                style_profile_id=profile_id,
                job_type="train_style",
                payload=payload,
            )
            return profile_id, job_id

    def upsert_photographer(self, photographer_id: str, name: str, email: str | None = None) -> str:
        return self._id("upsert_photographer", id=photographer_id, name=name, email=email)

    def insert_gallery(self, photographer_id: str, title: str) -> str:
        return self._id("insert_gallery", photographer=photographer_id, title=title)

    def insert_photo(
        self,
        *,
        photographer_id: str,
        gallery_id: str,
        key: str,
        filename: str,
        size: int | None = None,
        mime: str | None = None,
        sort_order: int = 0,
    ) -> str:
        return self._id(
            "insert_photo",
            gallery=gallery_id,
            photographer=photographer_id,
            key=key,
            filename=filename,
            size=size,
            mime=mime,
            sort_order=sort_order,
        )

    def insert_style_profile(self, photographer_id: str, name: str, settings: dict[str, Any] | None = None) -> str:
        return self._id("insert_style_profile", photographer=photographer_id, name=name, settings=settings or {})

    def _id(self, query: str, /, **params: Any) -> str:
        row = self.connection.one(query, **params)
        assert row is not None
        return str(row["id"])

    # -- operator views -----------------------------------------------------------------------
    def status_report(self, *, workers_within_s: float = 300, failures: int = 5) -> dict[str, list[Row]]:
        return {
            "queue": self.connection.all("queue_depth"),
            "in_flight": self.connection.all("jobs_in_flight"),
            "chunks": self.connection.all("chunks_in_flight"),
            "workers": self.connection.all("workers_recent", within_s=workers_within_s),
            "failures": self.connection.all("recent_failures", limit=failures),
        }
