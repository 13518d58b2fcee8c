"""What each route of the HTTP API checks, queues and answers: the old engine's routes, request bodies and
response fields (``services/ai-engine/app/routers/`` in the app's repository), backed by job rows.

Nothing here processes anything: a request checks that what it names exists and belongs to the caller,
writes rows through ``queue.admin`` (the same rows the app or ``apelier-worker enqueue`` would insert:
docs/app.md) and answers at once; the daemon does the work. Every function takes the request's
``Queue`` and ``me``, the caller's photographer id (None: the app's server, which may act for any
photographer), and raises :class:`~worker.errors.RequestError` when the request cannot be queued.

A row that exists but belongs to another photographer is answered like one that does not exist (404),
so ids cannot be probed.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from pydantic import BaseModel, Field

from worker.errors import RequestError, TenantViolationError
from worker.queue.connection import Row
from worker.queue.database import Queue
from worker.storage.base import check_tenant_key

# The train_style job's limits (worker/jobs/style.py, which imports torch; a unit test keeps them equal).
MIN_PAIRS = 5
MIN_PAIRS_WITH_PRESET = 3  # pairs that refine a Lightroom preset
MAX_PAIRS = 200


# -- request bodies (what the app's routes send) ---------------------------------------------------
class GalleryRequest(BaseModel):
    gallery_id: uuid.UUID
    style_profile_id: uuid.UUID | None = None
    settings: dict[str, Any] | None = None  # the job's settings_override
    included_images: int | None = Field(default=None, ge=0)  # the package's photo count, kept in the payload


class RestyleRequest(BaseModel):
    photo_id: uuid.UUID
    style_profile_id: uuid.UUID
    gallery_id: uuid.UUID | None = None


class CreateStyleRequest(BaseModel):
    photographer_id: uuid.UUID
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    reference_image_keys: list[str]
    settings: dict[str, Any] | None = None
    preset_file_key: str | None = None


class Pair(BaseModel):
    original_key: str
    edited_key: str


class CreateNeuralStyleRequest(BaseModel):
    photographer_id: uuid.UUID
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    reference_image_keys: list[str] = Field(default_factory=list)
    pairs: list[Pair]


# -- /api/process ----------------------------------------------------------------------------------
def process_gallery(queue: Queue, me: str | None, body: GalleryRequest) -> dict[str, Any]:
    """Queue the gallery's photos not yet edited (a queued, untried job of the gallery is reused)."""
    gallery_id = str(body.gallery_id)
    gallery = queue.app.gallery(gallery_id)
    if gallery is None or not _mine(me, gallery["photographer_id"]):
        raise RequestError(404, f"Gallery {gallery_id} not found")
    owner = str(gallery["photographer_id"])
    style_id = str(body.style_profile_id) if body.style_profile_id else None
    if style_id:
        _style_profile(queue, owner, style_id)
    total = queue.app.gallery_photo_count(gallery_id)
    if total == 0:
        raise RequestError(400, "No photos found in gallery. Upload photos first.")
    job_id, reused = queue.admin.enqueue_gallery(
        gallery_id=gallery_id,
        style_profile_id=style_id,
        settings_override=body.settings,
        payload={"included_images": body.included_images} if body.included_images else None,
    )
    message = f"Processing queued for {total} photo{'s' if total != 1 else ''}"
    message += " (the same request is already queued: its job)" if reused else ""
    return {"job_id": job_id, "status": "queued", "message": message, "total_images": total}


def process_status(queue: Queue, me: str | None, job_id: uuid.UUID) -> dict[str, Any]:
    """The job row as the old engine reported it (``progress`` in per cent), plus its type and details."""
    job = queue.app.get_job(str(job_id))
    if job is None or not _mine(me, job["photographer_id"]):
        raise RequestError(404, "Job not found")
    processed = int(job["processed_images"] or 0)
    total = int(job["total_images"] or 0)
    return {
        "job_id": str(job["id"]),
        "status": job["status"],
        "current_phase": job["current_phase"],
        "processed_images": processed,
        "total_images": total,
        "progress": round(processed / max(1, total) * 100, 1),
        "error_log": job["error_log"],
        "started_at": job["started_at"],
        "completed_at": job["completed_at"],
        # Beyond the old engine's fields: what the worker writes as it goes (docs/app.md).
        "job_type": job.get("job_type"),
        "details": job.get("progress"),
    }


