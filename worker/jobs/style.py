"""Run one ``train_style`` job: learn a photographer's look and store the model for phase 1.

Payload (what the app puts in ``processing_jobs.payload``):

* ``pairs: [{original_key, edited_key}, …]`` — before/after photos in the photographer's own
  folder; at least :data:`MIN_PAIRS` must be usable. Trains the image-adaptive 3D LUT
  (``epochs`` optional: fewer for a quick preview; default: the recipe's own).
* or ``training_method: "histogram"`` with ``reference_keys: […]`` (default: the profile's
  ``reference_image_keys``) — finished photos only, no pairs: a global tone/colour transfer.
* ``preset_file_key`` — a Lightroom preset (``.xmp``/``.lrtemplate``) in the photographer's folder
  (``worker/style/preset.py``). Alone, the preset is the model (``training_method='preset'``); with
  pairs (at least :data:`MIN_PAIRS_WITH_PRESET`) it is the starting point the pairs refine. The
  job's ``progress.preset`` lists what the preset used, ignored (and why) and did not know. Only the
  payload's key counts: a key the app's old engine left in the profile's ``settings`` is not used
  (a stale preset under new pairs could not be undone by them).

Each photo is shrunk right after decoding to the size training uses (512 px on the long edge;
histogram references: 256 px), so a job keeps ≈ 1 MB per pair, not the full-size photos.

While it trains, the job row's ``progress`` carries the epoch, the held-out PSNR and an ETA. The
model is stored at ``{photographer_id}/styles/{style_profile_id}.pt`` and the profile's
``training_status/model_key/training_method/training_time_s/pairs_used/training_error`` are set.
A profile that already has a model keeps it while it retrains, and when a retrain fails or is
canceled (a canceled retrain goes back to ``ready``); gallery jobs go on applying it. A job canceled
before it starts training (queued, or between its claim and the move to ``training``, which is
conditional in SQL) leaves the profile as it was.
A job that cannot train (too few usable pairs, keys outside the photographer's folder) ends with a
``training_error`` that says what to fix, and is not retried. Whatever ends the job ``failed`` (also
a retryable error on its last attempt, or a worker that stopped responding), a trigger sets the
profile's ``training_status='error'`` with the job's ``error_log`` as ``training_error``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from worker.errors import JobCanceled, JobInputError, MissingObjectError, TenantViolationError, WorkerError, classify
from worker.frame import Image
from worker.imaging import decode as decoder
from worker.imaging.resize import shrink
from worker.jobs.runtime import JobControl, JobOutcome, Runtime
from worker.queue.database import Queue
from worker.queue.store import Job
from worker.service import logs, notify
from worker.storage.base import check_tenant_key
from worker.style import cache as style_cache
from worker.style import histogram as style_histogram
from worker.style import model as style_model
from worker.style import preset as style_preset
from worker.style import train as style_train
from worker.style.develop import render_lut, to_style
from worker.style.preset import PresetSettings

log = logs.get("style_job")

MIN_PAIRS = style_train.MIN_PAIRS
MIN_PAIRS_WITH_PRESET = style_train.MIN_PAIRS_WITH_PRESET
MAX_PAIRS = 200
PAIR_EDGE = style_train.TrainConfig().long_edge  # photos are shrunk to this as they are decoded
_WAIT_SIGN_S = 0.5  # while downloads run, the working thread says so at least this often


def model_key_for(photographer_id: str, style_profile_id: str) -> str:
    return f"{photographer_id}/styles/{style_profile_id}.pt"


def run_style_job(job: Job, queue: Queue, runtime: Runtime, control: JobControl) -> JobOutcome:
    if not job.style_profile_id:
        raise JobInputError("train_style job has no style_profile_id; the app must set one")
    profile = queue.app.style_profile(job.style_profile_id)
    if profile is None:
        raise JobInputError(f"style profile {job.style_profile_id} does not exist (deleted?)")
    if str(profile["photographer_id"]) != job.photographer_id:
        raise JobInputError(f"style profile {job.style_profile_id} belongs to another photographer; refused")

    method = str(job.payload.get("training_method") or "lut3d")
    started = time.monotonic()
    progress = _Progress(queue, job, runtime.settings.progress_interval_s, control)
    state = queue.jobs.start_style_training(job.id)
    if state != "processing":  # canceled (or lost) between the claim and now: the profile was not moved
        control.saw_state(state)
        return _stopped(job, queue, control, progress, had_model=style_cache.applied_model_key(profile) is not None)
    try:
        preset = _load_preset(job, runtime, progress)
        if method == "histogram" and preset is not None:
            raise JobInputError("the histogram method does not use a preset; send the preset with pairs, or alone")
        if method == "histogram":
            style, used = _fit_histogram(job, profile, runtime, progress)
        elif method == "lut3d" and preset is not None and not job.payload.get("pairs"):
            style, used = to_style(preset), 0
        elif method == "lut3d":
            style, used = _train_lut(job, runtime, progress, control, preset)
        else:
            raise JobInputError(f"unknown training_method {method!r}; use 'lut3d' (pairs) or 'histogram'")
    except JobCanceled:
        return _stopped(job, queue, control, progress, had_model=style_cache.applied_model_key(profile) is not None)
    # A failure needs no handling here: when the job ends 'failed' (now or after its last retry), a
    # trigger sets the profile's training_status='error' and training_error (sql/migrations/0002_queue.sql).

    key = model_key_for(job.photographer_id, job.style_profile_id)
    runtime.storage.put(key, style_model.save(style), "application/octet-stream")
    elapsed = round(time.monotonic() - started, 2)
    queue.jobs.update_style_training(
        job.style_profile_id,
        training_status="ready",
        training_method=str(style.metadata.get("method") or style.method),  # "preset" for a preset alone
        model_key=key,
        model_filename=key.rsplit("/", 1)[-1],
        training_time_s=elapsed,
        pairs_used=used,
        training_error=None,
    )
    progress.extra.update(stage="done", metrics=_public_metrics(style.metadata), model_key=key)
    progress.bar_total = progress.bar_total or used
    row_total = job.kept_total or progress.bar_total
    queue.jobs.complete(
        job.id,
        processed=row_total,
        total=row_total,
        progress=progress.as_json(),
        phase_timings={"training": {"total_s": elapsed}},
        summary=None,
    )
    log.info("style_trained", method=style.method, pairs=used, seconds=elapsed, **_public_metrics(style.metadata))
    return JobOutcome("completed", processed=used, wall_s=elapsed)


# -- the two methods ------------------------------------------------------------------------------
def _train_lut(
    job: Job, runtime: Runtime, progress: _Progress, control: JobControl, preset: PresetSettings | None = None
) -> tuple[Any, int]:
    raw = job.payload.get("pairs")
    least = MIN_PAIRS if preset is None else MIN_PAIRS_WITH_PRESET
    if not isinstance(raw, list) or not raw:
        raise JobInputError(
            f"train_style needs payload.pairs: a list of {{original_key, edited_key}} (at least {MIN_PAIRS})"
            " or payload.preset_file_key: a Lightroom preset"
        )
    if len(raw) > MAX_PAIRS:
        raise JobInputError(f"{len(raw)} pairs given; train with at most {MAX_PAIRS}")
    progress.extra.update(stage="downloading", pairs_given=len(raw))
    progress.write(force=True)

    def load_pair(item: Any) -> Any:
        if not isinstance(item, dict):
            raise JobInputError("a pair is not an object with original_key and edited_key")
        before = _load_image(item.get("original_key"), job, runtime, "original", PAIR_EDGE)
        after = _load_image(item.get("edited_key"), job, runtime, "edited", PAIR_EDGE)
        try:
            return style_train.align_pair(before, after)
        except ValueError as exc:
            raise JobInputError(f"pair {item.get('original_key')} / {item.get('edited_key')}: {exc}") from None

    pairs, problems = _load_all(raw, load_pair, runtime.settings.io_threads)
    if len(pairs) < least:
        detail = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise JobInputError(
            f"only {len(pairs)} of {len(raw)} before/after pairs are usable; at least {least} are needed"
            + (" with a preset (or none, to use the preset alone)" if preset is not None else "")
            + (f" ({detail})" if detail else "")
        )
    progress.extra.update(stage="training", pairs_used=len(pairs), pairs_skipped=problems)
    progress.write(force=True)

    def on_progress(p: style_train.TrainProgress) -> None:
        notify.alive()
        progress.extra.update(training=p.to_json())
        progress.write()

    style = style_train.train(
        pairs,
        epochs=job.payload.get("epochs"),  # train() checks it: 1–1000 or absent
        device=runtime.models.device,
        on_progress=on_progress,
        should_stop=control.should_stop,
        start=None if preset is None else render_lut(preset),
    )
    if preset is not None:
        style.metadata["preset"] = preset.summary()
    return style, len(pairs)


def _fit_histogram(job: Job, profile: dict[str, Any], runtime: Runtime, progress: _Progress) -> tuple[Any, int]:
    keys = job.payload.get("reference_keys") or profile.get("reference_image_keys") or []
    if not isinstance(keys, list) or not keys:
        raise JobInputError("the histogram method needs reference photos: payload.reference_keys or the profile's")
    progress.extra.update(stage="downloading", references_given=len(keys))
    progress.write(force=True)
    images, problems = _load_all(
        keys,
        lambda key: _load_image(key, job, runtime, "reference", style_histogram.STAT_EDGE),
        runtime.settings.io_threads,
    )
    if not images:
        raise JobInputError("none of the reference photos could be used: " + "; ".join(problems[:3]))
    notify.alive()
    return style_histogram.fit(images), len(images)


# -- helpers --------------------------------------------------------------------------------------
def _load_preset(job: Job, runtime: Runtime, progress: _Progress) -> PresetSettings | None:
    """The payload's Lightroom preset, parsed; None without one."""
    key = job.payload.get("preset_file_key")
    if not key:
        return None
    try:
        checked = check_tenant_key(key if isinstance(key, str) else None, job.photographer_id, what="preset file")
        data = runtime.storage.get(checked)
    except MissingObjectError:
        raise JobInputError(f"preset file {key} is not in storage; upload the preset again") from None
    except TenantViolationError as exc:
        raise JobInputError(exc.message) from None
    preset = style_preset.parse(data, checked.rsplit("/", 1)[-1], what=f"preset file {checked}")
    progress.extra.update(preset=preset.summary())
    return preset


