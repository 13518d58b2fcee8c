"""Phase 2 — retouch: restore or smooth each face, subtly, and paste it back seamlessly.

For every face phase 0 found (``frame.faces``): align it to the FFHQ template (512²),
retouch all faces of the batch — across photos — in one call of the restorer
(CodeFormer on the GPU, or the classical skin smoothing), then paste each correction
back through the inverse alignment under a soft face mask (face parsing when
CodeFormer runs with ParseNet, else a feathered oval). Nothing outside the masks
changes; an unchanged face leaves the photo bit-identical.

Faces whose 512² crop would cover fewer than :data:`MIN_FOOTPRINT_PX` photo pixels
(eye distance under ~8 px) are left alone: below that even a restorer's full detail
band averages away to under 2 levels when pasted back (``benchmarks/retouch_threshold.py``,
``docs/retouch.md``).

Report: ``frame.report["retouch"]`` with, per face, its box, landmarks, score, the
crop's footprint and the ``method`` (``codeformer``, ``classic``,
``skipped: too small``, …).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.faces import align as face_align
from worker.faces import paste as face_paste
from worker.frame import Face, Frame, Image
from worker.phases import PhaseContext
from worker.profile import EditSettings

NAME = "retouch"
MIN_FOOTPRINT_PX = 32.0


@dataclass
class _Job:
    frame: int
    alignment: face_align.Alignment
    crop: Image


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    edit = ctx.edit
    restorer = ctx.models.face_restorer
    if edit.retouch_intensity == "off" or restorer is None:
        reason = "retouch_intensity is off" if edit.retouch_intensity == "off" else _restorer_off(ctx)
        for frame in frames:
            frame.report[NAME] = {
                "applied": False,
                "reason": reason,
                "faces": [_entry(face, "skipped: retouch off") for face in frame.faces],
            }
        return

    entries, jobs = _faces_to_restore(frames, restorer.name)
    mask_kind = "none"
    # frame index → its faces' (job, restored crop, mask), for the photos with a face to paste
    edited: dict[int, list[tuple[_Job, Image, face_paste.Mask]]] = {}
    if jobs:
        crops = np.stack([job.crop for job in jobs])
        restored = restorer.restore(crops, edit.codeformer_fidelity, edit.smoothing_strength)
        masks, mask_kind = _masks(restored, ctx)
        for job, out, mask in zip(jobs, restored, masks, strict=True):
            edited.setdefault(job.frame, []).append((job, out, mask))

        def paste_faces(photo: tuple[int, list[tuple[_Job, Image, face_paste.Mask]]]) -> None:  # a photo a thread
            fi, faces = photo
            # Pasted into a copy, never into frame.image: a batch that fails is rerun photo by photo
            # from the frames as they were (worker/pipeline/stream.py). One copy per photo, not per face.
            target = frames[fi].image.copy()
            for job, out, mask in faces:
                delta = face_paste.correction(job.crop, out, mask)
                face_paste.paste(target, delta, job.alignment, ctx.models.device)
            frames[fi].image = target

        ctx.each(paste_faces, list(edited.items()))

    for fi, frame in enumerate(frames):
        frame.report[NAME] = _report(frame, entries[fi], restorer.name, edit, mask_kind if fi in edited else None)


def _faces_to_restore(frames: list[Frame], restorer: str) -> tuple[list[list[dict[str, Any]]], list[_Job]]:
    """Each photo's face entries for the report, and the faces large enough to restore (aligned crops)."""
    entries: list[list[dict[str, Any]]] = []
    jobs: list[_Job] = []
    for fi, frame in enumerate(frames):
        per_frame = []
        for face in frame.faces:
            try:
                alignment = face_align.align_face(face)
            except ValueError:
                per_frame.append(_entry(face, "skipped: landmarks unusable"))
                continue
            entry = _entry(face, restorer)
            entry["crop_px"] = round(alignment.footprint, 1)
            if alignment.footprint < MIN_FOOTPRINT_PX:
                entry["method"] = "skipped: too small"
            else:
                jobs.append(_Job(fi, alignment, face_align.warp_face(frame.image, alignment)))
            per_frame.append(entry)
        entries.append(per_frame)
    return entries, jobs


def _report(
    frame: Frame, faces: list[dict[str, Any]], restorer: str, edit: EditSettings, mask_kind: str | None
) -> dict[str, Any]:
    """A photo's retouch report; ``mask_kind`` is None when no face of it was pasted back."""
    applied = mask_kind is not None
    report: dict[str, Any] = {"applied": applied, "restorer": restorer, "faces": faces}
    if restorer == "codeformer":
        report["fidelity"] = edit.codeformer_fidelity
    else:
        report["strength"] = round(edit.smoothing_strength, 3)
    if applied:
        report["mask"] = mask_kind
    elif not frame.faces:
        report["reason"] = "no faces"
    else:
        report["reason"] = "no face large enough to retouch"
    return report


def _entry(face: Face, method: str) -> dict[str, Any]:
    entry = face.to_json()
    entry["method"] = method
    return entry


def _restorer_off(ctx: PhaseContext) -> str:
    notes = [n for n in ctx.models.notes if "restor" in n or "retouch" in n]
    return notes[0] if notes else "no face restorer loaded"


def _masks(restored: np.ndarray, ctx: PhaseContext) -> tuple[list[face_paste.Mask], str]:
    """Paste-back masks: face parsing for CodeFormer when ParseNet is loaded, else the feathered oval."""
    parser = ctx.models.face_parser
    if parser is not None and ctx.models.face_restorer is not None and ctx.models.face_restorer.name == "codeformer":
        hard = parser.face_mask(restored)
        return [face_paste.parsing_mask(m) for m in hard], "parsenet"
    oval = face_paste.ellipse_mask(restored.shape[1])
    return [oval] * len(restored), "ellipse"