def restyle_photo(queue: Queue, me: str | None, body: RestyleRequest) -> dict[str, Any]:
    """Queue a ``restyle`` job of one photo. The old engine answered with the edited photo; the job
    writes it to the photo's row when it is done (``edited_key`` and the rest), as a gallery job does."""
    photo_id = str(body.photo_id)
    photo = queue.app.photo(photo_id)
    if photo is None or not _mine(me, photo["photographer_id"]):
        raise RequestError(404, "Photo not found")
    gallery_id = str(photo["gallery_id"])
    if body.gallery_id is not None and str(body.gallery_id) != gallery_id:
        raise RequestError(400, f"photo {photo_id} is not in gallery {body.gallery_id}")
    if photo["is_culled"]:
        raise RequestError(400, "this photo is culled; restore it before restyling it")
    owner = str(photo["photographer_id"])
    profile = _style_profile(queue, owner, str(body.style_profile_id))
    job_id = queue.admin.enqueue(
        photographer_id=owner,
        gallery_id=gallery_id,
        style_profile_id=str(body.style_profile_id),
        job_type="restyle",
        payload={"photo_ids": [photo_id]},
    )
    return {
        "photo_id": photo_id,
        "job_id": job_id,
        "status": "queued",
        "style_name": profile["name"],
        "message": f"Style '{profile['name']}' queued for this photo",
    }


# -- /api/style ------------------------------------------------------------------------------------
def create_style(queue: Queue, me: str | None, body: CreateStyleRequest) -> dict[str, Any]:
    """A new profile trained from what the app uploaded: before/after pairs when its settings say
    ``training_mode: paired`` and the RAW and edited files pair up by name (the app matches them so),
    else the histogram method on the reference (edited) photos."""
    owner = _photographer(queue, me, str(body.photographer_id))
    references = _keys(body.reference_image_keys, owner, "reference photo")
    settings = dict(body.settings or {})
    if body.preset_file_key:
        settings["preset_file_key"] = _keys([body.preset_file_key], owner, "preset file")[0]
    method, payload = training_inputs(references, settings, owner)
    profile_id, job_id = queue.admin.create_style_profile(
        photographer_id=owner,
        name=body.name,
        description=body.description,
        reference_keys=references,
        settings=settings,
        training_method=method,
        payload=payload,
    )
    if method == "preset":
        message = "Training queued from the Lightroom preset."
    elif method == "lut3d":
        message = f"Training queued with {len(payload['pairs'])} before/after pairs."
    else:
        message = f"Training queued with {len(references)} reference photos."
    return {
        "id": profile_id,
        "name": body.name,
        "status": "queued",
        "job_id": job_id,
        "training_method": method,
        "message": message,
    }


def create_neural_style(queue: Queue, me: str | None, body: CreateNeuralStyleRequest) -> dict[str, Any]:
    """A new profile trained from before/after pairs (the image-adaptive 3D LUT)."""
    owner = _photographer(queue, me, str(body.photographer_id))
    if not MIN_PAIRS <= len(body.pairs) <= MAX_PAIRS:
        raise RequestError(400, f"Need {MIN_PAIRS} to {MAX_PAIRS} before/after pairs, got {len(body.pairs)}")
    pairs = [
        {
            "original_key": _keys([p.original_key], owner, "original photo")[0],
            "edited_key": _keys([p.edited_key], owner, "edited photo")[0],
        }
        for p in body.pairs
    ]
    references = _keys(body.reference_image_keys, owner, "reference photo")
    profile_id, job_id = queue.admin.create_style_profile(
        photographer_id=owner,
        name=body.name,
        description=body.description,
        reference_keys=references,
        settings={},
        training_method="lut3d",
        payload={"pairs": pairs},
    )
    return {
        "id": profile_id,
        "name": body.name,
        "status": "queued",
        "job_id": job_id,
        "training_method": "lut3d",
        "message": f"Training queued with {len(pairs)} before/after pairs.",
    }


def style_status(queue: Queue, me: str | None, profile_id: uuid.UUID) -> dict[str, Any]:
    """The profile's training fields, as the old engine reported them, and its queued or running job."""
    profile = queue.app.style_profile(str(profile_id))
    if profile is None or not _mine(me, profile["photographer_id"]):
        raise RequestError(404, "Profile not found")
    settings = profile.get("settings") or {}
    active = queue.app.active_training_job(str(profile_id))
    return {
        "id": str(profile["id"]),
        "name": profile["name"],
        "status": profile.get("status"),
        "training_status": profile.get("training_status"),
        "training_method": profile.get("training_method"),
        "reference_count": len(profile.get("reference_image_keys") or []),
        "has_preset": bool(isinstance(settings, dict) and settings.get("preset_file_key")),
        "pairs_used": profile.get("pairs_used"),
        "training_time_s": profile.get("training_time_s"),
        "training_error": profile.get("training_error"),
        "training_started_at": profile.get("training_started_at"),
        "training_completed_at": profile.get("training_completed_at"),
        "model_key": profile.get("model_key") or profile.get("model_weights_key"),
        "job_id": str(active["id"]) if active else None,
    }


