"""Run one ``gallery`` or ``restyle`` job: its photos through the pipeline, rows and progress kept current.

* Photos are the gallery's non-culled ones (``restyle``: the ``payload.photo_ids``
  among them). Every storage key is checked against the job's photographer
  before it is read.
* Resuming: a ``gallery`` job skips photos already edited (their outputs and
  row are complete); a ``restyle`` job (or ``payload.force``) redoes them, but
  skips the ones this same job already finished in an earlier attempt.
  Nothing is uploaded or billed twice.
* Each photo's row is written when it is done (``apelier.finish_photo``, which
  also bills once per photo); a photo that fails is flagged ``needs_review``
  with a reason and the gallery goes on.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from worker import __version__
from worker.commands.process import effective_batch_size, effective_photo_threads
from worker.errors import JobInputError, ModelFileError
from worker.frame import Frame
from worker.jobs.progress import ProgressTracker
from worker.jobs.runtime import JobControl, Runtime
from worker.phases import PHASES, PhaseContext
from worker.phases.output import Watermark
from worker.pipeline.stream import PhotoResult, PhotoTask, Pipeline
from worker.profile import EditSettings
from worker.queue.database import Queue
from worker.queue.store import Job
from worker.scene import culling
from worker.service import logs
from worker.storage.base import check_tenant_key
from worker.style import cache as style_cache

log = logs.get("gallery_job")

EDITED_STATUSES = {"edited", "approved", "delivered"}
VARIANT_FOLDERS = {"edited": "edited", "web": "web", "thumb": "thumbs", "watermarked": "watermarked"}
MAX_LOGO_PIXELS = 16_000_000
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass(frozen=True)
class JobOutcome:
    """How a job run ended, for the daemon and the demo."""

    status: str  # completed | released | canceled | lost
    processed: int
    failed: int
    skipped: int
    total: int
    wall_s: float
    phase_s: dict[str, float]


def output_names(photos: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Storage file name (without extension) per photo id: the upload's stem, made safe for keys.

    Two photos of a gallery with the same stem (``IMG_0001.jpg`` and ``IMG_0001.CR2``, or two
    cameras) get the photo id's first 8 hex digits appended, so no output overwrites another.
    """
    stems: dict[str, str] = {}
    for photo in photos:
        stem = PurePosixPath(str(photo.get("filename") or "photo")).stem
        stem = _UNSAFE.sub("_", stem).strip(" .") or "photo"
        stems[str(photo["id"])] = stem[:120]
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    return {
        pid: (stem if counts[stem.lower()] == 1 else f"{stem}-{pid.replace('-', '')[:8]}")
        for pid, stem in stems.items()
    }


def output_key(photographer_id: str, gallery_id: str, variant: str, name: str) -> str:
    """The app's convention: ``{photographer_id}/{gallery_id}/edited|web|thumbs/{name}.jpg``."""
    return f"{photographer_id}/{gallery_id}/{VARIANT_FOLDERS[variant]}/{name}.jpg"


