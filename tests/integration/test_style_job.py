"""train_style jobs through the daemon, and gallery jobs that apply the trained style."""

from __future__ import annotations

import io
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg
import pytest
from PIL import Image

from tests.conftest import jpeg_bytes, make_gallery
from tests.integration.test_daemon import drain, photo_rows
from tests.unit.test_style_confidence import daylight_photos, shifted
from worker.imaging.resize import shrink
from worker.jobs.gallery import load_style_model
from worker.jobs.runtime import JobControl, Runtime
from worker.jobs.style import run_style_job
from worker.models.bundle import ModelBundle
from worker.queue.database import Queue
from worker.queue.store import Job
from worker.service.config import Settings
from worker.storage.local import LocalStorage
from worker.style import cache as style_cache
from worker.style import histogram as style_histogram
from worker.style import model as style_model
from worker.style import train as style_train
from worker.style.metrics import psnr


def warm_look(img: np.ndarray) -> np.ndarray:
    """A known global look: a gentle S-curve and a warm shift."""
    x = img.astype(np.float32) / 255.0
    x = 0.5 + (x - 0.5) * 1.15
    x = x * np.array([1.08, 1.0, 0.9], np.float32)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def upload_pairs(storage: LocalStorage, photographer: str, photos: list[np.ndarray]) -> list[dict[str, str]]:
    pairs = []
    for i, img in enumerate(photos):
        before = f"{photographer}/style-pairs/before/{i}.jpg"
        after = f"{photographer}/style-pairs/after/{i}.jpg"
        storage.put(before, jpeg_bytes(img, quality=95), "image/jpeg")
        storage.put(after, jpeg_bytes(warm_look(img), quality=95), "image/jpeg")
        pairs.append({"original_key": before, "edited_key": after})
    return pairs


def training_photos() -> list[np.ndarray]:
    from skimage import data

    names = ("astronaut", "coffee", "rocket", "chelsea", "immunohistochemistry", "hubble_deep_field")
    return [np.asarray(getattr(data, n)())[:, :, :3] for n in names]


def new_photographer(queue: Queue) -> str:
    photographer = str(uuid.uuid4())
    queue.admin.upsert_photographer(photographer, "Studio")
    return photographer


def studio_with_profile(queue: Queue) -> tuple[str, str]:
    """A photographer and a style profile of theirs: (photographer id, profile id)."""
    photographer = new_photographer(queue)
    return photographer, new_profile(queue, photographer)


def new_profile(queue: Queue, photographer: str) -> str:
    row = queue.conn.execute(
        "INSERT INTO style_profiles (photographer_id, name) VALUES (%s, 'Warm') RETURNING id", (photographer,)
    ).fetchone()
    assert row is not None
    return str(row["id"])


def test_train_a_style_then_apply_it_to_a_gallery(queue, db_url, storage, settings, real_photos) -> None:
    photographer, profile = studio_with_profile(queue)
    pairs = upload_pairs(storage, photographer, training_photos())
    job_id = queue.admin.enqueue(
        photographer_id=photographer,
        style_profile_id=profile,
        job_type="train_style",
        payload={"pairs": pairs, "epochs": 30},
    )
    drain(db_url, storage, settings)

    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed", job and job["error_log"]
    assert job["progress"]["kind"] == "train_style" and job["progress"]["pairs_used"] == 6
    metrics = job["progress"]["metrics"]
    assert metrics["heldout_psnr"] > 0 and metrics["pairs_used"] == 6
    assert metrics["heldout_delta_e2000"] > 0 and metrics["heldout_identity_psnr"] > 0
    row = queue.app.style_profile(profile)
    assert row is not None
    assert (row["training_status"], row["status"], row["training_method"]) == ("ready", "ready", "lut3d")
    assert row["model_key"] == f"{photographer}/styles/{profile}.pt" and storage.exists(row["model_key"])
    assert row["pairs_used"] == 6 and row["training_time_s"] > 0 and row["training_error"] is None

    gallery = make_gallery(queue, storage, real_photos[1:3], photographer_id=photographer)
    gallery_job = queue.admin.enqueue(
        photographer_id=photographer, gallery_id=gallery.gallery_id, style_profile_id=profile
    )
    drain(db_url, storage, settings)
    assert (queue.app.get_job(gallery_job) or {})["status"] == "completed"
    for name, data in real_photos[1:3]:
        photo = photo_rows(queue, gallery.gallery_id)[name]
        style = photo["ai_edits"]["style"]
        assert (style["applied"], style["method"]) == (True, "lut3d")
        assert isinstance(style["confidence"], float) and photo["edit_confidence"] == pytest.approx(style["confidence"])
        before = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        after = np.asarray(Image.open(io.BytesIO(storage.get(photo["edited_key"]))).convert("RGB"))
        target = warm_look(before)
        # Photos the style never saw come out much closer to the photographer's look than they went in.
        assert psnr(after, target) > psnr(before, target) + 6, (psnr(after, target), psnr(before, target))


