"""``apelier-worker demo``: the whole path on the embedded defaults, with real photos.

Starts the embedded PostgreSQL (or uses ``DATABASE_URL``), creates the schema,
uploads a gallery of real photographs that ship inside wheels (scikit-image,
matplotlib, scikit-learn) the way the app does, inserts the
``processing_jobs`` row the app would insert, runs the daemon until the queue
is drained — with a progress bar fed from the job row, as the app's live view
is — then prints the per-phase timings, where the outputs are, and writes a
before/after contact sheet.
"""

from __future__ import annotations

import io
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from worker.jobs.runtime import Runtime
from worker.models import bundle
from worker.queue.database import Queue
from worker.service import embedded, logs
from worker.service import progress as progress_bar
from worker.service.config import Settings
from worker.service.daemon import Daemon
from worker.storage.base import Storage
from worker.storage.factory import from_settings

DEMO_PHOTOGRAPHER = "00000000-0000-4000-8000-00000000d3e0"


@dataclass(frozen=True)
class DemoPhoto:
    filename: str
    data: bytes
    mime: str


def demo_photos() -> list[DemoPhoto]:
    """Real photographs from the wheels (people, a cat, a rocket launch, a temple, a flower)."""
    photos: list[DemoPhoto] = []
    try:
        from skimage import data as skdata  # noqa: PLC0415 - the optional [demo] extra

        for name in ("astronaut", "coffee", "rocket", "chelsea"):
            photos.append(_jpeg(f"{name}.jpg", np.asarray(getattr(skdata, name)())))
    except ImportError:
        pass
    try:
        import matplotlib.cbook  # noqa: PLC0415 - the optional [demo] extra

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        photos.append(DemoPhoto("grace_hopper.jpg", Path(str(path)).read_bytes(), "image/jpeg"))
    except (ImportError, OSError, ValueError):
        pass
    try:
        import sklearn.datasets  # noqa: PLC0415 - the optional [demo] extra

        folder = Path(sklearn.datasets.__file__).parent / "images"
        for name in ("china.jpg", "flower.jpg"):
            if (folder / name).is_file():
                photos.append(DemoPhoto(name, (folder / name).read_bytes(), "image/jpeg"))
    except ImportError:
        pass
    return photos


def _jpeg(filename: str, array: np.ndarray) -> DemoPhoto:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=95)
    return DemoPhoto(filename, buf.getvalue(), "image/jpeg")


def seed_gallery(
    queue: Queue, storage: Storage, photos: list[DemoPhoto], title: str = "Demo wedding"
) -> tuple[str, str]:
    """Create (once) the demo photographer, then a new gallery with ``photos`` uploaded as the app does."""
    photographer = queue.admin.upsert_photographer(DEMO_PHOTOGRAPHER, "Demo Studio")
    gallery = queue.admin.insert_gallery(photographer, title)
    for order, photo in enumerate(photos):
        key = f"{photographer}/{gallery}/uploads/{uuid.uuid4().hex[:8]}-{photo.filename}"
        storage.put(key, photo.data, photo.mime)
        queue.admin.insert_photo(
            photographer_id=photographer,
            gallery_id=gallery,
            key=key,
            filename=photo.filename,
            size=len(photo.data),
            mime=photo.mime,
            sort_order=order,
        )
    return photographer, gallery


def demo_look(image: np.ndarray) -> np.ndarray:
    """The demo photographer's look: warm highlights, lifted blacks, a touch less saturation."""
    x = image.astype(np.float32) / 255.0
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * 0.85  # a little less saturation
    x = 0.06 + 0.94 * x  # lifted blacks (a soft, filmic toe)
    x = x ** np.array([0.92, 1.0, 1.12], np.float32)  # warm: red up, blue down, most in the mid-tones
    return np.asarray(np.clip(x * 255.0 + 0.5, 0, 255), dtype=np.uint8)


def seed_style(
    queue: Queue, storage: Storage, photographer: str, photos: list[DemoPhoto]
) -> tuple[str, list[dict[str, str]]]:
    """A style profile and before/after pairs, as the app creates them when a photographer uploads edits."""
    profile = queue.admin.insert_style_profile(photographer, "Demo look (warm film)")
    pairs = []
    for i, photo in enumerate(photos):
        with Image.open(io.BytesIO(photo.data)) as img:
            before = np.asarray(img.convert("RGB"))
        after = _jpeg(photo.filename, demo_look(before)).data
        keys = {
            "original_key": f"{photographer}/style-pairs/{profile}/before/{i:02d}-{photo.filename}",
            "edited_key": f"{photographer}/style-pairs/{profile}/after/{i:02d}-{photo.filename}",
        }
        storage.put(keys["original_key"], photo.data, photo.mime)
        storage.put(keys["edited_key"], after, "image/jpeg")
        pairs.append(keys)
    return profile, pairs