def run_gallery_job(job: Job, queue: Queue, runtime: Runtime, control: JobControl) -> JobOutcome:
    settings = runtime.settings
    if not job.gallery_id:
        raise JobInputError(f"{job.job_type} job {job.id} has no gallery_id; the app must set one")
    gallery = queue.app.gallery(job.gallery_id)
    if gallery is None:
        raise JobInputError(f"gallery {job.gallery_id} does not exist (deleted?); nothing to process")
    if str(gallery["photographer_id"]) != job.photographer_id:
        raise JobInputError(f"gallery {job.gallery_id} belongs to another photographer than job {job.id}; refused")

    photos = queue.app.gallery_photos(job.gallery_id)
    if job.job_type == "restyle":
        wanted = _photo_ids(job.payload)
        photos = [p for p in photos if str(p["id"]) in wanted]
    names = output_names(queue.app.gallery_filenames(job.gallery_id))
    force = job.job_type == "restyle" or bool(job.payload.get("force"))

    todo: list[dict[str, Any]] = []
    already_done = 0
    for photo in photos:
        complete = (
            photo["status"] in EDITED_STATUSES and photo["edited_key"] and photo["web_key"] and photo["thumb_key"]
        )
        if complete and (not force or photo.get("edited_by_job") == job.id):
            already_done += 1
        else:
            todo.append(photo)

    profile = queue.app.style_profile(job.style_profile_id) if job.style_profile_id else None
    edit = EditSettings.resolve(profile.get("settings") if profile else None, job.settings_override)
    style = load_style_model(job, profile, runtime)
    watermark = load_watermark(job, edit, runtime)
    ctx = PhaseContext(
        edit=edit,
        models=runtime.models,
        style_model=style.model,
        style_note=style.note,
        style_expected=style.expected,
        watermark=watermark,
    )

    tracker = ProgressTracker(
        total=len(photos),
        already_done=already_done,
        interval_s=settings.progress_interval_s,
        write=lambda t: queue.jobs.update_progress(
            job.id,
            phase=t.current_phase,
            processed=t.finished,
            total=t.total,
            progress=t.as_json(),
            phase_timings=t.timings_json(),
        ),
    )
    if edit.ignored:
        tracker.extra["ignored_settings"] = list(edit.ignored)
    control.saw_state(tracker.maybe_write(force=True))
    log.info("job_started", photos=len(photos), todo=len(todo), resumed=already_done, settings=edit.to_json())

    by_id = {str(p["id"]): p for p in todo}

    def fetch_for(photo: dict[str, Any]) -> PhotoTask:
        def fetch() -> bytes:
            # Checked before any byte is read: the service key could read every tenant's files.
            if str(photo["photographer_id"]) != job.photographer_id:
                check_tenant_key("", job.photographer_id)  # always raises, with the standard message
            key = check_tenant_key(photo["original_key"], job.photographer_id)
            return runtime.storage.get(key)

        return PhotoTask(str(photo["id"]), str(photo["filename"] or photo["original_key"]), fetch)

    def deliver(frame: Frame) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        for variant, encoded in frame.outputs.items():
            if variant not in VARIANT_FOLDERS:
                continue
            key = output_key(job.photographer_id, job.gallery_id or "", variant, names[frame.photo_id])
            runtime.storage.put(key, encoded.data, encoded.content_type)
            keys[variant] = key
        return keys

    def on_result(result: PhotoResult) -> None:
        photo = by_id[result.task.photo_id]
        with logs.bind(photo_id=result.task.photo_id):
            if result.ok and result.frame is not None:
                state = queue.jobs.finish_photo(job.id, result.task.photo_id, photo_fields(job, result), bill=True)
                tracker.photo_done(result.timings)
            else:
                assert result.failure is not None
                reason = result.failure.reason
                log.warning("photo_failed", phase=result.failed_phase, reason=reason)
                state = queue.jobs.fail_photo(
                    job.id,
                    result.task.photo_id,
                    {
                        "phase": result.failed_phase,
                        "reason": reason,
                        "job_id": job.id,
                        "kind": result.failure.kind,
                    },
                )
                tracker.photo_failed(result.task.photo_id, str(photo["filename"]), result.failed_phase, reason)
        control.saw_state(state)

    pipeline = Pipeline(
        ctx,
        deliver,
        batch_size=effective_batch_size(settings, runtime.models),
        io_threads=settings.io_threads,
        prefetch=settings.prefetch_photos,
        max_pixels=settings.max_image_pixels,
        on_phase=tracker.phase_finished,
        lanes=settings.phase_lanes,
        photo_threads=effective_photo_threads(settings),
    )
    stats = pipeline.run([fetch_for(p) for p in todo], on_result, control.should_stop)

    outcome_status = "completed"
    if stats.stopped or control.should_stop():
        state = control.job_state
        if state == "canceled":
            queue.jobs.ack_cancel(job.id, tracker.finished, tracker.as_json())
            outcome_status = "canceled"
        elif state is not None:
            outcome_status = "lost"  # another worker owns it now, or the row is gone: write nothing more
        else:
            tracker.maybe_write(force=True)
            queue.jobs.release(job.id)
            outcome_status = "released"
    else:
        suggest_culling(job, queue)
        summary = None
        if tracker.failed:
            summary = (
                f"{tracker.failed} of {len(photos)} photos could not be processed; see each photo's ai_edits.error"
            )
        queue.jobs.complete(
            job.id,
            processed=tracker.finished,
            total=len(photos),
            progress=tracker.as_json(),
            phase_timings=tracker.timings_json(),
            summary=summary,
        )
    log.info(
        "job_finished",
        outcome=outcome_status,
        processed=tracker.processed,
        failed=tracker.failed,
        wall_s=round(stats.wall_s, 2),
    )
    return JobOutcome(
        outcome_status,
        tracker.processed,
        tracker.failed,
        already_done,
        len(photos),
        stats.wall_s,
        stats.phase_s,
    )


def photo_fields(job: Job, result: PhotoResult) -> dict[str, Any]:
    """The ``photos`` row of a finished photo (see ``apelier.finish_photo``)."""
    frame = result.frame
    assert frame is not None
    report = frame.report
    analysis = report.get("analysis", {})
    reasons: list[str] = []
    confidences: list[float] = []
    for phase in PHASES:
        entry = report.get(phase, {})
        if entry.get("needs_review"):
            reasons.append(f"{phase}: {entry['needs_review']}")
        if isinstance(entry.get("confidence"), int | float):
            confidences.append(float(entry["confidence"]))
    ai_edits: dict[str, Any] = {
        "job_id": job.id,
        "worker_version": __version__,
        **{phase: report[phase] for phase in PHASES if phase in report},
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
    }
    if reasons:
        ai_edits["review_reasons"] = reasons
    quality = analysis.get("quality", {}).get("score")
    face_json = [f.to_json() for f in frame.faces]
    return {
        "edited_key": result.delivered.get("edited"),
        "web_key": result.delivered.get("web"),
        "thumb_key": result.delivered.get("thumb"),
        "watermarked_key": result.delivered.get("watermarked"),
        "width": frame.width,
        "height": frame.height,
        "exif_data": frame.exif,
        "quality_score": int(quality) if isinstance(quality, int | float) else None,
        "face_data": [{"bbox": j["box"], "landmarks": j["landmarks"], "score": j["score"]} for j in face_json],
        "scene_type": analysis.get("scene_type"),
        "ai_edits": ai_edits,
        "edit_confidence": round(min(confidences), 3) if confidences else None,
        "needs_review": bool(reasons),
    }