def test_an_unusable_style_model_sends_the_photos_to_review(queue, db_url, storage, settings, real_photos) -> None:
    gallery = make_gallery(queue, storage, real_photos[:1])
    profile = new_profile(queue, gallery.photographer_id)
    key = f"{gallery.photographer_id}/styles/{profile}.pt"
    storage.put(key, b"this is not a model", "application/octet-stream")
    queue.conn.execute(
        "UPDATE style_profiles SET model_key = %s, training_status = 'ready', status = 'ready' WHERE id = %s",
        (key, profile),
    )
    job_id = queue.admin.enqueue(
        photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id, style_profile_id=profile
    )
    drain(db_url, storage, settings)
    assert (queue.app.get_job(job_id) or {})["status"] == "completed"
    photo = next(iter(photo_rows(queue, gallery.gallery_id).values()))
    assert photo["status"] == "edited" and photo["needs_review"]
    assert photo["ai_edits"]["style"]["applied"] is False
    assert "style model unusable" in photo["ai_edits"]["review_reasons"][0]


def test_a_photo_unlike_the_training_pairs_goes_to_review(queue, db_url, storage, settings) -> None:
    """A style trained on daylight photos, applied to a gallery with a daylight photo it never saw and
    the same scene three stops darker (a night shot): both are styled; the night photo's row gets a low
    edit_confidence and needs_review with the style's reason, the daylight one neither."""
    photographer, profile = studio_with_profile(queue)
    photos = daylight_photos()
    cut = [int(p.shape[1] * 0.6) for p in photos]
    befores = [np.ascontiguousarray(p[:, :c]) for p, c in zip(photos, cut, strict=True)]
    config = style_train.TrainConfig(long_edge=256)
    style = style_train.train([(b, warm_look(b)) for b in befores], epochs=4, device="cpu", config=config)
    key = f"{photographer}/styles/{profile}.pt"
    storage.put(key, style_model.save(style), "application/octet-stream")
    queue.jobs.update_style_training(profile, training_status="ready", training_method="lut3d", model_key=key)

    day = np.ascontiguousarray(photos[3][:, cut[3] :])
    gallery = make_gallery(
        queue,
        storage,
        [("day.jpg", jpeg_bytes(day, quality=95)), ("night.jpg", jpeg_bytes(shifted(day, -3.0), quality=95))],
        photographer_id=photographer,
    )
    job_id = queue.admin.enqueue(photographer_id=photographer, gallery_id=gallery.gallery_id, style_profile_id=profile)
    drain(db_url, storage, settings)
    assert (queue.app.get_job(job_id) or {})["status"] == "completed"
    rows = photo_rows(queue, gallery.gallery_id)
    day_row, night_row = rows["day.jpg"], rows["night.jpg"]
    assert day_row["status"] == night_row["status"] == "edited"
    assert day_row["edit_confidence"] >= 0.5 and not day_row["needs_review"]
    assert night_row["edit_confidence"] < 0.5 and night_row["needs_review"]
    assert night_row["edit_confidence"] == pytest.approx(night_row["ai_edits"]["style"]["confidence"])
    reasons = night_row["ai_edits"]["review_reasons"]
    assert len(reasons) == 1 and reasons[0].startswith("style: the style is unsure of this photo")


def store_histogram_style(queue: Queue, storage: LocalStorage, photographer: str, profile: str, ref: np.ndarray):
    """A trained (histogram) model for ``profile``, stored and recorded as the train_style job does."""
    style = style_histogram.fit([ref])
    key = f"{photographer}/styles/{profile}.pt"
    storage.put(key, style_model.save(style), "application/octet-stream")
    queue.jobs.update_style_training(profile, training_status="ready", training_method="histogram", model_key=key)
    return style


