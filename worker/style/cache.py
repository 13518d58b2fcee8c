"""Style models for gallery jobs: downloaded once, cached on disk, kept warm in memory.

A profile's model file lives at ``{photographer_id}/styles/{style_profile_id}.pt`` and retraining
overwrites it, so the cache is keyed by the storage key *and* the profile's version (its
``training_completed_at``/``updated_at``): a retrained style is fetched again, an unchanged one
never is.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

from worker.jobs.runtime import Runtime
from worker.style import model as style_model

MAX_IN_MEMORY = 16
_memory: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()


def applied_model_key(profile: dict[str, Any]) -> str | None:
    """The storage key of the model galleries apply for this profile: its ``model_key``, else the
    app's legacy ``model_weights_key`` when the profile is ``ready``; None: no model."""
    status = profile.get("training_status") or profile.get("status")
    key = profile.get("model_key") or (profile.get("model_weights_key") if status == "ready" else None)
    return str(key) if key else None


def cache_id(key: str, version: str) -> str:
    return hashlib.sha256(f"{key}|{version}".encode()).hexdigest()[:32]


def get(runtime: Runtime, key: str, version: str) -> Any:
    """The style stored at ``key`` (already tenant-checked), loaded with ``weights_only``."""
    ident = cache_id(key, version)
    with _lock:
        if ident in _memory:
            _memory.move_to_end(ident)
            return _memory[ident]
    folder = runtime.settings.data_dir / "styles"
    cached = folder / f"{ident}.pt"
    data = cached.read_bytes() if cached.is_file() else runtime.storage.get(key)
    style = style_model.load(data, source=key)  # a corrupt file raises before it is cached
    if not cached.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)
    with _lock:
        _memory[ident] = style
        while len(_memory) > MAX_IN_MEMORY:
            _memory.popitem(last=False)
    return style
