"""Reads of the app's own tables (jobs, galleries, photos, style profiles, billing), over one connection.

What the job runners, the CLI and the tests need to know about the app's rows; the writes to them
go through the job lifecycle (``store.py``), which checks the lease first.
"""

from __future__ import annotations

from typing import Any

from worker.queue.connection import Connection, Row


class AppData:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get_job(self, job_id: str) -> Row | None:
        return self.connection.one("get_job", job=job_id)

    def gallery(self, gallery_id: str) -> Row | None:
        """``id``, ``photographer_id`` and ``title`` of a gallery, or None."""
        return self.connection.one("get_gallery", gallery=gallery_id)

    def gallery_photos(self, gallery_id: str) -> list[Row]:
        """Every photo of the gallery that is not culled, in the gallery's order."""
        return self.connection.all("gallery_photos", gallery=gallery_id)

    def gallery_photo_count(self, gallery_id: str) -> int:
        """How many photos of the gallery are not culled."""
        row = self.connection.one("count_gallery_photos", gallery=gallery_id)
        return int(row["n"]) if row else 0

    def gallery_output_keys(self, gallery_id: str) -> set[str]:
        """Every storage key a photo row of the gallery points at (edited, web, thumb, watermarked)."""
        return {str(r["key"]) for r in self.connection.all("gallery_output_keys", gallery=gallery_id)}

    def gallery_filenames(self, gallery_id: str) -> list[Row]:
        return self.connection.all("gallery_filenames", gallery=gallery_id)

    def gallery_analysis(self, gallery_id: str) -> list[Row]:
        """The analysis report and EXIF summary of every analysed photo (for gallery-level culling)."""
        return self.connection.all("gallery_analysis", gallery=gallery_id)

    def style_profile(self, profile_id: str) -> Row | None:
        return self.connection.one("get_style_profile", profile=profile_id)

    def gallery_photo_rows(self, gallery_id: str) -> list[Row]:
        """What the demo prints of each photo: keys, status, size, score, the failure reason."""
        return self.connection.all("gallery_photo_rows", gallery=gallery_id)

    def photographer_for_auth_user(self, auth_user_id: str) -> str | None:
        """The id of the photographer whose ``auth_user_id`` this is (a Supabase user), or None."""
        row = self.connection.one("photographer_for_auth_user", user=auth_user_id)
        return str(row["id"]) if row else None

    def photographer_exists(self, photographer_id: str) -> bool:
        return self.connection.one("get_photographer", photographer=photographer_id) is not None

    def photo(self, photo_id: str) -> Row | None:
        """``id``, ``gallery_id``, ``photographer_id`` and ``is_culled`` of a photo, or None."""
        return self.connection.one("get_photo", photo=photo_id)

    def active_training_job(self, profile_id: str) -> Row | None:
        """The profile's ``train_style`` job that is queued or running (``id``, ``status``), or None."""
        return self.connection.one("active_training_job", profile=profile_id)

    def last_training_payload(self, profile_id: str) -> dict[str, Any] | None:
        """The payload of the profile's latest ``train_style`` job (what it was trained from), or None."""
        row = self.connection.one("last_training_payload", profile=profile_id)
        return dict(row["payload"] or {}) if row else None

    def images_edited_count(self, photographer_id: str) -> int:
        row: dict[str, Any] | None = self.connection.one("photographer_billing", photographer=photographer_id)
        return int(row["images_edited_count"] or 0) if row else 0
