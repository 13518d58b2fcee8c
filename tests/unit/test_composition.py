"""Phase 4: straighten only when sure, crop without empty corners, never cut a face."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from tests import photo_files as pf
from tests.unit.test_analysis import ASTRONAUT_FACE, frame_of
from worker.frame import Face
from worker.models.bundle import ModelBundle
from worker.phases import PhaseContext, analysis, composition
from worker.phases.composition import inscribed_box, rotate_crop
from worker.profile import EditSettings
from worker.scene.straighten import estimate_tilt, measure

# A phone photo of a corridor, held about 4.5° off: door frames and walls give strong verticals.
CORRIDOR = "exit_signs/ucsc_exitsign_5630.313210708.jpg"


def rotated(image: np.ndarray, angle: float) -> np.ndarray:
    h, w = image.shape[:2]
    return rotate_crop(image, angle, inscribed_box(w, h, angle))


# --- geometry ---
def corners_in_source(w: int, h: int, angle: float, box: tuple[float, float, float, float]) -> np.ndarray:
    """Where the crop's corners come from in the unrotated photo."""
    m = composition._rotation_matrix(angle, w, h)
    inverse = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    x0, y0, x1, y1 = box
    pts = np.array([[x0, y0, 1], [x1 - 1, y0, 1], [x0, y1 - 1, 1], [x1 - 1, y1 - 1, 1]], dtype=float)
    return pts @ inverse.T


@pytest.mark.parametrize(("w", "h"), [(6000, 4000), (4000, 6000), (512, 512), (20000, 300), (300, 1200)])
@pytest.mark.parametrize("angle", [-5.0, -0.4, 0.3, 2.0, 5.0, 12.0])
def test_inscribed_box_has_no_empty_corners(w: int, h: int, angle: float) -> None:
    box = inscribed_box(w, h, angle)
    src = corners_in_source(w, h, angle, box)
    assert (src[:, 0] >= 0).all() and (src[:, 0] <= w - 1).all()
    assert (src[:, 1] >= 0).all() and (src[:, 1] <= h - 1).all()


@pytest.mark.parametrize("angle", [1.0, 3.0, 5.0])
def test_inscribed_box_is_the_largest(angle: float) -> None:
    """No axis-aligned rectangle of any aspect, centred, fits with a larger area (brute force)."""
    w, h = 3000, 2000
    x0, y0, x1, y1 = inscribed_box(w, h, angle)
    area = (x1 - x0) * (y1 - y0)
    a = math.radians(angle)
    best = 0.0
    for aspect in np.linspace(0.5, 2.5, 400):
        # Largest centred rectangle of this aspect inside the rotated frame.
        s = min(w / (aspect * math.cos(a) + math.sin(a)), h / (aspect * math.sin(a) + math.cos(a)))
        best = max(best, aspect * s * s)
    assert area >= 0.99 * best and area <= 1.001 * best


def test_torch_warp_matches_opencv() -> None:
    """The GPU path (torch grid_sample), run here on the CPU, resamples like OpenCV."""
    from tests.unit.test_decode import psnr

    image = pf.wheel_photo("china")
    h, w = image.shape[:2]
    box = inscribed_box(w, h, 3.5)
    cpu = rotate_crop(image, 3.5, box)
    matrix = composition._rotation_matrix(3.5, w, h)
    matrix[:, 2] -= (box[0], box[1])
    torch_path = composition._warp_torch(image, matrix, (int(box[2] - box[0]), int(box[3] - box[1])), "cpu")
    assert torch_path.shape == cpu.shape and psnr(torch_path, cpu) > 40


def test_rotation_without_angle_is_a_plain_crop() -> None:
    image = pf.wheel_photo("coffee")
    out = rotate_crop(image, 0.0, (10, 20, 110, 70))
    assert np.array_equal(out, image[20:70, 10:110])


