"""Phase 0 scores on real photos: they move the right way when the photo gets worse."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from tests import photo_files as pf
from worker.frame import Face, Frame, SourceInfo
from worker.imaging.decode import decode
from worker.models.bundle import ModelBundle
from worker.phases import PhaseContext, analysis

# MTCNN's answer on skimage's astronaut (box, then eyes, nose, mouth corners), written down once.
ASTRONAUT_FACE = Face(
    box=(181.1, 62.2, 267.7, 172.1),
    landmarks=((205.0, 101.7), (246.8, 103.7), (224.7, 129.0), (201.7, 139.2), (245.3, 141.9)),
    score=0.99,
)


def frame_of(image: np.ndarray, name: str = "photo.jpg") -> Frame:
    h, w = image.shape[:2]
    return Frame("id-" + name, name, np.ascontiguousarray(image), SourceInfo("JPEG", w, h))


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma else image


def exposed(image: np.ndarray, ev: float) -> np.ndarray:
    linear = pf.srgb_decode(image) * 2.0**ev
    return np.round(pf.srgb_encode(linear)).astype(np.uint8)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return pf.wheel_photo("astronaut")


@pytest.fixture(scope="module")
def china() -> np.ndarray:
    return pf.wheel_photo("china")


class StubDetector:
    """Stands in for the real face detector (another module): fixed faces per call."""

    name = "stub"

    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces

    def detect(self, images):
        return [list(self.faces) for _ in images]


# --- sharpness ---
@pytest.mark.parametrize("name", ["china", "coffee", "rocket"])
def test_sharpness_falls_with_blur(name: str) -> None:
    photo = pf.wheel_photo(name)
    scores = [analysis.analyse(blurred(photo, s), [])["quality"]["sharpness"] for s in (0, 1, 2, 4)]
    assert scores == sorted(scores, reverse=True) and scores[0] - scores[-1] > 50, scores
    assert scores[0] > 75  # a sharp photo scores as sharp


def test_blur_radius_is_measured_in_pixels(china: np.ndarray) -> None:
    grey = cv2.cvtColor(china, cv2.COLOR_RGB2GRAY)
    base = analysis.blur_radius(grey)
    at_three = analysis.blur_radius(cv2.GaussianBlur(grey, (0, 0), 3.0))
    assert base is not None and at_three is not None
    assert base < 1.5 and 2.5 < at_three < 4.0  # a 3 px blur reads as about 3 px


def test_sharpness_does_not_depend_on_resolution(shared_data) -> None:
    path = shared_data / "pairs" / "fivek_fullres_deepupe_pytorch" / "before" / "a0015-DSC_0081.jpg"
    full = np.asarray(Image.open(path).convert("RGB"))  # 2000×3008
    half = cv2.resize(full, (1000, 1504), interpolation=cv2.INTER_AREA)
    a = analysis.analyse(full, [])["quality"]["sharpness"]
    b = analysis.analyse(half, [])["quality"]["sharpness"]
    assert abs(a - b) < 12, (a, b)


def test_sharpness_is_judged_on_the_face(astronaut: np.ndarray) -> None:
    x0, y0, x1, y1 = (int(v) for v in ASTRONAUT_FACE.box)
    soft_face = astronaut.copy()
    soft_face[y0:y1, x0:x1] = blurred(astronaut, 3)[y0:y1, x0:x1]
    soft_rest = blurred(astronaut, 3)
    soft_rest[y0:y1, x0:x1] = astronaut[y0:y1, x0:x1]
    sharp = analysis.analyse(astronaut, [ASTRONAUT_FACE])["quality"]
    assert sharp["details"]["sharpness"]["region"] == "faces"
    face_blurred = analysis.analyse(soft_face, [ASTRONAUT_FACE])["quality"]["sharpness"]
    rest_blurred = analysis.analyse(soft_rest, [ASTRONAUT_FACE])["quality"]["sharpness"]
    assert face_blurred < sharp["sharpness"] - 30  # a soft face is a soft photo
    assert rest_blurred > sharp["sharpness"] - 10  # a soft background is not


def test_subject_region_is_reported(china: np.ndarray) -> None:
    detail = analysis.analyse(china, [])["quality"]["details"]["sharpness"]
    assert detail["region"] in {"subject", "whole"}
    if detail["region"] == "subject":
        x0, y0, x1, y1 = detail["box"]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


# --- exposure ---
@pytest.mark.parametrize("name", ["china", "coffee", "chelsea"])
def test_exposure_score_separates_two_stops(name: str) -> None:
    photo = pf.wheel_photo(name)
    results = {ev: analysis.analyse(exposed(photo, ev), [])["quality"]["details"]["exposure"] for ev in (-2, 0, 2)}
    assert results[0]["score"] > results[-2]["score"] + 15
    assert results[0]["score"] > results[2]["score"] + 15
    assert results[-2]["verdict"] == "under" or results[-2]["headroom_ev"] > 1.5
    assert results[2]["verdict"] == "over"
    assert results[-2]["ev"] < results[0]["ev"] - 1.5 < results[2]["ev"] - 2.0


def test_black_bars_are_not_underexposure(china: np.ndarray) -> None:
    letterboxed = np.zeros((china.shape[0], china.shape[1] + 400, 3), np.uint8)
    letterboxed[:, 200:-200] = china
    plain = analysis.analyse(china, [])["quality"]["exposure"]
    boxed = analysis.analyse(letterboxed, [])["quality"]["exposure"]
    assert abs(plain - boxed) < 5


# --- noise ---
def test_noise_is_measured(china: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    grain = rng.normal(0, 8, china.shape[:2])[..., None]  # luminance noise, σ = 8 levels
    clean = analysis.noise_level(china)
    noisy = analysis.noise_level(np.clip(china + grain, 0, 255).astype(np.uint8))
    assert clean["sigma"] < 3 and 6.5 < noisy["sigma"] < 9.5, (clean, noisy)
    assert noisy["score"] < clean["score"] - 40


# --- eyes ---
def test_open_eyes_on_a_real_face(astronaut: np.ndarray) -> None:
    assert analysis.eye_state(astronaut, ASTRONAUT_FACE)["state"] == "open"


def test_closed_lids_are_noticed(astronaut: np.ndarray) -> None:
    """A mechanism check, not a validation: both eyes painted over with the skin just below
    them and a thin lash line (no real closed-eye photo ships in the wheels)."""
    face = astronaut.copy()
    for lx, ly in ASTRONAUT_FACE.landmarks[:2]:
        x, y = int(lx), int(ly)
        skin = astronaut[y + 14 : y + 16, x - 9 : x + 9].mean(axis=(0, 1))
        face[y - 7 : y + 7, x - 10 : x + 10] = skin
        face[y + 1 : y + 2, x - 9 : x + 9] = (40, 30, 30)  # lashes: ~2 % of the eye distance
    big = cv2.resize(face, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)  # 84 px between the eyes
    scaled = Face(
        tuple(v * 2 for v in ASTRONAUT_FACE.box),  # type: ignore[arg-type]
        tuple((x * 2, y * 2) for x, y in ASTRONAUT_FACE.landmarks),
        0.99,
    )
    assert analysis.eye_state(big, scaled)["state"] == "closed"
    quality = analysis.analyse(big, [scaled])["quality"]
    assert quality["eyes"]["closed"] == 1


def test_eyes_unknown_without_landmarks_or_when_small(astronaut: np.ndarray) -> None:
    no_marks = Face(ASTRONAUT_FACE.box, (), 0.9)
    assert analysis.eye_state(astronaut, no_marks)["state"] == "unknown"
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    tiny = Face(
        tuple(v / 4 for v in ASTRONAUT_FACE.box),  # type: ignore[arg-type]
        tuple((x / 4, y / 4) for x, y in ASTRONAUT_FACE.landmarks),
        0.9,
    )
    assert analysis.eye_state(small, tiny)["state"] == "unknown"


# --- scene type ---
def test_scene_type_from_faces(astronaut: np.ndarray) -> None:
    face = ASTRONAUT_FACE
    shifted = Face((face.box[0] + 150, face.box[1], face.box[2] + 150, face.box[3]), face.landmarks, 0.9)
    lower = Face((face.box[0] - 150, face.box[1] + 200, face.box[2] - 150, face.box[3] + 200), (), 0.9)
    assert analysis.analyse(astronaut, [face])["scene_type"] == "portrait"
    assert analysis.analyse(astronaut, [face, shifted])["scene_type"] == "couple"
    assert analysis.analyse(astronaut, [face, shifted, lower])["scene_type"] == "group"


def test_scene_type_without_faces(china: np.ndarray) -> None:
    result = analysis.analyse(china, [])
    assert result["scene_type"] in {"landscape", "outdoor"}
    assert result["scene"]["sky"] > 0.05


# --- hashes ---
def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def test_phash_survives_resize_and_recompression(china: np.ndarray) -> None:
    base = analysis.analyse(china, [])
    small = cv2.resize(china, (320, 213), interpolation=cv2.INTER_AREA)
    again = decode(pf.jpeg(small, quality=70), photo_id="x", filename="x.jpg", max_pixels=10**8).image
    other = analysis.analyse(pf.wheel_photo("coffee"), [])
    copy = analysis.analyse(again, [])
    assert hamming(base["phash"], copy["phash"]) <= 6
    assert hamming(base["phash"], other["phash"]) >= 16


# --- the phase ---
def test_run_writes_a_json_report_and_faces(astronaut: np.ndarray) -> None:
    frame = frame_of(astronaut)
    ctx = PhaseContext(models=ModelBundle(face_detector=StubDetector([ASTRONAUT_FACE])))
    analysis.run([frame], ctx)
    report = frame.report["analysis"]
    assert frame.faces == [ASTRONAUT_FACE]
    assert report["face_detector"] == "stub" and len(report["faces"]) == 1
    assert 0 <= report["quality"]["score"] <= 100 and report["scene_type"] == "portrait"
    json.dumps(report)  # JSON-able, for photos.ai_edits


def test_run_without_a_detector_finds_no_faces(astronaut: np.ndarray) -> None:
    frame = frame_of(astronaut)
    analysis.run([frame], PhaseContext())
    assert frame.faces == [] and frame.report["analysis"]["faces"] == []


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 3, 3), (300, 20000, 3), (20000, 40, 3), (13, 900, 3)])
def test_odd_sizes_do_not_break_analysis(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    frame = frame_of(image)
    analysis.run([frame], PhaseContext())
    report = frame.report["analysis"]
    assert 0 <= report["quality"]["score"] <= 100
    assert len(report["phash"]) == 16 and len(report["dhash"]) == 16
    json.dumps(report)