def run_demo(settings: Settings, *, progress: bool = True) -> dict[str, Any]:
    url = embedded.database_url(settings)
    queue = Queue(url, "demo")
    queue.admin.migrate()
    storage = from_settings(settings)
    photos = demo_photos()
    if not photos:
        raise SystemExit("no demo photos found: install the demo extra (pip install 'apelier-worker[demo]')")
    photographer, gallery = seed_gallery(queue, storage, photos)
    profile, pairs = seed_style(queue, storage, photographer, photos[:6])
    train_job = queue.admin.enqueue(
        photographer_id=photographer,
        style_profile_id=profile,
        job_type="train_style",
        payload={"pairs": pairs, "epochs": 40},
    )
    job_id = queue.admin.enqueue(
        photographer_id=photographer, gallery_id=gallery, style_profile_id=profile, priority=110
    )
    print(f"style profile {profile}: {len(pairs)} before/after pairs queued for training as job {train_job}")
    print(f"gallery {gallery}: {len(photos)} photos queued as job {job_id}, to be edited in that style")

    runtime = Runtime(settings=settings, storage=storage, models=bundle.load(settings))
    for note in runtime.models.notes:
        print(f"note: {note}")
    daemon = Daemon(runtime, url, drain=True)
    stop_watch = threading.Event()
    watched = [(train_job, "training the style", "epoch"), (job_id, "", "photo")]
    watcher = threading.Thread(target=_watch, args=(url, watched, stop_watch, progress), daemon=True)
    watcher.start()
    try:
        daemon.install_signal_handlers()
        daemon.run()
    finally:
        stop_watch.set()
        watcher.join(timeout=5)

    style = queue.app.style_profile(profile) or {}
    job = queue.app.get_job(job_id) or {}
    rows = queue.app.gallery_photo_rows(gallery)
    sheet = write_contact_sheet(storage, rows, settings.data_dir / "demo" / f"contact_sheet_{gallery[:8]}.png")
    queue.close()
    _print_style(style)
    _print_summary(job, rows, storage, sheet)
    return {"job": job, "style": style, "photos": rows, "contact_sheet": str(sheet) if sheet else None}


def _watch(url: str, jobs: list[tuple[str, str, str]], stop: threading.Event, progress: bool) -> None:
    """Follow each job row in turn as the app's live view does, and draw it as a progress bar."""
    queue = Queue(url, "demo-watch")
    try:
        for job_id, label, unit in jobs:
            bar = progress_bar.bar(total=1, unit=unit, desc=label or "queued", disable=not progress)
            try:
                while True:
                    stopped = stop.wait(0.2)
                    job = queue.app.get_job(job_id)
                    if job:
                        bar.total = max(1, int(job["total_images"] or 1))
                        bar.n = int(job["processed_images"] or 0)
                        bar.set_description(label or str(job["current_phase"] or job["status"]))
                        bar.refresh()
                    if stopped or not job or job["status"] in ("completed", "failed", "canceled"):
                        break
            finally:
                bar.close()
    finally:
        queue.close()


def _print_style(style: dict[str, Any]) -> None:
    if not style:
        return
    print(
        f"\nstyle {style.get('name')!r}: {style.get('training_status')}"
        + (
            f", learned from {style.get('pairs_used')} pairs in {style.get('training_time_s')} s"
            if style.get("training_status") == "ready"
            else f" ({style.get('training_error')})"
        )
    )


def write_contact_sheet(storage: Storage, rows: list[dict[str, Any]], path: Path, width: int = 300) -> Path | None:
    """Before (the upload) beside after (the web JPEG), one row per photo, each row as tall as it needs."""
    pairs = []
    for row in rows:
        if not row.get("web_key"):
            continue
        try:
            before = Image.open(io.BytesIO(storage.get(row["original_key"]))).convert("RGB")
            after = Image.open(io.BytesIO(storage.get(row["web_key"]))).convert("RGB")
        except Exception:  # noqa: S112 - a sheet with one photo fewer is fine
            continue
        for img in (before, after):
            img.thumbnail((width, width * 2))
        pairs.append((row["filename"], before, after))
    if not pairs:
        return None
    label_h, pad = 18, 10
    heights = [max(b.height, a.height) for _, b, a in pairs]
    sheet = Image.new("RGB", (2 * width + 3 * pad, sum(heights) + len(pairs) * (label_h + pad) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for (name, before, after), height in zip(pairs, heights, strict=True):
        draw.text((pad, y), f"{name}: before | after", fill=(230, 230, 230))
        sheet.paste(before, (pad, y + label_h))
        sheet.paste(after, (2 * pad + width, y + label_h))
        y += label_h + height + pad
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _print_summary(job: dict[str, Any], rows: list[dict[str, Any]], storage: Storage, sheet: Path | None) -> None:
    print()
    print(f"job {job.get('id')}: {job.get('status')} — {job.get('processed_images')}/{job.get('total_images')} photos")
    timings = job.get("phase_timings") or {}
    if timings:
        print(f"\n{'phase':<12} {'mean ms/photo':>14} {'total s':>9}")
        for name in (
            "download",
            "decode",
            "analysis",
            "style",
            "retouch",
            "cleanup",
            "composition",
            "output",
            "upload",
        ):
            if name in timings:
                t = timings[name]
                print(f"{name:<12} {t['mean_ms']:>14.1f} {t['total_s']:>9.2f}")
    progress = job.get("progress") or {}
    if progress.get("photos_per_min"):
        print(f"\nthroughput: {progress['photos_per_min']} photos/min, wall {progress.get('elapsed_s')} s")
    print(f"\noutputs in {storage.describe()}:")
    for row in rows:
        status = row["status"] if not row.get("error") else f"needs review: {row['error']}"
        print(f"  {row['filename']:<18} {status:<10} {row.get('edited_key') or ''}")
    if sheet:
        print(f"\nbefore/after contact sheet: {sheet}")


def main(settings: Settings) -> int:
    logs.configure("warning", settings.log_format)
    result = run_demo(settings)
    return 0 if result["job"].get("status") == "completed" else 1
