"""Straightening on real photos labelled by hand, rotated by known angles.

Every photo of ``../shared/data`` (FiveK befores and expert thumbnails, power lines, EXIT signs,
faces) and the wheel photos was looked at and put in one of three classes (:data:`LABELS`):

* ``ref`` — a clear reference: a sea or lake horizon, a waterline, a building or door's
  verticals. Its own tilt was measured by hand (the rotation, counter-clockwise in degrees, that
  levels it: the horizon's angle, or the roll of the verticals near the centre line, fitted as
  ``roll + k·x`` where the camera was tilted up or down). Many "level" photos are off by a little.
* ``none`` — no reference at all (portraits, animals, plants, rocks, a top-down aerial, phone
  shots of ceilings at 30°+): any move is wrong.
* ``weak`` — something straight but not trustworthy enough to label (short towers among trees,
  a railing that recedes, a treeline behind wires): moves are allowed, abstaining is fine; only
  their consistency is reported (the copy's correction against the original's own estimate).

Each photo is rotated by :data:`ANGLES` about its centre and cropped to the largest rectangle
without empty corners — what phase 4 does, so no black corner gives the angle away. A copy's true
correction is the label minus the angle; copies whose true correction is beyond the phase's
:data:`~worker.scene.straighten.MAX_ROTATION_DEG` are left out.

Reported, separately for each class: how many tilted copies (true correction ≥ 0.5°) were levelled
within 0.5°, how many were moved wrongly (a rotation whose result is off by more than 0.5°, or
any rotation of a ``none`` photo), and for the originals whether they were left level.

    python -m benchmarks.composition_straighten [--verbose]
    python -m benchmarks.composition_straighten --figure NAME ANGLE OUT.jpg

``--figure`` writes a before/after pair: photo NAME (a stem above, or a wheel photo) rotated by
ANGLE, then as phase 4 leaves it, with a grid to judge by. docs/images holds only the wheel photos'
pairs (public domain); the FiveK photos' licence is for research use, so theirs are not committed.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from benchmarks.analysis_photos import named_photos
from benchmarks.common import emit
from worker.phases.composition import inscribed_box, rotate_crop
from worker.scene.straighten import MAX_ROTATION_DEG, estimate_tilt

PATTERNS = (
    "pairs/*/before/*",
    "pairs/fivek_multi_expert_thumbs_no_input/expertC/*",
    "powerlines/*",
    "exit_signs/*",
    "faces/*",
)
ANGLES = (-5.0, -3.0, -1.5, 1.5, 3.0, 5.0)
TOLERANCE_DEG = 0.5

# (class, the rotation that levels the original (ref only), what it was judged on), by eye on
# 2026-12-07; the angles measured on LSD segments picked by hand or an edge profile along the horizon.
LABELS: dict[str, tuple[str, float | None, str]] = {
    # --- clear reference ---
    "a3102-JI2E4053": ("ref", -1.27, "Santorini: the cliffs' waterline across half the frame"),
    "a4514-kme_0258": ("ref", -0.10, "reservoir: the far shore's waterline under the skyline"),
    "a4591-Duggan_080411_5940": ("ref", -0.30, "Waikiki: the sea horizon right of the palm"),
    "a4742-Duggan_090331_6517": ("ref", 0.25, "bay with sailboats: the sea horizon"),
    "a0015-DSC_0081": ("ref", 2.75, "boy on a beach: the sea horizon at the top (its edge fitted, checked by eye)"),
    "a4869-09-05-19-at-19h05m38s-_MG_9563": ("ref", 0.85, "front door: door and wall verticals, steps"),
    "a4714-Duggan_080613_8704": (
        "ref",
        1.10,
        "Chinatown street: vanishing point of building edges",
    ),
    "rocket": ("ref", 0.0, "launch pad: the rocket on the centre line (the towers converge)"),
    "ucsc_exitsign_513614.430410083": ("ref", 1.70, "corridor: the vanishing point of the door frames"),
    "ucsc_exitsign_5630.313210708": ("ref", 4.70, "corridor looking down: the vanishing point of the door frames"),
    # --- something straight, not trusted enough to label ---
    "a3232-_DGW6397": ("weak", None, "towers looking up, behind bare trees"),
    "a1384-dvf_095": ("weak", None, "sea behind a glass railing that recedes"),
    "china": ("weak", None, "pagoda: short columns, hazy lake shore"),
    "ttpla_53_00231_1920": ("weak", None, "roofs and a treeline behind wires"),
    "a4957": ("weak", None, "motorcycle against a brick wall"),
    "a4783-20090321_at_19h16m32__MG_0220": ("weak", None, "deck tables, posts among palms"),
    "a4725-DSC_0056": ("weak", None, "tennis court: receding lines, fence posts"),
    "a2917-jmac_DSC3800": ("weak", None, "distant skyline of domes"),
    "a4759-Duggan_090305_5342": ("weak", None, "desert plain under a mountain"),
    "ucsc_exitsign_264357.504598083": ("weak", None, "a corridor stored sideways"),
    "gfpgan__00": ("weak", None, "scanned print: children against a rail fence"),
    "gfpgan__10045": ("weak", None, "family portrait by a banister"),
    "face_recognition__two_people": ("weak", None, "two portraits in front of curtains"),
    "face_recognition__obama-1080p": ("weak", None, "portrait with a flag pole"),
    # --- no reference ---
    "a2803-060810_075208_GM6A0020": ("none", None, "lizard on a rock"),
    "a4232-Duggan_090323_6181": ("none", None, "swamp and foliage"),
    "a4723-_DGW7894": ("none", None, "two men in the dark"),
    "a4857-_DSC0008-1": ("none", None, "plants beside a diagonal path"),
    "a4521-kme_0310": ("none", None, "tulips"),
    "a4526-_DGW7879": ("none", None, "speaker with a microphone"),
    "a4532-DSC_0141": ("none", None, "statue in a niche"),
    "a4553-Duggan_090331_6590": ("none", None, "plate of food on planks seen from above"),
    "a4576-DSC_0217": ("none", None, "face close-up, a stair railing behind"),
    "a4582-DSC_0343": ("none", None, "stone on the ground"),
    "a4933-Duggan_090428_8040": ("none", None, "canyon"),
    "a0001-jmac_DSC1459": ("none", None, "butte and scrub"),
    "a4607-050801_080948__I2E5512": ("none", None, "mother and baby"),
    "ttpla_04_585_1920": ("none", None, "aerial, top-down"),
    "ttpla_58_00376_1920": ("none", None, "a pole and wires from below"),
    "ucsc_exitsign_263593.224926166": ("none", None, "ceiling at a steep angle"),
    "ucsc_exitsign_264908.762079083": ("none", None, "ceiling at a steep angle"),
    "ucsc_exitsign_8761.22361075": ("none", None, "ceiling at a steep angle"),
    "face_recognition__biden": ("none", None, "portrait"),
    "face_recognition__kit_with_rose": ("none", None, "two people on a red carpet"),
    "face_recognition__lin-manuel-miranda": ("none", None, "face close-up"),
    "face_recognition__obama_and_biden": ("none", None, "two men waving"),
    "astronaut": ("none", None, "portrait"),
    "coffee": ("none", None, "cup from above"),
    "chelsea": ("none", None, "cat"),
    "flower": ("none", None, "flower"),
    "grace_hopper": ("none", None, "portrait"),
}


def score(photos: list[tuple[str, np.ndarray]], verbose: bool = False) -> dict[str, object]:
    classes: dict[str, dict[str, object]] = {}
    timings = []
    details = {}
    for kind in ("ref", "weak", "none"):
        classes[kind] = {"photos": 0, "tilted_copies": 0, "levelled": 0, "moved": 0, "moved_wrongly": 0}
        classes[kind]["originals_moved_wrongly"] = 0
    consistency: list[float] = []
    for name, img in photos:
        kind, label, _ = LABELS[name]
        c = classes[kind]
        c["photos"] = int(c["photos"]) + 1  # type: ignore[call-overload]
        start = time.perf_counter()
        base = estimate_tilt(img)
        timings.append(time.perf_counter() - start)
        applied0 = float(base["rotation_deg"])
        rows = [("original", 0.0, label, applied0)]
        if kind == "ref" and label is not None and applied0 and abs(applied0 - label) > TOLERANCE_DEG:
            c["originals_moved_wrongly"] = int(c["originals_moved_wrongly"]) + 1  # type: ignore[call-overload]
        if kind == "none" and applied0:
            c["originals_moved_wrongly"] = int(c["originals_moved_wrongly"]) + 1  # type: ignore[call-overload]
        h, w = img.shape[:2]
        for angle in ANGLES:
            truth = None if label is None else label - angle
            if truth is not None and abs(truth) > MAX_ROTATION_DEG:
                continue
            copy = rotate_crop(img, angle, inscribed_box(w, h, angle))
            start = time.perf_counter()
            tilt = estimate_tilt(copy)
            timings.append(time.perf_counter() - start)
            applied = float(tilt["rotation_deg"])
            rows.append(("copy", angle, truth, applied))
            if applied:
                c["moved"] = int(c["moved"]) + 1  # type: ignore[call-overload]
            if kind == "ref" and truth is not None:
                if abs(truth) >= TOLERANCE_DEG:
                    c["tilted_copies"] = int(c["tilted_copies"]) + 1  # type: ignore[call-overload]
                    if abs(applied - truth) <= TOLERANCE_DEG:
                        c["levelled"] = int(c["levelled"]) + 1  # type: ignore[call-overload]
                if applied and abs(applied - truth) > TOLERANCE_DEG:
                    c["moved_wrongly"] = int(c["moved_wrongly"]) + 1  # type: ignore[call-overload]
            elif kind == "none" and applied:
                c["moved_wrongly"] = int(c["moved_wrongly"]) + 1  # type: ignore[call-overload]
            elif kind == "weak" and applied and base["confident"]:
                consistency.append(abs(applied - (float(base["estimate_deg"]) - angle)))
        details[name] = [(r[0], r[1], None if r[2] is None else round(r[2], 2), round(r[3], 2)) for r in rows]
    for c in classes.values():
        tilted = int(c["tilted_copies"])  # type: ignore[call-overload]
        if tilted:
            c["levelled_share"] = round(int(c["levelled"]) / tilted, 3)  # type: ignore[call-overload]
    classes["weak"]["consistency_mae_deg"] = round(float(np.mean(consistency)), 3) if consistency else None
    result: dict[str, object] = {
        "photos": len(photos),
        "angles": ANGLES,
        "tolerance_deg": TOLERANCE_DEG,
        "classes": classes,
        "measure_ms_p50": round(float(np.median(timings)) * 1000, 1),
    }
    if verbose:
        result["per_photo"] = details
    return result


def figure(name: str, angle: float, out: str) -> None:
    """Before (rotated by ``angle``) and after (as the phase leaves it), side by side, 480 px each."""
    import cv2

    from worker.frame import Frame, SourceInfo
    from worker.phases import PhaseContext, composition

    img = dict(named_photos(*PATTERNS))[name]
    h, w = img.shape[:2]
    before = rotate_crop(img, angle, inscribed_box(w, h, angle)) if angle else img
    source = SourceInfo(format="JPEG", width=before.shape[1], height=before.shape[0])
    frame = Frame(photo_id=name, filename=name, image=before, source=source)
    composition.run([frame], PhaseContext())
    panels = []
    for im, label in ((before, f"rotated {angle:+g} deg"), (frame.image, _after_label(frame.report))):
        scale = 480 / im.shape[1]
        p = cv2.resize(im, (480, round(im.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        for y in range(0, p.shape[0], 60):  # a grid to judge level by
            cv2.line(p, (0, y), (479, y), (255, 255, 0), 1)
        for x in range(0, 480, 60):
            cv2.line(p, (x, 0), (x, p.shape[0] - 1), (255, 255, 0), 1)
        cv2.putText(p, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2)
        panels.append(p)
    height = max(p.shape[0] for p in panels)
    canvas = np.zeros((height, 490 + 480, 3), np.uint8)
    canvas[: panels[0].shape[0], :480] = panels[0]
    canvas[: panels[1].shape[0], 490:] = panels[1]
    cv2.imwrite(out, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])


def _after_label(report: dict[str, dict[str, Any]]) -> str:
    rotation = float(report["composition"]["rotation_deg"])
    return f"levelled by {rotation:+.2f} deg" if rotation else "left alone (no reference)"


def main() -> None:
    if "--figure" in sys.argv:
        at = sys.argv.index("--figure")
        figure(sys.argv[at + 1], float(sys.argv[at + 2]), sys.argv[at + 3])
        return
    photos = [(n, img) for n, img in named_photos(*PATTERNS) if n in LABELS]
    emit("straighten", score(photos, verbose="--verbose" in sys.argv))


if __name__ == "__main__":
    main()
