"""Which storage the settings describe: Supabase when ``SUPABASE_URL`` is set, else a local folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.storage.base import Storage
from worker.storage.local import LocalStorage
from worker.storage.supabase import SupabaseStorage


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
