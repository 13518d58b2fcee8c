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
from tqdm import tqdm

from worker import embedded, logs
from worker.config import Settings
from worker.daemon import Daemon
from worker.jobs import Runtime
from worker.models import bundle
from worker.queue import Queue
from worker.storage import Storage, from_settings

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
        from skimage import data as skdata

        for name in ("astronaut", "coffee", "rocket", "chelsea"):
            photos.append(_jpeg(f"{name}.jpg", np.asarray(getattr(skdata, name)())))
    except ImportError:
        pass
    try:
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        photos.append(DemoPhoto("grace_hopper.jpg", Path(str(path)).read_bytes(), "image/jpeg"))
    except (ImportError, OSError, ValueError):
        pass
    try:
        import sklearn.datasets

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
    photographer = queue.upsert_photographer(DEMO_PHOTOGRAPHER, "Demo Studio")
    gallery = queue.insert_gallery(photographer, title)
    for order, photo in enumerate(photos):
        key = f"{photographer}/{gallery}/uploads/{uuid.uuid4().hex[:8]}-{photo.filename}"
        storage.put(key, photo.data, photo.mime)
        queue.insert_photo(
            photographer_id=photographer,
            gallery_id=gallery,
            key=key,
            filename=photo.filename,
            size=len(photo.data),
            mime=photo.mime,
            sort_order=order,
        )
    return photographer, gallery


def run_demo(settings: Settings, *, progress: bool = True) -> dict[str, Any]:
    url = embedded.database_url(settings)
    queue = Queue(url, "demo")
    queue.migrate()
    storage = from_settings(settings)
    photos = demo_photos()
    if not photos:
        raise SystemExit("no demo photos found: install the demo extra (pip install 'apelier-worker[demo]')")
    photographer, gallery = seed_gallery(queue, storage, photos)
    job_id = queue.enqueue(photographer_id=photographer, gallery_id=gallery)
    print(f"gallery {gallery}: {len(photos)} photos queued as job {job_id}")

    runtime = Runtime(settings=settings, storage=storage, models=bundle.load(settings))
    for note in runtime.models.notes:
        print(f"note: {note}")
    daemon = Daemon(runtime, url, drain=True)
    stop_watch = threading.Event()
    watcher = threading.Thread(target=_watch, args=(url, job_id, len(photos), stop_watch, progress), daemon=True)
    watcher.start()
    try:
        daemon.install_signal_handlers()
        daemon.run()
    finally:
        stop_watch.set()
        watcher.join(timeout=5)

    job = queue.get_job(job_id) or {}
    rows = queue.gallery_photo_rows(gallery)
    sheet = write_contact_sheet(storage, rows, settings.data_dir / "demo" / f"contact_sheet_{gallery[:8]}.png")
    queue.close()
    _print_summary(job, rows, storage, sheet)
    return {"job": job, "photos": rows, "contact_sheet": str(sheet) if sheet else None}


def _watch(url: str, job_id: str, total: int, stop: threading.Event, progress: bool) -> None:
    """Follow the job row as the app's live view does, and draw it as a progress bar."""
    queue = Queue(url, "demo-watch")
    bar = tqdm(total=total, unit="photo", desc="queued", disable=not progress)
    try:
        while not stop.wait(0.2):
            job = queue.get_job(job_id)
            if not job:
                continue
            bar.total = max(1, int(job["total_images"] or total))
            bar.n = int(job["processed_images"] or 0)
            bar.set_description(str(job["current_phase"] or job["status"]))
            bar.refresh()
            if job["status"] in ("completed", "failed", "canceled"):
                break
    finally:
        bar.close()
        queue.close()


def write_contact_sheet(storage: Storage, rows: list[dict[str, Any]], path: Path, cell: int = 280) -> Path | None:
    """Before (the upload) beside after (the web JPEG), one row per photo."""
    pairs = []
    for row in rows:
        if not row.get("web_key"):
            continue
        try:
            before = Image.open(io.BytesIO(storage.get(row["original_key"]))).convert("RGB")
            after = Image.open(io.BytesIO(storage.get(row["web_key"]))).convert("RGB")
        except Exception:  # noqa: S112 - a sheet with one photo fewer is fine
            continue
        pairs.append((row["filename"], before, after))
    if not pairs:
        return None
    label_h = 18
    sheet = Image.new("RGB", (2 * cell + 30, len(pairs) * (cell + label_h + 10) + 10), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (name, before, after) in enumerate(pairs):
        y = 10 + i * (cell + label_h + 10)
        draw.text((10, y), f"{name}: before | after", fill=(230, 230, 230))
        for j, img in enumerate((before, after)):
            img.thumbnail((cell, cell))
            sheet.paste(img, (10 + j * (cell + 10), y + label_h))
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
