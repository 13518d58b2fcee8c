"""``apelier-worker process``: the same phases on local files, no database, no storage service.

Writes ``edited/``, ``web/`` and ``thumbs/`` under the output folder and a JSON
report with one entry per photo (its size, error, per-phase timings and every
phase's decisions).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from worker.frame import Frame
from worker.models.bundle import ModelBundle
from worker.phases import PHASES, PhaseContext
from worker.pipeline.stream import PhotoResult, PhotoTask, Pipeline
from worker.profile import EditSettings
from worker.service.config import Settings

IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif", ".avif", ".bmp",
    ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw",
}  # fmt: skip
OUTPUT_DIRS = {"edited": "edited", "web": "web", "thumb": "thumbs"}


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders expanded to the images inside (sorted, not recursive)."""
    files: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(path)
    return files


def unique_stems(files: Iterable[Path]) -> dict[Path, str]:
    """Output names: the file's stem, with ``-2``, ``-3``… where two inputs share one."""
    seen: dict[str, int] = {}
    names: dict[Path, str] = {}
    for path in files:
        stem = path.stem or "photo"
        seen[stem] = seen.get(stem, 0) + 1
        names[path] = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
    return names


def process_files(
    files: Sequence[Path],
    out_dir: Path,
    settings: Settings,
    models: ModelBundle,
    *,
    edit: EditSettings | None = None,
    style_model: Any = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every phase on ``files``; returns the report entries (also written by the caller)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for sub in OUTPUT_DIRS.values():
        (out_dir / sub).mkdir(exist_ok=True)
    names = unique_stems(files)
    by_id: dict[str, Path] = {}

    def make_task(path: Path) -> PhotoTask:
        photo_id = str(uuid.uuid5(uuid.NAMESPACE_URL, str(path.resolve())))
        by_id[photo_id] = path
        return PhotoTask(photo_id, path.name, path.read_bytes)

    def deliver(frame: Frame) -> dict[str, Any]:
        written = {}
        stem = names[by_id[frame.photo_id]]
        for variant, enc in frame.outputs.items():
            target = out_dir / OUTPUT_DIRS.get(variant, variant) / f"{stem}.jpg"
            target.write_bytes(enc.data)
            written[variant] = str(target)
        return written

    ctx = PhaseContext(
        edit=edit or EditSettings(),
        models=models,
        style_model=style_model,
        style_note="no style model given (--style)" if style_model is None else "",
    )
    pipeline = Pipeline.from_settings(ctx, deliver, settings, io_threads=min(settings.io_threads, 4))
    entries: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(files), unit="photo", disable=not progress, desc="processing")

    def on_result(result: PhotoResult) -> None:
        entries[result.task.photo_id] = report_entry(by_id[result.task.photo_id], result)
        bar.update(1)

    try:
        pipeline.run([make_task(p) for p in files], on_result)
    finally:
        bar.close()
    return [entries[pid] for pid in by_id if pid in entries]


def report_entry(path: Path, result: PhotoResult) -> dict[str, Any]:
    frame = result.frame
    entry: dict[str, Any] = {
        "file": str(path),
        "photo_id": result.task.photo_id,
        "width": frame.width if frame is not None else None,
        "height": frame.height if frame is not None else None,
        "error": None,
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
    }
    if result.failure is not None:
        entry["error"] = {"phase": result.failed_phase, "reason": result.failure.reason}
    if frame is not None:
        for phase in PHASES:
            if phase in frame.report:
                entry[phase] = frame.report[phase]
        if result.delivered:
            entry.setdefault("output", {}).update(result.delivered)
    return entry


def write_report(entries: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"photos": entries}, indent=2, default=str) + "\n")