def gallery_job_for(photographer: str, profile: str) -> Job:
    return Job(str(uuid.uuid4()), "gallery", photographer, None, profile, {}, {}, 1, 3, {})


def test_a_profile_keeps_its_model_while_it_retrains_and_after_a_failed_retrain(
    queue: Queue, storage: LocalStorage, settings: Settings, astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    photographer, profile = studio_with_profile(queue)
    runtime = Runtime(settings=settings, storage=storage, models=ModelBundle(device="cpu"))
    job = gallery_job_for(photographer, profile)

    def choice():  # what a gallery job starting now gets
        return load_style_model(job, queue.app.style_profile(profile), runtime)

    queue.jobs.update_style_training(profile, training_status="training")
    first = choice()  # a first training: no model yet, phase 1 passes through and says so
    assert first.model is None and not first.expected and "no trained model yet" in first.note

    old = store_histogram_style(queue, storage, photographer, profile, astronaut)
    in_use = choice().model
    assert np.array_equal(in_use.tone_target, old.tone_target)
    queue.jobs.update_style_training(profile, training_status="training")  # a retrain starts
    assert choice().model is in_use  # same version: the cached model, not fetched again
    queue.jobs.update_style_training(profile, training_status="error", training_error="the GPU fell over")
    assert np.array_equal(choice().model.tone_target, old.tone_target)

    new = store_histogram_style(queue, storage, photographer, profile, coffee)  # a retrain completes
    assert not np.array_equal(new.tone_target, old.tone_target)
    assert np.array_equal(choice().model.tone_target, new.tone_target)


@pytest.mark.parametrize("had_model", [True, False])
def test_canceling_a_training_keeps_a_model_it_had_ready(
    queue: Queue,
    storage: LocalStorage,
    settings: Settings,
    astronaut: np.ndarray,
    had_model: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photographer, profile = studio_with_profile(queue)
    if had_model:
        store_histogram_style(queue, storage, photographer, profile, astronaut)
    before = queue.app.style_profile(profile)
    assert before is not None
    pairs = upload_pairs(storage, photographer, training_photos()[:5])
    job_id = queue.admin.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"pairs": pairs}
    )
    job = queue.jobs.claim()
    assert job is not None and job.id == job_id
    start = queue.jobs.start_style_training

    def start_then_cancel(job_id: str) -> str:
        state = start(job_id)
        assert queue.app.style_profile(profile)["training_status"] == "training"  # type: ignore[index]
        assert queue.jobs.cancel(job_id) == "canceled"  # the app cancels; the worker sees it at its next write
        return state

    monkeypatch.setattr(queue.jobs, "start_style_training", start_then_cancel)
    runtime = Runtime(settings=settings, storage=storage, models=ModelBundle(device="cpu"))
    assert run_style_job(job, queue, runtime, JobControl()).status == "canceled"

    row = queue.app.style_profile(profile)
    assert row is not None
    assert_cancel_outcome(row, before, had_model)


@pytest.mark.parametrize("had_model", [True, False])
def test_a_training_canceled_before_it_starts_leaves_the_profile_as_it_was(
    queue: Queue, storage: LocalStorage, settings: Settings, astronaut: np.ndarray, had_model: bool
) -> None:
    """Canceled between the claim and the move to 'training': the worker stops without touching the
    profile, as for a job canceled while queued (the trigger only ends a profile that is training)."""
    photographer, profile = studio_with_profile(queue)
    if had_model:
        store_histogram_style(queue, storage, photographer, profile, astronaut)
    before = queue.app.style_profile(profile)
    assert before is not None
    job_id = queue.admin.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"pairs": []}
    )
    job = queue.jobs.claim()
    assert job is not None and job.id == job_id
    assert queue.jobs.cancel(job_id) == "canceled"
    runtime = Runtime(settings=settings, storage=storage, models=ModelBundle(device="cpu"))
    assert run_style_job(job, queue, runtime, JobControl()).status == "canceled"

    row = queue.app.style_profile(profile)
    assert row is not None
    fields = ("training_status", "status", "training_error", "model_key", "training_completed_at", "updated_at")
    assert {k: row[k] for k in fields} == {k: before[k] for k in fields}
    assert queue.conn.execute("SELECT locked_by FROM processing_jobs WHERE id = %s", (job_id,)).fetchone() == {
        "locked_by": None
    }  # the cancel was acknowledged


