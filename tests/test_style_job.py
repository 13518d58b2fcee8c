"""train_style jobs through the daemon, and gallery jobs that apply the trained style."""

from __future__ import annotations

import io
import uuid

import numpy as np
from PIL import Image

from worker.queue import Queue
from worker.storage import LocalStorage

from .conftest import jpeg_bytes, make_gallery
from .test_daemon import drain, photo_rows


def warm_look(img: np.ndarray) -> np.ndarray:
    """A known global look: a gentle S-curve and a warm shift."""
    x = img.astype(np.float32) / 255.0
    x = 0.5 + (x - 0.5) * 1.15
    x = x * np.array([1.08, 1.0, 0.9], np.float32)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


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


def new_profile(queue: Queue, photographer: str) -> str:
    row = queue.conn.execute(
        "INSERT INTO style_profiles (photographer_id, name) VALUES (%s, 'Warm') RETURNING id", (photographer,)
    ).fetchone()
    assert row is not None
    return str(row["id"])


def test_train_a_style_then_apply_it_to_a_gallery(queue, db_url, storage, settings, real_photos) -> None:
    photographer = str(uuid.uuid4())
    queue.upsert_photographer(photographer, "Studio")
    profile = new_profile(queue, photographer)
    pairs = upload_pairs(storage, photographer, training_photos())
    job_id = queue.enqueue(
        photographer_id=photographer,
        style_profile_id=profile,
        job_type="train_style",
        payload={"pairs": pairs, "epochs": 30},
    )
    drain(db_url, storage, settings)

    job = queue.get_job(job_id)
    assert job is not None and job["status"] == "completed", job and job["error_log"]
    assert job["progress"]["kind"] == "train_style" and job["progress"]["pairs_used"] == 6
    assert job["progress"]["metrics"]["heldout_psnr"] > 0
    row = queue.style_profile(profile)
    assert row is not None
    assert (row["training_status"], row["status"], row["training_method"]) == ("ready", "ready", "lut3d")
    assert row["model_key"] == f"{photographer}/styles/{profile}.pt" and storage.exists(row["model_key"])
    assert row["pairs_used"] == 6 and row["training_time_s"] > 0 and row["training_error"] is None

    gallery = make_gallery(queue, storage, real_photos[1:3], photographer_id=photographer)
    gallery_job = queue.enqueue(photographer_id=photographer, gallery_id=gallery.gallery_id, style_profile_id=profile)
    drain(db_url, storage, settings)
    assert (queue.get_job(gallery_job) or {})["status"] == "completed"
    for name, data in real_photos[1:3]:
        photo = photo_rows(queue, gallery.gallery_id)[name]
        assert photo["ai_edits"]["style"] == {"applied": True, "method": "lut3d"}
        before = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        after = np.asarray(Image.open(io.BytesIO(storage.get(photo["edited_key"]))).convert("RGB"))
        target = warm_look(before)
        # Photos the style never saw come out much closer to the photographer's look than they went in.
        assert psnr(after, target) > psnr(before, target) + 6, (psnr(after, target), psnr(before, target))


def test_too_few_usable_pairs_end_with_a_training_error_that_says_why(queue, db_url, storage, settings) -> None:
    photographer = str(uuid.uuid4())
    queue.upsert_photographer(photographer, "Studio")
    profile = new_profile(queue, photographer)
    pairs = upload_pairs(storage, photographer, training_photos()[:3])
    pairs.append({"original_key": f"{photographer}/missing/a.jpg", "edited_key": f"{photographer}/missing/b.jpg"})
    pairs.append({"original_key": f"{uuid.uuid4()}/theirs.jpg", "edited_key": pairs[0]["edited_key"]})
    job_id = queue.enqueue(
        photographer_id=photographer, style_profile_id=profile, job_type="train_style", payload={"pairs": pairs}
    )
    drain(db_url, storage, settings)
    job = queue.get_job(job_id)
    assert job is not None and job["status"] == "failed" and job["attempts"] == 1  # not retried
    row = queue.style_profile(profile)
    assert row is not None and row["training_status"] == "error"
    assert row["training_error"].startswith("only 3 of 5 before/after pairs are usable; at least 5 are needed")
    assert "not in storage" in row["training_error"] and "outside photographer" in row["training_error"]
    assert job["error_log"] == row["training_error"]


def test_an_unusable_style_model_sends_the_photos_to_review(queue, db_url, storage, settings, real_photos) -> None:
    gallery = make_gallery(queue, storage, real_photos[:1])
    profile = new_profile(queue, gallery.photographer_id)
    key = f"{gallery.photographer_id}/styles/{profile}.pt"
    storage.put(key, b"this is not a model", "application/octet-stream")
    queue.conn.execute(
        "UPDATE style_profiles SET model_key = %s, training_status = 'ready', status = 'ready' WHERE id = %s",
        (key, profile),
    )
    job_id = queue.enqueue(
        photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id, style_profile_id=profile
    )
    drain(db_url, storage, settings)
    assert (queue.get_job(job_id) or {})["status"] == "completed"
    photo = next(iter(photo_rows(queue, gallery.gallery_id).values()))
    assert photo["status"] == "edited" and photo["needs_review"]
    assert photo["ai_edits"]["style"]["applied"] is False
    assert "style model unusable" in photo["ai_edits"]["review_reasons"][0]