# --- straighten ---
def seascape(seed: int = 0) -> np.ndarray:
    """A level sea under a sky, 960×640: a bluish sky brightening upwards, a darker green-blue sea
    with noise and short wave streaks, and an island hiding part of the horizon — no other
    straight line."""
    rng = np.random.default_rng(seed)
    h, w = 640, 960
    y = np.arange(h, dtype=np.float32)[:, None, None]
    sky = np.array([150, 180, 215], np.float32) + (300 - y) * np.array([0.1, 0.08, 0.05], np.float32)
    sea = np.array([40, 90, 110], np.float32) + (y - 300) * np.array([0.05, 0.05, 0.03], np.float32)
    image = np.where(y < 300, sky, sea) * np.ones((1, w, 1), np.float32)
    image += rng.normal(0, 4, image.shape).astype(np.float32)
    for _ in range(120):  # wave streaks below the horizon
        cx, cy, length = int(rng.integers(0, w)), int(rng.integers(320, h)), int(rng.integers(8, 30))
        cv2.line(image, (cx, cy), (cx + length, cy + int(rng.integers(-2, 3))), (90, 140, 160), 1)
    hill = np.array([[380, 301], [440, 272], [560, 262], [640, 285], [700, 301]], np.int32)
    cv2.fillPoly(image, [hill], (70, 85, 60))
    return np.clip(cv2.GaussianBlur(image, (0, 0), 0.8), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("angle", [-4.0, -1.5, 2.0, 5.0])
def test_a_tilted_sea_horizon_is_levelled(angle: float) -> None:
    tilt = estimate_tilt(rotated(seascape(), angle))
    assert tilt["confident"] and "horizon" in tilt["reason"], tilt
    assert abs(tilt["rotation_deg"] - (-angle)) <= 0.5, tilt


def test_a_grey_sea_under_a_grey_sky_is_still_a_horizon() -> None:
    """Sea and sky of the same brightness, split by a darker strip of distant sea (a hazy horizon
    at dusk): in grey that is a dark band on an even field, like a thick cable; the colour copy
    shows two regions."""
    rng = np.random.default_rng(3)
    h, w = 640, 960
    image = np.empty((h, w, 3), np.float32)
    image[:300] = (160, 150, 140)  # warm grey sky
    image[300:] = (120, 160, 175)  # cool sea of about the same luma
    image[300:308] -= 25
    image += rng.normal(0, 3, image.shape).astype(np.float32)
    tilted = rotated(np.clip(image, 0, 255).astype(np.uint8), 3.0)
    tilt = estimate_tilt(tilted)
    assert tilt["confident"], tilt
    assert abs(tilt["rotation_deg"] + 3.0) <= 0.5, tilt
    assert measure(cv2.cvtColor(tilted, cv2.COLOR_RGB2GRAY))["rotation_deg"] == 0.0  # grey alone: no


def test_a_wire_across_the_sky_is_not_a_horizon() -> None:
    """A sky with nothing but a sagging-free cable at 3°: same sky on both sides, so no horizon."""
    rng = np.random.default_rng(1)
    h, w = 640, 960
    image = np.empty((h, w, 3), np.float32)
    image[:] = np.array([150, 180, 215], np.float32)
    image += rng.normal(0, 3, image.shape).astype(np.float32)
    slope = math.tan(math.radians(3.0))
    cv2.line(image, (0, 250), (w - 1, int(250 + slope * w)), (40, 40, 45), 5)
    tilt = estimate_tilt(np.clip(image, 0, 255).astype(np.uint8))
    assert tilt["rotation_deg"] == 0.0, tilt
    assert tilt["horizontal"].get("coverage", 0.0) == 0.0


def building(tilt_up: float = 0.0) -> np.ndarray:
    """A façade of windows on a wall with door frames, seen straight on, 960×640; ``tilt_up``
    (px of convergence at the top, per px from the centre) makes the verticals meet above."""
    rng = np.random.default_rng(2)
    h, w = 640, 960
    image = np.full((h, w, 3), (170, 150, 130), np.float32) + rng.normal(0, 5, (h, w, 3)).astype(np.float32)
    for x in range(80, w - 60, 120):
        for y in range(60, h - 120, 130):
            dx = lambda px, py: px - (px - w / 2) * tilt_up * (h - py) / h  # noqa: E731
            pts = np.array([[dx(x, y), y], [dx(x + 60, y), y], [dx(x + 60, y + 90), y + 90], [dx(x, y + 90), y + 90]])
            cv2.fillPoly(image, [pts.astype(np.int32)], (60, 70, 90))
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("angle", "keystone"), [(-3.0, 0.0), (2.5, 0.0), (4.0, 0.06)])
def test_tilted_verticals_are_levelled(angle: float, keystone: float) -> None:
    tilt = estimate_tilt(rotated(building(keystone), angle))
    assert tilt["confident"], tilt
    assert abs(tilt["rotation_deg"] - (-angle)) <= 0.5, tilt