def test_a_cancel_committing_while_the_training_starts_never_leaves_the_profile_training(
    queue: Queue, db_url: str
) -> None:
    """The app's cancel holds the job row; the start waits for it and then sees the cancel."""
    photographer, profile = studio_with_profile(queue)
    job_id = queue.admin.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"pairs": []}
    )
    assert queue.jobs.claim() is not None
    app = psycopg.connect(db_url, autocommit=False)
    try:
        app.execute("SELECT apelier.cancel_job(%s)", (job_id,))  # uncommitted: the job row stays locked
        with ThreadPoolExecutor(1) as pool:
            started = pool.submit(queue.jobs.start_style_training, job_id)
            time.sleep(0.3)
            assert not started.done()  # waiting on the app's lock, not reading the old row
            app.commit()
            assert started.result(timeout=10) == "canceled"
    finally:
        app.close()
    row = queue.app.style_profile(profile)
    assert row is not None and row["training_status"] != "training"


def assert_cancel_outcome(row: dict[str, Any], before: dict[str, Any], had_model: bool) -> None:
    """A canceled training: a profile that had a model is back to ready with it, one without is in error."""
    if had_model:
        assert (row["training_status"], row["status"], row["training_error"]) == ("ready", "ready", None)
        assert row["model_key"] == before["model_key"] and row["training_method"] == "histogram"
        assert row["training_completed_at"] == before["training_completed_at"]  # the style cache's version
    else:
        assert (row["training_status"], row["training_error"]) == ("error", "training canceled")
        assert row["model_key"] is None


def test_a_training_job_that_fails_by_any_path_ends_its_profiles_training(queue: Queue) -> None:
    """The profile leaves 'training' however its job ends failed: here a retryable error on the last
    attempt and a worker that stopped responding (neither passes the worker's own error handling)."""
    photographer = new_photographer(queue)

    def training_job(max_attempts: int) -> tuple[str, str]:
        profile = new_profile(queue, photographer)
        job_id = queue.admin.enqueue(
            photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"pairs": []}
        )
        queue.conn.execute("UPDATE processing_jobs SET max_attempts = %s WHERE id = %s", (max_attempts, job_id))
        job = queue.jobs.claim()
        assert job is not None and job.id == job_id
        assert queue.jobs.start_style_training(job_id) == "processing"  # what run_style_job does first
        return profile, job_id

    def profile_status(profile: str) -> tuple[str, str | None]:
        row = queue.app.style_profile(profile)
        assert row is not None
        return row["training_status"], row["training_error"]

    retried, job_id = training_job(max_attempts=2)
    assert queue.jobs.fail(job_id, "storage timed out", 30.0) == "queued"
    assert profile_status(retried) == ("training", None)  # it will run again
    queue.conn.execute("UPDATE processing_jobs SET run_after = now() WHERE id = %s", (job_id,))
    assert queue.jobs.claim() is not None
    assert queue.jobs.fail(job_id, "storage timed out", None) == "failed"
    assert profile_status(retried) == ("error", "storage timed out")

    stale, job_id = training_job(max_attempts=1)
    queue.conn.execute(
        "UPDATE processing_jobs SET heartbeat_at = now() - interval '2 minutes' WHERE id = %s", (job_id,)
    )
    assert [r["new_status"] for r in queue.jobs.requeue_stale(60)] == ["failed"]
    status, error = profile_status(stale)
    assert status == "error" and error is not None and "stopped responding" in error
    assert (queue.app.style_profile(stale) or {})["status"] == "error"


@pytest.mark.parametrize("had_model", [False, True])
def test_canceling_a_training_that_waits_for_a_retry_ends_its_profiles_training(
    queue: Queue, storage: LocalStorage, astronaut: np.ndarray, had_model: bool
) -> None:
    """No worker holds the job: the trigger ends its profile's training, as for any cancel after the start."""
    photographer, profile = studio_with_profile(queue)
    if had_model:
        store_histogram_style(queue, storage, photographer, profile, astronaut)
    before = queue.app.style_profile(profile) or {}
    job_id = queue.admin.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"pairs": []}
    )
    assert queue.jobs.claim() is not None
    assert queue.jobs.start_style_training(job_id) == "processing"
    assert queue.jobs.fail(job_id, "storage timed out", 30.0) == "queued"  # waiting for its retry
    assert queue.jobs.cancel(job_id) == "canceled"
    row = queue.app.style_profile(profile)
    assert row is not None
    assert_cancel_outcome(row, before, had_model)