def retrain_style(queue: Queue, me: str | None, profile_id: uuid.UUID) -> dict[str, Any]:
    """Train the profile again from what it was last trained from (its latest train_style job's
    payload), else from its own reference photos. A profile keeps its model while it retrains. When a
    training of it is already queued or running, that job is the answer."""
    profile = queue.app.style_profile(str(profile_id))
    if profile is None or not _mine(me, profile["photographer_id"]):
        raise RequestError(404, "Profile not found")
    owner = str(profile["photographer_id"])
    payload = queue.app.last_training_payload(str(profile_id))
    if not payload:
        references = _keys(list(profile.get("reference_image_keys") or []), owner, "reference photo")
        settings = profile.get("settings")
        _, payload = training_inputs(references, settings if isinstance(settings, dict) else {}, owner)
    job_id, queued_now = queue.admin.enqueue_training(
        photographer_id=owner, style_profile_id=str(profile_id), payload=payload
    )
    return {
        "id": str(profile["id"]),
        "status": "queued" if queued_now else "training",
        "job_id": job_id,
        "message": "Re-training queued" if queued_now else "A training of this profile is already queued or running",
    }


# -- helpers ---------------------------------------------------------------------------------------
def training_inputs(references: list[str], settings: dict[str, Any], owner: str) -> tuple[str, dict[str, Any]]:
    """``(training_method, payload)`` of a train_style job from a profile's reference photos and settings:
    the pairs when the settings name RAW files that pair up by name with at least MIN_PAIRS references
    (MIN_PAIRS_WITH_PRESET with a Lightroom preset, ``settings.preset_file_key``, which they then refine),
    else the preset alone when there is one, else the histogram method on the references."""
    key = settings.get("preset_file_key")
    preset = {"preset_file_key": _keys([key], owner, "preset file")[0]} if isinstance(key, str) and key else {}
    raw = settings.get("raw_image_keys") if settings.get("training_mode") == "paired" else None
    if isinstance(raw, list) and all(isinstance(k, str) for k in raw):
        pairs = pair_by_name(_keys(raw, owner, "RAW photo"), references)
        if len(pairs) >= (MIN_PAIRS_WITH_PRESET if preset else MIN_PAIRS):
            return "lut3d", {"pairs": pairs[:MAX_PAIRS], **preset}
    if preset:
        return "preset", preset
    if not references:
        raise RequestError(400, "no reference photos to train from; upload some, or create a new style")
    return "histogram", {"training_method": "histogram", "reference_keys": references}


_TIMESTAMP = re.compile(r"^\d+_")


def file_stem(key: str) -> str:
    """What the app matches a RAW file and its edit by: the file name without the upload's
    ``{Date.now()}_`` prefix and the extension, lower-cased, other characters than a-z 0-9 _ - as ``_``."""
    name = _TIMESTAMP.sub("", key.rsplit("/", 1)[-1])
    base = name.rsplit(".", 1)[0] if "." in name else name
    return re.sub(r"[^a-z0-9_-]", "_", base.lower())


def pair_by_name(originals: list[str], edited: list[str]) -> list[dict[str, str]]:
    """Pairs of keys whose file stems match one to one (a stem found twice on either side is left out),
    in the order of ``edited``."""
    by_stem: dict[str, list[str]] = {}
    for key in originals:
        by_stem.setdefault(file_stem(key), []).append(key)
    counts: dict[str, int] = {}
    for key in edited:
        counts[file_stem(key)] = counts.get(file_stem(key), 0) + 1
    return [
        {"original_key": by_stem[stem][0], "edited_key": key}
        for key in edited
        if len(by_stem.get(stem := file_stem(key), [])) == 1 and counts[stem] == 1
    ]


def _mine(me: str | None, photographer_id: Any) -> bool:
    return me is None or str(photographer_id) == me


def _photographer(queue: Queue, me: str | None, photographer_id: str) -> str:
    """The photographer a body names, if the caller may act for them."""
    if me is not None and photographer_id != me:
        raise RequestError(403, "photographer_id is not the signed-in user's; you can only create your own styles")
    if me is None and not queue.app.photographer_exists(photographer_id):
        raise RequestError(404, f"photographer {photographer_id} not found")
    return photographer_id


def _style_profile(queue: Queue, owner: str, profile_id: str) -> Row:
    """The style profile, which must be the same photographer's as the gallery or photo it is for."""
    profile = queue.app.style_profile(profile_id)
    if profile is None or str(profile["photographer_id"]) != owner:
        raise RequestError(404, "Style profile not found")
    return profile


def _keys(keys: list[str], owner: str, what: str) -> list[str]:
    """Storage keys, each inside the photographer's own folder (the worker would refuse them later)."""
    try:
        return [check_tenant_key(key, owner, what=what) for key in keys]
    except TenantViolationError as exc:
        raise RequestError(400, exc.message) from None