@pytest.mark.parametrize("seed", [0, 1])
def test_a_texture_without_lines_abstains(seed: int) -> None:
    """Foliage-like texture (blurred noise at several scales): nothing to level by."""
    rng = np.random.default_rng(seed)
    image = np.zeros((640, 960, 3), np.float32)
    for sigma in (1.0, 4.0, 12.0):
        image += cv2.GaussianBlur(rng.normal(0, 60, (640, 960, 3)).astype(np.float32), (0, 0), sigma)
    image = np.clip(image + np.array([60, 110, 50], np.float32), 0, 255).astype(np.uint8)
    for angle in (0.0, 3.0):
        tilt = estimate_tilt(rotated(image, angle) if angle else image)
        assert tilt["rotation_deg"] == 0.0 and not tilt["confident"], tilt


def test_tilted_photo_is_levelled(shared_data) -> None:
    corridor = pf.np.asarray(pf.Image.open(shared_data / CORRIDOR).convert("RGB"))
    base = estimate_tilt(corridor)
    assert base["confident"]
    for angle in (-1.0, 1.5, 3.0):
        tilt = estimate_tilt(rotated(corridor, angle))
        assert tilt["confident"]
        # Rotating the photo by +a means it needs a further -a to be level.
        assert abs(tilt["estimate_deg"] - (base["estimate_deg"] - angle)) < 0.3, (angle, tilt)


def test_run_rotates_and_reports(shared_data) -> None:
    corridor = pf.np.asarray(pf.Image.open(shared_data / CORRIDOR).convert("RGB"))
    frame = frame_of(rotated(corridor, 3.0))
    h, w = frame.image.shape[:2]
    composition.run([frame], PhaseContext())
    report = frame.report["composition"]
    own = estimate_tilt(corridor)["estimate_deg"]
    assert abs(report["rotation_deg"] - (own - 3.0)) < 0.3
    x0, y0, x1, y1 = report["crop_box"]
    assert (x1 - x0, y1 - y0) == (frame.width, frame.height) and report["size"] == [frame.width, frame.height]
    assert frame.width < w and frame.height < h


@pytest.mark.parametrize("name", ["coffee", "astronaut", "chelsea", "flower"])
def test_photos_without_clear_lines_are_left_alone(name: str) -> None:
    image = pf.wheel_photo(name)
    frame = frame_of(image)
    composition.run([frame], PhaseContext())
    assert frame.report["composition"]["rotation_deg"] == 0.0
    assert frame.report["composition"]["crop_box"] is None
    assert frame.image is image or np.array_equal(frame.image, image)
    assert "reason" in frame.report["composition"]["straighten"]


def test_horizon_correction_off(shared_data) -> None:
    corridor = pf.np.asarray(pf.Image.open(shared_data / CORRIDOR).convert("RGB"))
    frame = frame_of(rotated(corridor, 3.0))
    off = PhaseContext(edit=EditSettings(horizon_correction=False))
    analysis.run([frame], off)
    assert frame.tilt is None
    composition.run([frame], off)
    assert frame.report["composition"]["rotation_deg"] == 0.0