def _load_image(key: Any, job: Job, runtime: Runtime, what: str, long_edge: int) -> Image:
    """The photo at ``key``, decoded and shrunk at once to at most ``long_edge`` (the size it is used at)."""
    checked = check_tenant_key(key if isinstance(key, str) else None, job.photographer_id, what=f"{what} photo")
    frame = decoder.decode(
        runtime.storage.get(checked),
        photo_id=checked,
        filename=checked.rsplit("/", 1)[-1],
        max_pixels=runtime.settings.max_image_pixels,
    )
    return shrink(frame.image, long_edge)


def _load_all(items: Sequence[Any], load: Callable[[Any], Any], threads: int) -> tuple[list[Any], list[str]]:
    """Load every item in threads; photo-level problems are collected, job-level ones raised.

    While it waits on the downloads the working thread says it is waiting on I/O (``notify.waiting``),
    so a long download keeps the watchdog fed and the job's lease renewed (its heartbeat thread stops
    once this thread goes silent for the watchdog's window) as long as storage requests finish.
    """
    good: list[Any] = []
    problems: list[str] = []
    with ThreadPoolExecutor(max(1, min(threads, 8))) as pool:
        futures = [pool.submit(load, item) for item in items]
        pending = set(futures)
        while pending:
            pending = wait(pending, timeout=_WAIT_SIGN_S).not_done
            notify.waiting()
        for future in futures:
            try:
                good.append(future.result())
            except WorkerError as exc:
                if classify(exc).scope == "job" and not isinstance(exc, JobInputError):
                    raise
                problems.append(exc.message)
    return good, problems


