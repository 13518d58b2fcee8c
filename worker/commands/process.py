"""``apelier-worker process``: the same phases on local files, no database, no storage service.

Writes ``edited/``, ``web/`` and ``thumbs/`` under the output folder and a JSON
report with one entry per photo (its size, error, per-phase timings, every
phase's decisions, and ``edit_confidence``/``needs_review``/``review_reasons`` as the
photo row would get them). Folders are searched with their sub-folders (a shoot's second card), whose
layout the outputs mirror (``edited/card2/IMG_0001.jpg``); every entry that is not processed (another
file type, a broken link…) is named with its reason in the summary and the report.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from worker.errors import PhotoError
from worker.frame import Frame
from worker.models.bundle import ModelBundle
from worker.phases import PHASES, PhaseContext, review
from worker.pipeline.stream import PhotoResult, PhotoTask, Pipeline
from worker.profile import EditSettings
from worker.service import progress as progress_bar
from worker.service.config import Settings

IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif", ".avif", ".bmp", ".gif",
    ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw",
}  # fmt: skip
OUTPUT_DIRS = {"edited": "edited", "web": "web", "thumb": "thumbs"}


@dataclass(frozen=True)
class Skipped:
    """An entry of an input folder that is not processed, and why (named in the summary and the report)."""

    path: Path
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"file": str(self.path), "reason": self.reason}


@dataclass
class Inputs:
    """What ``process`` will work on: the photo files in order, each one's output name (its path
    under the folder it was found in, without suffix: ``card2/IMG_0001``), and every entry skipped."""

    files: list[Path] = field(default_factory=list)
    relative: dict[Path, PurePath] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    def names(self) -> dict[Path, str]:
        return unique_stems(self.files, self.relative)


def collect_inputs(inputs: Sequence[str | Path], *, recursive: bool = True, exclude: Sequence[Path] = ()) -> Inputs:
    """Files as given (tried whatever they are); folders searched for photos, sub-folders too
    (``recursive``), in name order. Every entry of a folder that is not a photo file is kept in
    ``skipped`` with the reason: another file type, a hidden file, a broken link, a link to a folder
    (not followed), a folder that cannot be read, one of ``exclude`` (the output folder), a file
    listed twice."""
    found = Inputs()
    seen: dict[Path, Path] = {}
    excluded = {_resolved(p) for p in exclude}

    def add(path: Path, relative: PurePath) -> None:
        key = _resolved(path)
        if key in seen:
            found.skipped.append(Skipped(path, f"listed twice (also as {seen[key]})"))
            return
        seen[key] = path
        found.files.append(path)
        found.relative[path] = relative.with_suffix("") if relative.suffix else relative

    def walk(folder: Path, root: Path) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            found.skipped.append(Skipped(folder, f"cannot list this folder ({exc.strerror or exc})"))
            return
        for entry in entries:
            path = Path(entry.path)
            reason = _skip_reason(entry, path, recursive=recursive, excluded=excluded)
            if reason is not None:
                found.skipped.append(Skipped(path, reason))
            elif entry.is_dir(follow_symlinks=False):
                walk(path, root)
            else:
                add(path, path.relative_to(root))

    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            walk(path, path)
        else:
            add(path, PurePath(path.name))
    return found


def _skip_reason(entry: os.DirEntry[str], path: Path, *, recursive: bool, excluded: set[Path]) -> str | None:
    """Why a folder's entry is not processed, or None (a photo file, or a folder to search)."""
    if entry.name.startswith("."):
        return "hidden (its name starts with a dot)"
    if entry.is_symlink():
        if not path.exists():
            return f"a broken link (to {os.readlink(path)}, which does not exist)"
        if path.is_dir():
            return "a link to a folder, not followed (name the folder itself to include it)"
    if entry.is_dir():
        if _resolved(path) in excluded:
            return "the output folder"
        return None if recursive else "a sub-folder (not searched here)"
    if not entry.is_file():
        return "not a regular file (a device, socket or pipe)"
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return f"not a photo file type ({suffix or 'no extension'})"
    return None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:  # a link loop
        return path.absolute()


def expand_inputs(inputs: Sequence[str | Path], *, recursive: bool = False) -> list[Path]:
    """The photo files of :func:`collect_inputs` alone (the style commands: before/, after/, inputs)."""
    return collect_inputs(inputs, recursive=recursive).files