@dataclass(frozen=True)
class StyleChoice:
    model: Any  # the loaded style, or None: phase 1 passes through
    note: str  # why it passes through
    expected: bool = False  # a trained style was asked for but could not be used: photos go to review


def load_style_model(job: Job, profile: dict[str, Any] | None, runtime: Runtime) -> StyleChoice:
    """The job's style model, or None and the reason phase 1 passes through.

    A profile with a trained model (``model_key``) keeps it whatever its ``training_status``: while
    it retrains, and after a retrain failed or was canceled, the last good model is applied. The
    app's legacy ``model_weights_key`` counts only with status ``ready``. Models are read from
    storage (tenant-checked) once and kept: in memory for this worker's life and on disk under
    ``WORKER_DATA_DIR/styles``, keyed by storage key and ``training_completed_at`` (see style_cache).
    """
    if not job.style_profile_id:
        return StyleChoice(None, "no style profile on this job")
    if profile is None:
        return StyleChoice(None, f"style profile {job.style_profile_id} not found", expected=True)
    if str(profile["photographer_id"]) != job.photographer_id:
        raise JobInputError(f"style profile {job.style_profile_id} belongs to another photographer; refused")
    status = profile.get("training_status") or profile.get("status")
    key = style_cache.applied_model_key(profile)
    if not key:
        return StyleChoice(
            None, f"style profile {job.style_profile_id} has no trained model yet (training_status={status})"
        )
    key = check_tenant_key(str(key), job.photographer_id, what="style model")
    try:
        version = str(profile.get("training_completed_at") or profile.get("updated_at") or "")
        return StyleChoice(style_cache.get(runtime, key, version), "")
    except ModelFileError as exc:
        log.warning("style_model_unusable", key=key, reason=exc.message)
        return StyleChoice(None, f"style model unusable: {exc.message}", expected=True)


def load_watermark(job: Job, edit: EditSettings, runtime: Runtime) -> Watermark | None:
    """The photographer's logo, prepared for phase 5, when the job asks for a watermark, else None."""
    if not edit.watermark:
        return None
    if not edit.watermark_key:
        raise JobInputError("watermark is on but no watermark_key (the logo's storage key) is set in the settings")
    key = check_tenant_key(edit.watermark_key, job.photographer_id, what="watermark logo")
    data = runtime.storage.get(key)
    try:
        with Image.open(io.BytesIO(data)) as logo:
            if logo.width * logo.height > MAX_LOGO_PIXELS:
                raise JobInputError(
                    f"the watermark logo {key} is {logo.width}×{logo.height}; upload one under "
                    f"{MAX_LOGO_PIXELS // 1_000_000} MP"
                )
            return Watermark(np.asarray(logo.convert("RGBA")), edit.web_long_edge)  # prepared once for the job
    except UnidentifiedImageError:  # its message names a Python object, not the file
        raise JobInputError(f"the watermark logo {key} is not an image; upload a PNG") from None
    except (OSError, ValueError) as exc:
        raise JobInputError(f"the watermark logo {key} is not a readable image ({exc}); upload a PNG") from None


def suggest_culling(job: Job, queue: Queue) -> None:
    """Gallery-level suggestions (burst/near-duplicate groups, best of each, highlights) into ai_edits.culling.

    Over every analysed photo of the gallery, not only this job's: a restyle or a resumed job still
    sees the whole gallery. Suggestions only: star_rating, is_culled and is_sneak_peek are never touched.
    """
    if not job.gallery_id:
        return
    rows = queue.app.gallery_analysis(job.gallery_id)
    items = [culling.GalleryItem.from_report(str(r["id"]), r["analysis"] or {}, r["exif_data"] or {}) for r in rows]
    suggestions = culling.summarize_gallery(items)
    if suggestions:
        updated = queue.jobs.merge_photo_suggestions(job.id, suggestions)
        log.info("culling_suggested", photos=updated)


def _photo_ids(payload: dict[str, Any]) -> set[str]:
    ids = payload.get("photo_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise JobInputError("restyle job needs payload.photo_ids: a non-empty list of photo ids")
    return set(ids)