def test_training_keeps_only_small_copies_of_the_photos(
    queue: Queue, storage: LocalStorage, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each photo is shrunk as it is decoded (200 pairs of 24 MP would otherwise hold ~29 GB)."""
    photographer = new_photographer(queue)
    photos = training_photos()[:5]
    assert max(max(p.shape[:2]) for p in photos) > 512
    pairs = upload_pairs(storage, photographer, photos)
    seen: dict[str, list[tuple[int, ...]]] = {}
    fit = style_histogram.fit

    def fake_train(pairs, **kw):
        seen["lut3d"] = [img.shape for pair in pairs for img in pair]
        return fit([after for _, after in pairs])  # a real style to store; training itself is tested elsewhere

    def spy_fit(references):
        seen["histogram"] = [img.shape for img in references]
        return fit(references)

    monkeypatch.setattr(style_train, "train", fake_train)
    monkeypatch.setattr(style_histogram, "fit", spy_fit)
    runtime = Runtime(settings=settings, storage=storage, models=ModelBundle(device="cpu"))
    for payload in (
        {"pairs": pairs},
        {"training_method": "histogram", "reference_keys": [p["edited_key"] for p in pairs]},
    ):
        profile = new_profile(queue, photographer)
        queue.admin.enqueue(
            photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload=payload
        )
        job = queue.jobs.claim()
        assert job is not None
        assert run_style_job(job, queue, runtime, JobControl()).status == "completed"
        if "reference_keys" in payload:  # the app shows how many photos the histogram style learned from
            assert (queue.app.get_job(job.id) or {})["progress"]["metrics"] == {"references_used": len(pairs)}

    for method, edge in (("lut3d", 512), ("histogram", style_histogram.STAT_EDGE)):
        assert max(max(shape[:2]) for shape in seen[method]) == edge, (method, seen[method])
    shapes = seen["lut3d"]
    for photo, before, after in zip(photos, shapes[::2], shapes[1::2], strict=True):
        assert before == after  # aligned
        assert before[:2] == shrink(photo, 512).shape[:2]


@pytest.mark.parametrize("had_model", [False, True])
def test_a_training_released_on_shutdown_leaves_the_profile_as_it_was_before_it_started(
    queue: Queue, storage: LocalStorage, settings: Settings, astronaut: np.ndarray, had_model: bool
) -> None:
    """SIGTERM while training: the job goes back to the queue, the profile back to ready (it has a
    model, still applied to galleries) or pending, until a worker claims the job again."""
    photographer, profile = studio_with_profile(queue)
    if had_model:
        store_histogram_style(queue, storage, photographer, profile, astronaut)
    pairs = upload_pairs(storage, photographer, training_photos()[:5])
    job_id = queue.admin.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"pairs": pairs}
    )
    job = queue.jobs.claim()
    assert job is not None and job.id == job_id
    control = JobControl()
    control.shutdown.set()
    runtime = Runtime(settings=settings, storage=storage, models=ModelBundle(device="cpu"))
    assert run_style_job(job, queue, runtime, control).status == "released"
    row = queue.app.style_profile(profile)
    assert row is not None
    assert (row["training_status"], row["status"]) == (("ready",) * 2 if had_model else ("pending",) * 2)
    assert bool(row["model_key"]) == had_model
    assert (queue.app.get_job(job_id) or {})["status"] == "queued"


def test_a_canceled_retrain_of_a_legacy_model_keeps_it(queue: Queue) -> None:
    """A profile the app's old engine trained (only ``model_weights_key``, ready): galleries apply that
    model (style_cache.applied_model_key), so a canceled retrain goes back to ready with it, as for ours."""
    photographer, profile = studio_with_profile(queue)
    queue.conn.execute(
        "UPDATE style_profiles SET model_weights_key = %s, training_status = 'ready', status = 'ready' WHERE id = %s",
        (f"{photographer}/legacy/warm.pt", profile),
    )
    job_id = queue.admin.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"pairs": []}
    )
    assert queue.jobs.claim() is not None
    assert queue.jobs.start_style_training(job_id) == "processing"
    assert queue.jobs.cancel(job_id) == "canceled"
    row = queue.app.style_profile(profile) or {}
    assert (row["training_status"], row["status"], row["training_error"]) == ("ready", "ready", None)
    assert style_cache.applied_model_key(row) == f"{photographer}/legacy/warm.pt"


# -- Lightroom presets (worker/style/preset.py) --------------------------------------------------
PRESET_XMP = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/" crs:Exposure2012="+0.40"
 crs:Contrast2012="+25" crs:SaturationAdjustmentGreen="-60" crs:SplitToningHighlightHue="45"
 crs:SplitToningHighlightSaturation="25" crs:Clarity2012="+30" crs:Name="Golden"/></rdf:RDF></x:xmpmeta>"""


def test_a_preset_alone_becomes_the_profiles_model(queue, db_url, storage, settings) -> None:
    from worker.models import lut3d
    from worker.style import preset as style_preset
    from worker.style.develop import render_lut

    photographer, profile = studio_with_profile(queue)
    key = f"{photographer}/presets/golden.xmp"
    storage.put(key, PRESET_XMP, "application/rdf+xml")
    job_id = queue.admin.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"preset_file_key": key}
    )
    drain(db_url, storage, settings)
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed", job and job["error_log"]
    assert job["progress"]["preset"]["ignored"] == {"Clarity2012": style_preset.LOCAL}
    row = queue.app.style_profile(profile)
    assert row is not None and (row["training_status"], row["training_method"]) == ("ready", "preset")
    assert row["pairs_used"] == 0
    style = style_model.load(storage.get(row["model_key"]))
    photo = training_photos()[1]
    lut = render_lut(style_preset.parse(PRESET_XMP, "golden.xmp"))
    assert np.array_equal(style.apply(photo, "cpu"), lut3d.apply_lut_image_pillow(lut, photo))