def test_phase_4_acts_on_the_tilt_phase_0_measured(shared_data, monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate is made once, in phase 0 on its working copy; phase 4 does not measure again,
    and the result is the same as measuring in phase 4 (full-resolution photo, so the working
    copies differ in how they were made)."""
    corridor = pf.np.asarray(pf.Image.open(shared_data / CORRIDOR).convert("RGB"))
    big = cv2.resize(rotated(corridor, 3.0), None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
    alone = frame_of(big)
    composition.run([alone], PhaseContext())
    frame = frame_of(big)
    analysis.run([frame], PhaseContext())
    assert frame.tilt is not None and frame.tilt["confident"]
    assert "tilt" not in frame.report["analysis"]  # reported once, by the phase that acts on it

    def measured_twice(image: np.ndarray) -> None:
        raise AssertionError("phase 4 measured the tilt again")

    monkeypatch.setattr(composition, "estimate_tilt", measured_twice)
    composition.run([frame], PhaseContext())
    report, reference = frame.report["composition"], alone.report["composition"]
    assert report["straighten"]["estimate_deg"] == pytest.approx(frame.tilt["estimate_deg"])
    assert abs(report["rotation_deg"] - reference["rotation_deg"]) <= 0.1
    assert report["rotation_deg"] != 0.0 and report["size"] == [frame.width, frame.height]


def test_tiny_and_extreme_frames() -> None:
    for shape in ((1, 1, 3), (5, 7, 3), (300, 20000, 3)):
        frame = frame_of(np.full(shape, 128, np.uint8))
        composition.run([frame], PhaseContext(edit=EditSettings(crop_aspect="1:1")))
        assert frame.report["composition"]["rotation_deg"] == 0.0


# --- aspect crop ---
def face_inside(face: Face, width: int, height: int) -> bool:
    x0, y0, x1, y1 = face.box
    return x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height


def test_crop_to_aspect_keeps_the_face() -> None:
    image = pf.wheel_photo("astronaut")
    frame = frame_of(image)
    frame.faces = [ASTRONAUT_FACE]
    composition.run([frame], PhaseContext(edit=EditSettings(crop_aspect="4:5")))
    report = frame.report["composition"]
    assert report["crop"]["applied"] and report["crop"]["placed_on"] == "faces"
    assert abs(frame.width / frame.height - 4 / 5) < 0.01 and frame.height == 512
    face = frame.faces[0]
    assert face_inside(face, frame.width, frame.height)
    x0 = report["crop_box"][0]
    assert np.array_equal(frame.image, image[:, x0 : x0 + frame.width])
    assert face.landmarks[0][0] == pytest.approx(ASTRONAUT_FACE.landmarks[0][0] - x0)


def with_detector(edit: EditSettings) -> PhaseContext:
    """A context whose (stand-in) detector ran and found the faces already on the frame."""
    from tests.unit.test_analysis import StubDetector

    return PhaseContext(edit=edit, models=ModelBundle(face_detector=StubDetector([])))


def test_aspect_follows_the_photo_orientation() -> None:
    image = pf.wheel_photo("chelsea")  # landscape, no faces
    frame = frame_of(image)
    composition.run([frame], with_detector(EditSettings(crop_aspect="4:5")))
    assert frame.report["composition"]["crop"]["placed_on"] == "salient region"
    assert frame.width > frame.height and abs(frame.width / frame.height - 5 / 4) < 0.01


def test_no_crop_without_a_face_detector() -> None:
    image = pf.wheel_photo("chelsea")
    frame = frame_of(image)
    composition.run([frame], PhaseContext(edit=EditSettings(crop_aspect="4:5")))
    assert frame.report["composition"]["crop_box"] is None and frame.image is image
    assert "no face detector" in frame.report["composition"]["crop"]["reason"]


def test_faces_that_do_not_fit_stop_the_crop() -> None:
    image = pf.wheel_photo("chelsea")  # 451×300
    left = Face((5.0, 100.0, 75.0, 170.0), (), 0.9)
    right = Face((370.0, 100.0, 440.0, 170.0), (), 0.9)
    frame = frame_of(image)
    frame.faces = [left, right]
    composition.run([frame], PhaseContext(edit=EditSettings(crop_aspect="1:1")))
    report = frame.report["composition"]
    assert report["crop_box"] is None and not report["crop"]["applied"]
    assert "do not fit" in report["crop"]["reason"]
    assert frame.image is image


def test_crop_never_cuts_a_face_near_the_edge() -> None:
    image = pf.wheel_photo("coffee")  # 600×400
    face = Face((480.0, 150.0, 560.0, 240.0), (), 0.9)  # far right
    frame = frame_of(image)
    frame.faces = [face]
    composition.run([frame], PhaseContext(edit=EditSettings(crop_aspect="1:1")))
    assert frame.report["composition"]["crop"]["applied"]
    assert face_inside(frame.faces[0], frame.width, frame.height)
    assert frame.width == frame.height == 400


def test_crop_after_straightening_keeps_faces_and_corners(shared_data) -> None:
    corridor = pf.np.asarray(pf.Image.open(shared_data / CORRIDOR).convert("RGB"))
    tilted = rotated(corridor, 3.0)
    h, w = tilted.shape[:2]
    face = Face((w * 0.45, h * 0.3, w * 0.55, h * 0.38), ((w * 0.48, h * 0.33), (w * 0.52, h * 0.33)), 0.9)
    frame = frame_of(tilted)
    frame.faces = [face]
    composition.run([frame], PhaseContext(edit=EditSettings(crop_aspect="1:1")))
    report = frame.report["composition"]
    assert report["rotation_deg"] != 0.0 and report["crop"]["applied"]
    assert frame.width == frame.height
    assert face_inside(frame.faces[0], frame.width, frame.height)
    src = corners_in_source(w, h, report["rotation_deg"], tuple(report["crop_box"]))
    assert (src >= -0.5).all() and (src[:, 0] <= w).all() and (src[:, 1] <= h).all()


# --- straightening keeps faces too ---
def tilted_rocket() -> np.ndarray:
    """The rocket photo turned 3° clockwise: its gantry's verticals level it confidently."""
    return rotated(pf.wheel_photo("rocket"), -3.0)


def face_at(fx: float, fy: float, width: int, height: int, size: float = 50.0) -> Face:
    x0, y0 = fx * (width - size), fy * (height - size)
    return Face((x0, y0, x0 + size, y0 + size), ((x0 + 15, y0 + 20), (x0 + 35, y0 + 20)), 0.9)


def test_straightening_that_would_cut_a_face_is_skipped() -> None:
    image = tilted_rocket()
    h, w = image.shape[:2]
    frame = frame_of(image)
    frame.faces = [face_at(0.45, 0.02, w, h)]  # near the top: levelling's crop would take its forehead
    composition.run([frame], PhaseContext())
    report = frame.report["composition"]
    assert report["straighten"]["estimate_deg"] and report["straighten"]["confident"]
    assert report["rotation_deg"] == 0.0 and report["straighten"]["rotation_deg"] == 0.0
    assert "1 face" in report["straighten"]["reason"]
    assert report["crop_box"] is None and frame.image is image and frame.faces[0].box == face_at(0.45, 0.02, w, h).box


@pytest.mark.parametrize("aspect", [None, "1:1", "4:5", "16:9"])
@pytest.mark.parametrize("where", [(0.45, 0.0), (0.0, 0.5), (1.0, 1.0), (0.45, 0.4), (0.8, 0.9)])
def test_straighten_and_crop_never_cut_a_face(where: tuple[float, float], aspect: str | None) -> None:
    image = tilted_rocket()
    h, w = image.shape[:2]
    frame = frame_of(image)
    frame.faces = [face_at(*where, w, h)]
    composition.run([frame], PhaseContext(edit=EditSettings(crop_aspect=aspect)))
    assert face_inside(frame.faces[0], frame.width, frame.height), frame.report["composition"]


def test_only_a_cuda_device_takes_the_torch_path() -> None:
    """Like the retouch paste-back: torch only on CUDA; any other device name resamples with OpenCV."""
    image = pf.wheel_photo("coffee")
    h, w = image.shape[:2]
    box = inscribed_box(w, h, 2.0)
    assert np.array_equal(rotate_crop(image, 2.0, box, "mps"), rotate_crop(image, 2.0, box))
