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
* Canceled (``status='canceled'``, or the app's ``status='failed'`` while leased):
  photos that finish afterwards are not recorded, and the outputs this worker
  uploaded for them are deleted (``orphans.py``) before the cancel is acknowledged.
* ``total_images`` set by the app when it created the job stays; see
  :meth:`ProgressTracker.row_counts`.
* Photos in flight: the database is told when a photo starts being processed
  (decoding) and when its outputs are encoded, with the keys about to be
  uploaded. A photo a run died processing is suspected: the next runs process
  suspects first, each alone, so a death points at one photo; one that kills
  its worker ``max_attempts`` more times is failed alone
  (``apelier.requeue_stale``) and skipped.
  Keys uploaded for photos never recorded are removed by the run as it ends
  canceled (``apelier.own_unrecorded_outputs``), else by the daemon's sweep a
  lease after the job has ended (``apelier.unrecorded_outputs``).
* Chunks: a job with more than ``WORKER_CHUNK_PHOTOS`` photos to edit is split
  (``apelier.split_job``) instead of run: its photos to edit become chunks that
  any idle worker claims and runs as a job restricted to those photos. The run
  that ends the last chunk (``apelier.end_chunk``: 'finalise') gets the job back
  and finishes it (culling over the whole gallery, ``completed``). Each photo
  records the worker that edited it (``ai_edits.worker``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from worker import __version__
from worker.errors import JobInputError, ModelFileError
from worker.frame import Frame
from worker.jobs.orphans import delete_unrecorded
from worker.jobs.progress import ProgressTracker
from worker.jobs.runtime import JobControl, JobOutcome, OutcomeStatus, Runtime
from worker.phases import PHASES, PhaseContext, review
from worker.phases.output import Watermark
from worker.pipeline.stream import PhotoResult, PhotoTask, Pipeline, PipelineStats, effective_photo_threads
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
    return GalleryJob(job, queue, runtime, control).run()


@dataclass(frozen=True)
class Selection:
    """The photos a job covers, those it still has to edit, and their output file names."""

    photos: list[dict[str, Any]]  # every photo the job covers (its total)
    todo: list[dict[str, Any]]  # those to run now: the suspects first, each alone, then the others
    already_done: int  # edited by an earlier attempt (or, for a gallery job, before it): skipped
    names: dict[str, str]  # output file name per photo id (see output_names)
    deaths: dict[str, int] = field(default_factory=dict)  # runs that died processing the photo
    isolated: list[dict[str, Any]] = field(default_factory=list)  # failed alone after killing workers: skipped

    @property
    def suspects(self) -> list[dict[str, Any]]:
        return [p for p in self.todo if self.deaths.get(str(p["id"]))]

    @property
    def unsuspected(self) -> list[dict[str, Any]]:
        return [p for p in self.todo if not self.deaths.get(str(p["id"]))]


class GalleryJob:
    """One run of a ``gallery`` or ``restyle`` job, in named steps.

    Constructed: the photos are selected (:meth:`select_photos`), the phases' context built
    (:meth:`phase_context`: edit settings, style model, watermark) and the progress tracker made.
    :meth:`run` streams the photos through the pipeline, which fetches each one
    (:meth:`photo_task`), hands its outputs to :meth:`deliver`, and its result to :meth:`record`
    (the photo's row, the progress); then :meth:`finish` completes, acknowledges a cancel, or releases.
    """

    def __init__(self, job: Job, queue: Queue, runtime: Runtime, control: JobControl) -> None:
        self.job = job
        self.queue = queue
        self.runtime = runtime
        self.control = control
        self.selection = self.select_photos()
        self.ctx = self.phase_context()
        self.tracker = ProgressTracker(
            total=len(self.selection.photos),
            already_done=self.selection.already_done,
            interval_s=runtime.settings.progress_interval_s,
            write=self._write_progress,
            row_total=job.kept_total,
        )
        if self.ctx.edit.ignored:
            self.tracker.extra["ignored_settings"] = list(self.ctx.edit.ignored)
        self._todo = {str(p["id"]): p for p in self.selection.todo}

    def run(self) -> JobOutcome:
        selection = self.selection
        # Set up: from now on, a death while no photo is being processed is not this job's doing.
        self.control.saw_state(self.queue.jobs.setup_done(self.job.id))
        for photo in selection.isolated:
            deaths = selection.deaths.get(str(photo["id"]), 0)
            reason = f"processing this photo stopped the worker {deaths} times (out of memory?), so it was skipped"
            self.tracker.photo_failed(str(photo["id"]), str(photo["filename"]), "processing", reason)
        self.control.saw_state(self.tracker.maybe_write(force=True))
        suspects = selection.suspects
        log.info(
            "job_started",
            photos=len(selection.photos),
            todo=len(selection.todo),
            resumed=selection.already_done,
            suspects=len(suspects),
            isolated=len(selection.isolated),
            chunk=self.job.chunk,
            settings=self.ctx.edit.to_json(),
        )
        if self.should_split() and not self.control.should_stop():
            return self.split()
        stats = PipelineStats()
        if suspects:  # one at a time, nothing else in flight: a death now points at that photo
            alone = self._pipeline(alone=True)
            for photo in suspects:
                if self.control.should_stop():
                    stats.stopped = True
                    break
                log.info("suspect_photo_alone", photo_id=str(photo["id"]), deaths=selection.deaths[str(photo["id"])])
                _add(stats, alone.run([self.photo_task(photo)], self.record, self.control.should_stop))
                if stats.stopped:
                    break
        if not stats.stopped:
            tasks = [self.photo_task(p) for p in selection.unsuspected]
            _add(stats, self._pipeline().run(tasks, self.record, self.control.should_stop))
        return self.finish(stats)

    def _pipeline(self, *, alone: bool = False) -> Pipeline:
        settings = self.runtime.settings
        if not alone:
            return Pipeline.from_settings(self.ctx, self.deliver, settings, on_phase=self.tracker.phase_finished)
        return Pipeline(
            self.ctx,
            self.deliver,
            batch_size=1,
            io_threads=1,
            prefetch=1,
            max_pixels=settings.max_image_pixels,
            on_phase=self.tracker.phase_finished,
            lanes=1,
            photo_threads=effective_photo_threads(settings),
        )

    # -- chunks ---------------------------------------------------------------------------------
    def should_split(self) -> bool:
        """More photos to edit than one worker should take alone (``WORKER_CHUNK_PHOTOS``); never a chunk."""
        size = self.runtime.settings.chunk_photos
        return self.job.chunk is None and size > 0 and len(self.selection.todo) > size

    def split(self) -> JobOutcome:
        """Hand the photos to edit to chunks that any worker claims (this one too, next); the job row
        keeps the counts the app sees (``processed_images`` goes on counting as chunks record photos)."""
        size = self.runtime.settings.chunk_photos
        todo = [str(p["id"]) for p in self.selection.todo]  # suspects first: each chunk runs its own alone
        processed, total = self.tracker.row_counts()
        state = self.queue.jobs.split(self.job.id, todo, size, processed=processed, total=total)
        if state != "processing":  # canceled, lost… before it could split
            self.control.saw_state(state)
            return self.finish(PipelineStats(stopped=True))
        chunks = -(-len(todo) // size)
        log.info("job_split", photos=len(todo), chunks=chunks, chunk_photos=size)
        return JobOutcome("split", skipped=self.selection.already_done, total=len(self.selection.photos))

    def finalise(self) -> None:
        """The last chunk is done and the job is this worker's again: culling over the whole gallery, and
        ``completed`` with the counts every chunk kept on the job row."""
        job, queue = self.job, self.queue
        suggest_culling(job, queue)
        row = queue.app.get_job(job.id) or {}
        chunks = queue.jobs.chunks(job.id)
        workers = queue.jobs.chunk_workers(job.id)
        processed, total = int(row.get("processed_images") or 0), int(row.get("total_images") or 0)
        failed = max(0, sum(int(c["photos"]) for c in chunks) - sum(workers.values()))
        progress = {
            **{k: v for k, v in (row.get("progress") or {}).items() if k not in ("eta_s", "failures")},
            "total": total,
            "processed": processed,
            "failed": failed,
            "chunks": {"total": len(chunks), "done": len(chunks), "running": 0},
            "workers": workers,
        }
        summary = None
        if failed:
            summary = f"{failed} of {total} photos could not be processed; see each photo's ai_edits.error"
        queue.jobs.complete(
            job.id,
            processed=processed,
            total=total,
            progress=progress,
            phase_timings=row.get("phase_timings") or {},
            summary=summary,
        )
        log.info("job_finalised", chunks=len(chunks), processed=processed, failed=failed, workers=workers)

    # -- before the photos ----------------------------------------------------------------------
    def select_photos(self) -> Selection:
        """The gallery's non-culled photos (restyle: those in ``payload.photo_ids``), split into
        those to edit and those already done (see the module docstring for resuming)."""
        job = self.job
        if not job.gallery_id:
            raise JobInputError(f"{job.job_type} job {job.id} has no gallery_id; the app must set one")
        gallery = self.queue.app.gallery(job.gallery_id)
        if gallery is None:
            raise JobInputError(f"gallery {job.gallery_id} does not exist (deleted?); nothing to process")
        if str(gallery["photographer_id"]) != job.photographer_id:
            raise JobInputError(f"gallery {job.gallery_id} belongs to another photographer than job {job.id}; refused")

        photos = self.queue.app.gallery_photos(job.gallery_id)
        if job.chunk is not None:  # a chunk of a split job: its own photos only
            mine = set(job.chunk_photo_ids)
            photos = [p for p in photos if str(p["id"]) in mine]
        if job.job_type == "restyle":
            wanted = _photo_ids(job.payload)
            photos = [p for p in photos if str(p["id"]) in wanted]
        names = output_names(self.queue.app.gallery_filenames(job.gallery_id))
        force = job.job_type == "restyle" or bool(job.payload.get("force"))

        in_flight = self.queue.jobs.photos_in_flight(job.id)
        todo: list[dict[str, Any]] = []
        isolated: list[dict[str, Any]] = []
        already_done = 0
        for photo in photos:
            complete = (
                photo["status"] in EDITED_STATUSES and photo["edited_key"] and photo["web_key"] and photo["thumb_key"]
            )
            if complete and (not force or photo.get("edited_by_job") == job.id):
                already_done += 1
            elif in_flight.get(str(photo["id"]), (0, False))[1]:
                isolated.append(photo)
            else:
                todo.append(photo)
        deaths = {photo_id: n for photo_id, (n, _) in in_flight.items()}
        todo.sort(key=lambda p: not deaths.get(str(p["id"])))  # suspects first (stable: the gallery's order)
        return Selection(photos, todo, already_done, names, deaths, isolated)

    def phase_context(self) -> PhaseContext:
        """The job's edit settings (profile, then the job's override), style model and watermark."""
        job = self.job
        profile = self.queue.app.style_profile(job.style_profile_id) if job.style_profile_id else None
        edit = EditSettings.resolve(profile.get("settings") if profile else None, job.settings_override)
        style = load_style_model(job, profile, self.runtime)
        watermark = load_watermark(job, edit, self.runtime)
        return PhaseContext(
            edit=edit,
            models=self.runtime.models,
            style_model=style.model,
            style_note=style.note,
            style_expected=style.expected,
            watermark=watermark,
        )

    def _write_progress(self, tracker: ProgressTracker) -> str:
        processed, total = tracker.row_counts()
        return self.queue.jobs.update_progress(
            self.job.id,
            phase=tracker.current_phase,
            processed=processed,
            total=total,
            progress=tracker.as_json(),
            phase_timings=tracker.timings_json(),
        )

    # -- each photo (the pipeline calls these) --------------------------------------------------
    def photo_task(self, photo: dict[str, Any]) -> PhotoTask:
        """The pipeline's task for one photo: its original, read only once its key is the photographer's."""
        photographer_id = self.job.photographer_id
        storage = self.runtime.storage

        photo_id = str(photo["id"])

        def fetch() -> bytes:
            # Checked before any byte is read: the service key could read every tenant's files.
            if str(photo["photographer_id"]) != photographer_id:
                check_tenant_key("", photographer_id)  # always raises, with the standard message
            key = check_tenant_key(photo["original_key"], photographer_id)
            return storage.get(key)

        def started() -> None:  # written down before decoding: a death from here on is held against the photo
            self.control.saw_state(self.queue.jobs.photo_started(self.job.id, photo_id))

        return PhotoTask(photo_id, str(photo["filename"] or photo["original_key"]), fetch, started)

    def deliver(self, frame: Frame) -> dict[str, Any]:
        """Upload a photo's outputs (I/O threads); returns the storage key of each variant.

        The keys are written down first (``apelier.photo_processed``: the photo's processing is over,
        these outputs are pending until its row names them), so that outputs of a photo that is never
        recorded can be found and removed. Nothing is uploaded once the job is no longer processing for
        this worker (canceled, lost, deleted): no row would name it.
        """
        name = self.selection.names[frame.photo_id]
        keys = {
            variant: output_key(self.job.photographer_id, self.job.gallery_id or "", variant, name)
            for variant in frame.outputs
            if variant in VARIANT_FOLDERS
        }
        state = self.queue.jobs.photo_processed(self.job.id, frame.photo_id, list(keys.values()))
        self.control.saw_state(state)
        if state != "processing":
            return {}
        for variant, key in keys.items():
            encoded = frame.outputs[variant]
            self.runtime.storage.put(key, encoded.data, encoded.content_type)
        return keys

    def record(self, result: PhotoResult) -> None:
        """A photo is done (main thread, in photo order): its row (billed once), or its failure; the progress."""
        job, queue, photo_id = self.job, self.queue, result.task.photo_id
        photo = self._todo[photo_id]
        with logs.bind(photo_id=photo_id):
            if result.ok and result.frame is not None:
                fields = photo_fields(job, result, queue.jobs.worker_id)
                state = queue.jobs.finish_photo(job.id, photo_id, fields, bill=True)
                if state != "processing":  # canceled (or lost) first: not written, nor billed; its outputs
                    self.control.saw_state(state)  # stay pending (apelier.pending_outputs) until deleted
                    return
                self.tracker.photo_done(result.timings)
            else:
                assert result.failure is not None
                reason = result.failure.reason
                log.warning("photo_failed", phase=result.failed_phase, reason=reason)
                state = queue.jobs.fail_photo(
                    job.id,
                    photo_id,
                    {"phase": result.failed_phase, "reason": reason, "job_id": job.id, "kind": result.failure.kind},
                )
                self.tracker.photo_failed(photo_id, str(photo["filename"]), result.failed_phase, reason)
        self.control.saw_state(state)

    # -- after the photos -----------------------------------------------------------------------
    def finish(self, stats: PipelineStats) -> JobOutcome:
        """Complete the job (culling suggestions first), or, when it was stopped: acknowledge the
        cancel (the outputs of photos it kept from being recorded deleted first), write nothing more
        (lost), or release it (shutdown) with its progress kept."""
        job, queue, tracker, total = self.job, self.queue, self.tracker, len(self.selection.photos)
        status: OutcomeStatus = "completed"
        stopped = stats.stopped or self.control.should_stop()
        if job.chunk is not None and not stopped:
            # This chunk's photos are done; the last chunk out finishes the job (apelier.end_chunk).
            tracker.maybe_write(force=True)
            ended = queue.jobs.end_chunk(job.id)
            if ended == "finalise":
                self.finalise()
            elif ended != "done":  # canceled, lost, deleted: handled as a stop
                self.control.saw_state(ended)
                stopped = True
        if stopped:
            state = self.control.job_state
            if self.control.canceled:
                self.delete_orphans()
                queue.jobs.ack_cancel(job.id, tracker.row_counts()[0], tracker.as_json())
                status = "canceled"
            elif state == "deleted":  # the app deletes a job it canceled 10 s later: nobody else holds it
                self.delete_orphans()
                status = "lost"
            elif state is not None:
                status = "lost"  # another worker owns it now (its uploads use the same keys): write nothing more
            else:
                tracker.maybe_write(force=True)
                queue.jobs.release(job.id)
                status = "released"
        elif job.chunk is None:
            suggest_culling(job, queue)
            summary = None
            if tracker.failed:
                summary = f"{tracker.failed} of {total} photos could not be processed; see each photo's ai_edits.error"
            processed, row_total = tracker.row_counts()
            queue.jobs.complete(
                job.id,
                processed=processed,
                total=row_total,
                progress=tracker.as_json(),
                phase_timings=tracker.timings_json(),
                summary=summary,
            )
        log.info(
            "job_finished",
            outcome=status,
            processed=tracker.processed,
            failed=tracker.failed,
            wall_s=round(stats.wall_s, 2),
        )
        return JobOutcome(
            status,
            processed=tracker.processed,
            failed=tracker.failed,
            skipped=self.selection.already_done,
            total=total,
            wall_s=stats.wall_s,
            phase_s=stats.phase_s,
        )

    def delete_orphans(self) -> None:
        """Delete the outputs this worker uploaded for photos whose rows were never written (the run is
        over: every upload has ended), unless the photo's row points at them (a restyle overwrote them
        in place). A delete that fails is left to the daemon's sweep."""
        rows = self.queue.jobs.own_unrecorded_outputs(self.job.id)
        delete_unrecorded(self.queue.jobs, self.runtime.storage, rows, owner=self.job.photographer_id)


def _add(stats: PipelineStats, part: PipelineStats) -> None:
    """Sum the stats of one more pipeline run into ``stats``."""
    stats.done += part.done
    stats.failed += part.failed
    stats.stopped = stats.stopped or part.stopped
    stats.wall_s += part.wall_s
    for name, seconds in part.phase_s.items():
        stats.phase_s[name] = stats.phase_s.get(name, 0.0) + seconds


def photo_fields(job: Job, result: PhotoResult, worker_id: str) -> dict[str, Any]:
    """The ``photos`` row of a finished photo (see ``apelier.finish_photo``); ``ai_edits.worker`` says
    which worker edited it."""
    frame = result.frame
    assert frame is not None
    report = frame.report
    analysis = report.get("analysis", {})
    confidence, reasons = review(report)
    ai_edits: dict[str, Any] = {
        "job_id": job.id,
        "worker": worker_id,
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
        "edit_confidence": confidence,
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