class _Progress:
    """The job row while a style trains: stage, pairs, epoch/total, held-out PSNR, ETA (throttled)."""

    def __init__(self, queue: Queue, job: Job, interval_s: float, control: JobControl) -> None:
        self.queue = queue
        self.job = job
        self.interval_s = interval_s
        self.control = control
        self.extra: dict[str, Any] = {"stage": "starting"}
        self.bar_total = 0  # processed_images/total_images carry epochs while training: a smooth bar
        self._last = float("-inf")

    def as_json(self) -> dict[str, Any]:
        # total: this worker's own count (epochs), so that a retry tells a total_images it wrote from the app's
        return {"kind": "train_style", **self.extra, "total": self.bar_total}

    def write(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        training = self.extra.get("training") or {}
        done = int(training.get("epoch") or 0)
        total = int(training.get("total_epochs") or 0)
        self.bar_total = total
        if self.job.kept_total is not None:  # the app's total stays: its bar moves when the style is done
            done, total = 0, self.job.kept_total
        state = self.queue.jobs.update_progress(
            self.job.id,
            phase=str(self.extra.get("stage")),
            processed=done,
            total=total,
            progress=self.as_json(),
            phase_timings={},
        )
        self.control.saw_state(state)


def _stopped(job: Job, queue: Queue, control: JobControl, progress: _Progress, *, had_model: bool) -> JobOutcome:
    assert job.style_profile_id is not None
    state = control.job_state
    if control.canceled:
        # The profile needs nothing here: a cancel before the job moved it to 'training' left it as it
        # was (the move is conditional), one after was handled by the trigger in sql/migrations/0002_queue.sql.
        queue.jobs.ack_cancel(job.id, 0, progress.as_json())
        return JobOutcome("canceled")
    if state is not None:
        return JobOutcome("lost")
    # Released (the worker is stopping): the profile as it was before, until a worker claims the job again.
    queue.jobs.update_style_training(job.style_profile_id, training_status="ready" if had_model else "pending")
    queue.jobs.release(job.id)
    return JobOutcome("released")


def _public_metrics(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: metadata[k] for k in style_train.SUMMARY_KEYS if k in metadata}