@pytest.mark.slow
def test_pairs_refine_the_profiles_preset(queue, db_url, storage, settings) -> None:
    photographer, profile = studio_with_profile(queue)
    key = f"{photographer}/presets/golden.xmp"
    storage.put(key, PRESET_XMP, "application/rdf+xml")
    # A key the app's old engine left in the profile's settings is not the job's preset.
    queue.conn.execute(
        "UPDATE style_profiles SET settings = %s WHERE id = %s",
        (psycopg.types.json.Jsonb({"preset_file_key": f"{photographer}/presets/stale.xmp"}), profile),
    )
    pairs = upload_pairs(storage, photographer, training_photos()[:3])  # 3: enough with a preset
    job_id = queue.admin.enqueue(
        photographer_id=photographer,
        style_profile_id=profile,
        job_type="train_style",
        payload={"pairs": pairs, "epochs": 6, "preset_file_key": key},
    )
    drain(db_url, storage, settings)
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "completed", job and job["error_log"]
    row = queue.app.style_profile(profile)
    assert row is not None and (row["training_method"], row["pairs_used"]) == ("lut3d", 3)
    style = style_model.load(storage.get(row["model_key"]))
    assert style.metadata["started_from_lut"] is True and style.metadata["preset"]["name"] == "Golden"


@pytest.mark.parametrize(
    ("preset_key", "data", "says"),
    [
        ("{me}/presets/evil.xmp", b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "DOCTYPE"),
        ("{me}/presets/missing.xmp", None, "is not in storage"),
        ("{other}/presets/theirs.xmp", PRESET_XMP, "outside photographer"),
    ],
)
def test_an_unusable_preset_ends_the_training_with_what_to_fix(
    queue, db_url, storage, settings, preset_key: str, data: bytes | None, says: str
) -> None:
    photographer, profile = studio_with_profile(queue)
    key = preset_key.format(me=photographer, other=uuid.uuid4())
    if data is not None:
        storage.put(key, data, "application/octet-stream")
    job_id = queue.admin.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"preset_file_key": key}
    )
    drain(db_url, storage, settings)
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "failed" and job["attempts"] == 1  # not retried
    row = queue.app.style_profile(profile)
    assert row is not None and row["training_status"] == "error" and says in row["training_error"]
    assert "\n" not in row["training_error"]