def unique_stems(files: Iterable[Path], relative: Mapping[Path, PurePath] | None = None) -> dict[Path, str]:
    """Output names: each file's stem (or its ``relative`` path without suffix, ``card2/IMG_0001``),
    with ``-2``, ``-3``… where two inputs would share one (``a.jpg`` and ``a.png``; two folders given,
    each with an ``IMG_0001``). Compared without case: a Mac's disk would mix ``A`` and ``a`` up."""
    used: set[str] = set()
    names: dict[Path, str] = {}
    for path in files:
        base = (relative[path].as_posix() if relative and path in relative else path.stem) or "photo"
        name, n = base, 1
        while name.casefold() in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name.casefold())
        names[path] = name
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
    names: Mapping[Path, str] | None = None,
) -> list[dict[str, Any]]:
    """Run every phase on ``files``; returns the report entries (also written by the caller).

    ``names``: each file's output name under ``edited/``, ``web/`` and ``thumbs/`` (``card2/IMG_0001``:
    sub-folders are mirrored; :meth:`Inputs.names`); default: the files' unique stems.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for sub in OUTPUT_DIRS.values():
        (out_dir / sub).mkdir(exist_ok=True)
    names = names or unique_stems(files)
    by_id: dict[str, Path] = {}

    def make_task(path: Path) -> PhotoTask:
        photo_id = str(uuid.uuid5(uuid.NAMESPACE_URL, str(path.resolve())))
        by_id[photo_id] = path
        return PhotoTask(photo_id, path.name, lambda: _read(path))

    def deliver(frame: Frame) -> dict[str, Any]:
        written = {}
        stem = names[by_id[frame.photo_id]]
        for variant, enc in frame.outputs.items():
            target = out_dir / OUTPUT_DIRS.get(variant, variant) / f"{stem}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(enc.data)
            written[variant] = str(target)
        return written

    ctx = PhaseContext(
        edit=edit or EditSettings(),
        models=models,
        style_model=style_model,
        style_note="no style model given (--style)" if style_model is None else "",
    )
    pipeline = Pipeline.from_settings(ctx, deliver, settings, io_threads=min(settings.io_threads, 4), origin="file")
    entries: dict[str, dict[str, Any]] = {}
    bar = progress_bar.bar(total=len(files), unit="photo", disable=not progress, desc="processing")

    def on_result(result: PhotoResult) -> None:
        entries[result.task.photo_id] = report_entry(by_id[result.task.photo_id], result)
        bar.update(1)

    try:
        pipeline.run([make_task(p) for p in files], on_result)
    finally:
        bar.close()
    return [entries[pid] for pid in by_id if pid in entries]


def _read(path: Path) -> bytes:
    """A local file's bytes; a file that cannot be read fails that photo, not the run."""
    try:
        return path.read_bytes()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise PhotoError(
            f"{path.name} cannot be read ({why}); check that it exists and may be read", phase="read"
        ) from None


def report_entry(path: Path, result: PhotoResult) -> dict[str, Any]:
    frame = result.frame
    entry: dict[str, Any] = {
        "file": str(path),
        "photo_id": result.task.photo_id,
        "width": frame.width if frame is not None else None,
        "height": frame.height if frame is not None else None,
        "error": None,
        # What decoding changed that the photographer would not expect (also under analysis.source.notes).
        "notes": list(frame.source.notes) if frame is not None else [],
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
    }
    if result.failure is not None:
        entry["error"] = {"phase": result.failed_phase, "reason": result.failure.reason}
    if frame is not None:
        confidence, reasons = review(frame.report)
        entry["edit_confidence"] = confidence  # as the photo row's (worker/phases/__init__.py: review)
        entry["needs_review"] = bool(reasons)
        if reasons:
            entry["review_reasons"] = reasons
        for phase in PHASES:
            if phase in frame.report:
                entry[phase] = frame.report[phase]
        if result.delivered:
            entry.setdefault("output", {}).update(result.delivered)
    return entry


def write_report(entries: list[dict[str, Any]], path: Path, skipped: Sequence[Skipped] = ()) -> None:
    """``{"photos": [one entry per photo], "skipped": [{"file", "reason"} per entry of a folder not processed]}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"photos": entries, "skipped": [s.to_json() for s in skipped]}
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
