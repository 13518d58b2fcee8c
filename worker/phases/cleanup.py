"""Phase 3 — cleanup: find power lines against the sky and lit EXIT signs, and inpaint them.

Precision first: a removed railing or a groom's tie is far worse than a wire left in, so
the detectors (:mod:`worker.cleanup.wires`, :mod:`worker.cleanup.exit_signs`) accept a region
only when every test of the profile's ``cleanup_level`` holds, and nothing near a face is
touched. The inpainter fills crops around each region (:mod:`worker.cleanup.inpaint`) and writes
back only the region's own pixels, feathered.

Settings (``EditSettings``): ``cleanup_level`` off / conservative / moderate / aggressive,
``power_line_removal``, ``exit_sign_removal``.

Report (``frame.report["cleanup"]``, → ``photos.ai_edits``)::

    {"level": "conservative", "method": "lama" | "classical" | None, "applied": bool,
     "regions": [{"kind": "power_line", "box": [x0, y0, x1, y1], "score": 0.93,
                  "area_px": 5123, "edited_px": 9876, "crops": 4, "filled_with": "smooth", ...measurements}],
     "dropped_near_faces": 0, "detect_ms": 120.5, "inpaint_ms": 310.2, "reason": "..."}

``box`` is in the pixels of the image the phase received (x1, y1 exclusive); ``area_px``
counts the detected pixels, ``edited_px`` those changed (the detected ones plus the
feathered ring around them), so a person can review every change and undo it. ``filled_with`` (classical
inpainter only) says what filled the region's crops: ``smooth`` (the membrane), ``lattice``, ``patch``
or several joined by ``+`` (``patch+smooth``: a wire over open sky that crosses a tower).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from worker.cleanup.exit_signs import detect_exit_signs, sign_regions
from worker.cleanup.inpaint import CropParams, fill_regions
from worker.cleanup.opencv_inpaint import OpenCVInpainter
from worker.cleanup.region import Region, crop_to_mask
from worker.cleanup.sky import find_sky
from worker.cleanup.wires import detect_wires, wire_regions
from worker.cleanup.working import WorkingImage
from worker.frame import Face, Frame
from worker.models.protocols import Inpainter
from worker.phases import PhaseContext
from worker.service import logs

NAME = "cleanup"
FACE_MARGIN = 0.5  # a face box is grown by this fraction of its size on every side before protecting it
MIN_KEPT = 0.5  # a wire that loses more than half its pixels to face protection is dropped entirely

log = logs.get(__name__)


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    edit = ctx.edit
    inpainter: Inpainter = ctx.models.inpainter or OpenCVInpainter("auto")

    def find(frame: Frame) -> list[Region]:  # on the photo threads, a photo each
        report: dict[str, Any] = {
            "level": edit.cleanup_level,
            "method": None,
            "applied": False,
            "regions": [],
        }
        frame.report[NAME] = report
        if edit.cleanup_level == "off":
            report["reason"] = "cleanup_level is off"
            return []
        if not (edit.power_line_removal or edit.exit_sign_removal):
            report["reason"] = "power_line_removal and exit_sign_removal are both off"
            return []
        t0 = time.perf_counter()
        regions = detect(frame, edit.cleanup_level, wires=edit.power_line_removal, signs=edit.exit_sign_removal)
        kept, dropped = protect_faces(regions, frame.faces, guard_px=CropParams().feather_px)
        report["dropped_near_faces"] = dropped
        report["detect_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        if not kept:
            report["reason"] = "nothing to remove"
        return kept

    def fill(photo: tuple[Frame, list[Region]]) -> None:
        frame, kept = photo
        report = frame.report[NAME]
        t1 = time.perf_counter()
        frame.image, stats = fill_regions(frame.image, kept, inpainter)
        report["inpaint_ms"] = round((time.perf_counter() - t1) * 1e3, 1)
        report["method"] = inpainter.name
        report["applied"] = True
        for region, extra in zip(kept, stats.per_region, strict=True):
            report["regions"].append({**region.to_json(), **extra})
        log.info(
            "cleanup",
            photo_id=frame.photo_id,
            regions=len(kept),
            method=inpainter.name,
            crops=stats.crops,
            detect_ms=report["detect_ms"],
            inpaint_ms=report["inpaint_ms"],
        )

    to_fill = [(frame, kept) for frame, kept in zip(frames, ctx.each(find, frames), strict=True) if kept]
    if isinstance(inpainter, OpenCVInpainter):
        ctx.each(fill, to_fill)  # OpenCV on the CPU: on the photo threads too
    else:
        for photo in to_fill:  # a model (LaMa on the GPU): one call at a time, on the phase's thread
            fill(photo)


def detect(frame: Frame, level: str, *, wires: bool = True, signs: bool = True) -> list[Region]:
    """Every region the detectors accept at ``level`` (no face protection; see :func:`protect_faces`)."""
    work = WorkingImage(frame.image)
    regions: list[Region] = []
    if wires:
        sky = find_sky(work)
        regions += wire_regions(work, detect_wires(work, level, sky))
    if signs:
        regions += sign_regions(work, detect_exit_signs(work, level), level)
    return regions


def protect_faces(regions: list[Region], faces: list[Face], guard_px: int = 0) -> tuple[list[Region], int]:
    """Keep faces (grown by :data:`FACE_MARGIN`) out of every region: (kept regions, how many dropped).

    An EXIT sign touching a face is dropped; a wire loses the pixels inside the grown face
    boxes, and is dropped when that takes more than half of it. ``guard_px`` (the inpainter's
    feather) keeps the blended ring around a mask out of the face box too.
    """
    if not faces:
        return regions, 0
    boxes = []
    for face in faces:
        x0, y0, x1, y1 = _grow(face.box, FACE_MARGIN)
        boxes.append((x0 - guard_px, y0 - guard_px, x1 + guard_px, y1 + guard_px))
    kept: list[Region] = []
    dropped = 0
    for region in regions:
        x0, y0, x1, y1 = region.box
        mask = region.mask.copy()
        for fx0, fy0, fx1, fy1 in boxes:
            ix0, iy0 = max(x0, fx0), max(y0, fy0)
            ix1, iy1 = min(x1, fx1), min(y1, fy1)
            if ix0 < ix1 and iy0 < iy1:
                mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = False
        if region.kind == "exit_sign" and mask.sum() < region.area_px:
            dropped += 1
            continue
        if mask.sum() < MIN_KEPT * region.area_px:
            dropped += 1
            continue
        if mask.sum() < region.area_px:
            trimmed = crop_to_mask(region.kind, mask, (x0, y0), region.score, region.details)
            if trimmed is None:
                dropped += 1
                continue
            kept.append(trimmed)
        else:
            kept.append(region)
    return kept, dropped


def _grow(box: tuple[float, float, float, float], margin: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return int(np.floor(x0 - dx)), int(np.floor(y0 - dy)), int(np.ceil(x1 + dx)), int(np.ceil(y1 + dy))
