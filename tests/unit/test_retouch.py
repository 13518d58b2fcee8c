"""Phase 2, retouch: alignment, paste-back, the classical path and the report, on real portraits."""

from __future__ import annotations

import dataclasses
from typing import Literal

import cv2
import numpy as np
import pytest

from worker.faces import align as face_align
from worker.faces import detect as faces
from worker.faces import paste as face_paste
from worker.faces import skin
from worker.frame import Face, Frame, SourceInfo
from worker.models import mtcnn
from worker.models.bundle import ModelBundle
from worker.phases import PhaseContext, retouch
from worker.profile import EditSettings


@pytest.fixture(scope="module")
def detector() -> faces.MTCNNDetector:
    if mtcnn.weights_dir() is None:
        pytest.skip("facenet-pytorch (MTCNN weights) not installed; run make install")
    return faces.MTCNNDetector(mtcnn.mtcnn())


@pytest.fixture(scope="module")
def grace_hopper() -> np.ndarray:
    from pathlib import Path

    import matplotlib
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def _frame(image: np.ndarray, found: list[Face], name: str = "p.jpg") -> Frame:
    h, w = image.shape[:2]
    frame = Frame(name, name, image.copy(), SourceInfo("JPEG", w, h))
    frame.faces = list(found)
    return frame


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


class Identity:
    name = "identity"

    def restore(self, faces: np.ndarray, fidelity: float, strength: float = 1.0) -> np.ndarray:
        return faces.copy()


class Brighten:
    name = "brighten"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def restore(self, faces: np.ndarray, fidelity: float, strength: float = 1.0) -> np.ndarray:
        self.calls.append(len(faces))
        return np.clip(faces.astype(np.int16) + 60, 0, 255).astype(np.uint8)


def _ctx(restorer, **edit) -> PhaseContext:
    return PhaseContext(edit=EditSettings(**edit), models=ModelBundle(face_restorer=restorer))


def test_alignment_puts_the_landmarks_on_the_ffhq_template(detector, astronaut):
    (face,) = detector.detect([astronaut])[0]
    alignment = face_align.align_face(face)
    mapped = np.c_[np.array(face.landmarks), np.ones(5)] @ alignment.matrix.T
    assert np.abs(mapped - face_align.FFHQ_TEMPLATE).max() < 12  # 5 points, 4 degrees of freedom
    crop = face_align.warp_face(astronaut, alignment)
    assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
    back = np.c_[mapped, np.ones(5)] @ alignment.inverse.T
    np.testing.assert_allclose(back, np.array(face.landmarks), atol=1e-6)


def test_a_big_face_is_area_averaged_into_its_crop(detector, astronaut):
    (face,) = detector.detect([astronaut])[0]
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    scaled = Face(
        tuple(v * 4 for v in face.box),
        tuple((x * 4, y * 4) for x, y in face.landmarks),
        face.score,
    )
    small_crop = face_align.warp_face(astronaut, face_align.align_face(face))
    big_crop = face_align.warp_face(big, face_align.align_face(scaled))
    assert face_align.align_face(scaled).footprint > 600  # the pre-filtered branch
    assert _psnr(small_crop, big_crop) > 28  # same face, same framing


def test_identity_restorer_gives_back_the_photo(detector, astronaut, grace_hopper):
    frames = [_frame(img, detector.detect([img])[0]) for img in (astronaut, grace_hopper)]
    before = [f.image.copy() for f in frames]
    retouch.run(frames, _ctx(Identity()))
    for frame, original in zip(frames, before, strict=True):
        assert _psnr(frame.image, original) >= 45
        assert frame.report["retouch"]["applied"] is True
        assert [f["method"] for f in frame.report["retouch"]["faces"]] == ["identity"]


def test_a_brightening_restorer_changes_only_the_face(detector, astronaut):
    (face,) = detector.detect([astronaut])[0]
    frame = _frame(astronaut, [face])
    retouch.run([frame], _ctx(Brighten()))
    diff = np.abs(frame.image.astype(int) - astronaut.astype(int)).max(axis=2)
    changed = diff > 0
    x0, y0, x1, y1 = face.box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    ys, xs = np.nonzero(changed)
    # Every changed pixel lies inside the face: its box grown by a quarter on each side.
    assert xs.min() >= cx - 0.75 * w and xs.max() <= cx + 0.75 * w
    assert ys.min() >= cy - 0.75 * h and ys.max() <= cy + 0.75 * h
    # And the face itself did brighten, most at its centre.
    centre = diff[int(cy) - 10 : int(cy) + 10, int(cx) - 10 : int(cx) + 10]
    assert centre.mean() > 40
    assert not changed[:40].any() and not changed[:, :100].any()  # background far away untouched


def test_faces_of_all_photos_go_to_the_restorer_in_one_batch(detector, astronaut, grace_hopper):
    restorer = Brighten()
    frames = [_frame(img, detector.detect([img])[0]) for img in (astronaut, grace_hopper, astronaut)]
    retouch.run(frames, _ctx(restorer))
    assert restorer.calls == [3]


def test_too_small_faces_are_left_alone_and_reported(detector, astronaut):
    (face,) = detector.detect([astronaut])[0]
    tiny = Face(
        tuple(v / 8 for v in face.box),
        tuple((x / 8, y / 8) for x, y in face.landmarks),
        face.score,
    )
    small_photo = cv2.resize(astronaut, (64, 64), interpolation=cv2.INTER_AREA)
    frame = _frame(small_photo, [tiny])
    retouch.run([frame], _ctx(Brighten()))
    report = frame.report["retouch"]
    (entry,) = report["faces"]
    assert entry["method"] == "skipped: too small"
    assert entry["crop_px"] < retouch.MIN_FOOTPRINT_PX
    assert report["applied"] is False
    np.testing.assert_array_equal(frame.image, small_photo)


def test_report_per_face_has_box_landmarks_score_and_method(detector, astronaut, coffee):
    frames = [_frame(astronaut, detector.detect([astronaut])[0]), _frame(coffee, [])]
    retouch.run(frames, _ctx(skin.ClassicRestorer()))
    report = frames[0].report["retouch"]
    (entry,) = report["faces"]
    assert set(entry) >= {"box", "landmarks", "score", "method", "crop_px"}
    assert len(entry["box"]) == 4 and len(entry["landmarks"]) == 5
    assert entry["method"] == "classic"
    assert report["restorer"] == "classic" and report["mask"] == "ellipse"
    assert report["strength"] == pytest.approx(EditSettings().smoothing_strength)
    assert frames[1].report["retouch"] == {
        "applied": False,
        "restorer": "classic",
        "faces": [],
        "strength": 0.25,
        "reason": "no faces",
    }
    import json

    json.dumps([f.report for f in frames])  # JSON-able, as the app stores it


def test_retouch_off_and_no_restorer_leave_photos_untouched(detector, astronaut):
    found = detector.detect([astronaut])[0]
    frame = _frame(astronaut, found)
    retouch.run([frame], _ctx(Brighten(), retouch_intensity="off"))
    assert frame.report["retouch"]["reason"] == "retouch_intensity is off"
    assert frame.report["retouch"]["faces"][0]["method"] == "skipped: retouch off"
    np.testing.assert_array_equal(frame.image, astronaut)

    ctx = PhaseContext(models=ModelBundle(notes=["face retouch off (WORKER_FACE_RESTORER=off)"]))
    frame = _frame(astronaut, found)
    retouch.run([frame], ctx)
    assert frame.report["retouch"]["reason"] == "face retouch off (WORKER_FACE_RESTORER=off)"
    np.testing.assert_array_equal(frame.image, astronaut)


def test_a_face_at_the_photo_edge_is_pasted_without_error(detector, astronaut):
    (face,) = detector.detect([astronaut])[0]
    # Cut the photo through the face: the crop reaches past the left and top edges.
    cut = np.ascontiguousarray(astronaut[90:, 200:])
    moved = Face(
        (face.box[0] - 200, face.box[1] - 90, face.box[2] - 200, face.box[3] - 90),
        tuple((x - 200, y - 90) for x, y in face.landmarks),
        face.score,
    )
    frame = _frame(cut, [moved])
    retouch.run([frame], _ctx(Brighten()))
    assert frame.report["retouch"]["applied"] is True
    assert frame.image.shape == cut.shape
    assert (frame.image.astype(int) - cut.astype(int)).max() > 30


def test_a_photo_with_many_faces_is_copied_once_and_the_given_array_left_alone(detector, astronaut):
    """Each edited photo is copied once before its faces are pasted, not once per face, and the array the
    phase was given is not written into (a failed batch is rerun from it)."""

    class CountingCopies(np.ndarray):
        copies = 0

        def copy(self, order: Literal["K", "A", "C", "F"] | None = "C") -> CountingCopies:
            CountingCopies.copies += 1
            return super().copy(order)

    (face,) = detector.detect([astronaut])[0]
    frame = _frame(astronaut, [face] * 4)
    given = frame.image.view(CountingCopies)
    frame.image = given
    retouch.run([frame], _ctx(Brighten()))
    assert frame.report["retouch"]["applied"] is True
    assert CountingCopies.copies == 1
    assert frame.image is not given and not np.array_equal(frame.image, astronaut)
    np.testing.assert_array_equal(given, astronaut)


@pytest.mark.parametrize("size", [512, 256])
@pytest.mark.parametrize("reach", ["inside", "to the edges"])
def test_parsing_mask_is_the_official_feathering_to_within_its_tolerance(size, reach):
    """Blurred on a reduced copy, the mask stays within 0.005 of the official full-size blurs (kernel 101, σ 11),
    also for a face that runs off the crop (a close crop, a chin past the bottom)."""
    k = size / 512
    face = np.zeros((size, size), np.float32)
    axes = (round(140 * k), round(180 * k)) if reach == "inside" else (round(250 * k), round(260 * k))
    cv2.ellipse(face, (size // 2, round((290 if reach == "inside" else 330) * k)), axes, 0, 0, 360, 1.0, -1)
    face[: round(120 * k)] = 0  # hair
    face[np.random.default_rng(0).random(face.shape) < 0.02] = 0  # speckle, as parsing leaves
    ksize = int(101 * k) | 1
    official = cv2.GaussianBlur(cv2.GaussianBlur(face, (ksize, ksize), 11 * k), (ksize, ksize), 11 * k)
    edge = round(10 * k)
    mask = face_paste.parsing_mask(face)
    assert mask.shape == face.shape and mask.dtype == np.float32
    inner = (slice(edge, -edge), slice(edge, -edge))
    assert np.abs(mask[inner] - official[inner]).max() < 0.005
    assert mask.max() > 0.95 and not mask[:edge].any() and not mask[:, -edge:].any()


def test_paste_of_a_zero_correction_touches_nothing(detector, astronaut):
    (face,) = detector.detect([astronaut])[0]
    target = astronaut.copy()
    assert face_paste.paste(target, np.zeros((512, 512, 3), np.float32), face_align.align_face(face)) is None
    np.testing.assert_array_equal(target, astronaut)


def test_big_faces_keep_their_full_resolution_detail(detector, astronaut):
    (face,) = detector.detect([astronaut])[0]
    big = cv2.resize(astronaut, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    scaled = Face(
        tuple(v * 3 for v in face.box),
        tuple((x * 3, y * 3) for x, y in face.landmarks),
        face.score,
    )
    frame = _frame(big, [scaled])
    retouch.run([frame], _ctx(skin.ClassicRestorer()))
    # Residual paste: only the smoothing's (low-frequency) change is added — the photo's own
    # fine detail survives, which a 512² crop pasted back 3× enlarged would have blurred.
    x0, y0, x1, y1 = (int(v) for v in scaled.box)
    lap = lambda im: cv2.Laplacian(cv2.cvtColor(im[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert lap(frame.image) > 0.8 * lap(big)
    assert _psnr(frame.image, big) > 38


# --------------------------------------------------------------------------- classical smoothing


def _aligned(detector, image):
    (face,) = detector.detect([image])[0]
    return face_align.warp_face(image, face_align.align_face(face))


def test_classic_smoothing_keeps_skin_tone_and_eyes_and_lips(detector, grace_hopper):
    crop = _aligned(detector, grace_hopper)
    out = skin.smooth_face(crop, strength=0.8)
    ycrcb = crop.astype(np.float32) @ skin._TO_YCRCB.T + skin._CHROMA_OFFSET
    weight = skin.skin_mask(ycrcb)
    on_skin = weight > 0.5
    assert on_skin.mean() > 0.15
    # Skin tone: the mean colour of the skin moves by less than one level per channel.
    drift = np.abs(out[on_skin].astype(float).mean(0) - crop[on_skin].astype(float).mean(0))
    assert drift.max() < 1.0
    # Eyes, brows, nostrils, lips: untouched where the keep-sharp zones are solid.
    keep = skin.keep_sharp_mask() > 0.999
    np.testing.assert_array_equal(out[keep], crop[keep])
    # The skin itself is smoother: less fine detail (high-pass energy) than before.
    grey = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32)  # noqa: E731
    detail = lambda im: np.abs(grey(im) - cv2.GaussianBlur(grey(im), (0, 0), 2.0))[on_skin].mean()  # noqa: E731
    assert detail(out) < 0.85 * detail(crop)


def test_classic_strength_is_monotone_and_zero_is_identity(detector, astronaut):
    crop = _aligned(detector, astronaut)
    np.testing.assert_array_equal(skin.smooth_face(crop, 0.0), crop)
    changes = [np.abs(skin.smooth_face(crop, s).astype(int) - crop).sum() for s in (0.25, 0.5, 0.8)]
    assert 0 < changes[0] < changes[1] < changes[2]


def test_classic_smoothing_keeps_hair_edges(detector, astronaut):
    """The astronaut's fringe shares her skin's colour; its dense detail must still stay sharp."""
    crop = _aligned(detector, astronaut)
    out = skin.smooth_face(crop, 0.8)
    hair = (slice(30, 95), slice(150, 360))  # the fringe, in the aligned frame
    changed = np.abs(out[hair].astype(int) - crop[hair].astype(int)).max(axis=2)
    assert np.mean(changed > 2) < 0.05  # the texture guard (without it: 41 %)
    # In the photo, under the paste-back oval, the hair does not move at all.
    (face,) = detector.detect([astronaut])[0]
    frame = _frame(astronaut, [face])
    retouch.run([frame], _ctx(skin.ClassicRestorer(), retouch_intensity="heavy"))
    top = int(face.box[1])
    above = np.abs(frame.image[: top + 5].astype(int) - astronaut[: top + 5].astype(int)).max(axis=2)
    assert np.mean(above > 2) < 0.001


def test_restorer_protocol_shapes():
    faces_in = np.zeros((0, 512, 512, 3), np.uint8)
    assert skin.ClassicRestorer().restore(faces_in, 0.7, 0.5).shape == (0, 512, 512, 3)


def test_edit_settings_reach_the_restorer(detector, astronaut):
    seen: dict[str, float] = {}

    class Spy(Identity):
        def restore(self, faces, fidelity, strength=1.0):
            seen.update(fidelity=fidelity, strength=strength)
            return faces.copy()

    frame = _frame(astronaut, detector.detect([astronaut])[0])
    retouch.run([frame], _ctx(Spy(), codeformer_fidelity=0.5, retouch_intensity="heavy"))
    assert seen == {"fidelity": 0.5, "strength": EditSettings(retouch_intensity="heavy").smoothing_strength}
    assert dataclasses.asdict(EditSettings())  # EditSettings stays a dataclass (used by the phase)


# --------------------------------------------------------------------------- GPU paste-back path


def _rotated_alignment(footprint: float, angle: float, centre: tuple[float, float]) -> face_align.Alignment:
    s = 512 / footprint
    c, sn = np.cos(np.radians(angle)) * s, np.sin(np.radians(angle)) * s
    m = np.array([[c, -sn, 0.0], [sn, c, 0.0]])
    m[:, 2] = 256 - m[:, :2] @ np.array(centre)
    return face_align.Alignment(m, np.asarray(cv2.invertAffineTransform(m), dtype=np.float64))


@pytest.mark.parametrize("footprint", [150, 400, 900])
def test_torch_paste_matches_opencv(monkeypatch, footprint):
    """The CUDA paste-back path, run on the CPU: same pixels as OpenCV's, to one level."""
    photo = np.random.default_rng(0).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    alignment = _rotated_alignment(footprint, 12.0, (800, 600))
    delta = np.random.default_rng(1).normal(0, 20, (512, 512, 3)).astype(np.float32)
    delta *= face_paste.ellipse_mask()[..., None]
    real = face_paste.paste_torch
    monkeypatch.setattr(face_paste, "paste_torch", lambda t, s, i, b, device: real(t, s, i, b, "cpu"))
    a, b = photo.copy(), photo.copy()
    assert face_paste.paste(a, delta, alignment, "cpu") == face_paste.paste(b, delta, alignment, "cuda")
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and diff.mean() < 1e-3


def _exact_paste(monkeypatch: pytest.MonkeyPatch, target: np.ndarray, delta, alignment) -> None:
    """The exact bilinear warp-and-add (the CUDA path's code), run on the CPU."""
    real = face_paste.paste_torch
    with monkeypatch.context() as m:
        m.setattr(face_paste, "paste_torch", lambda t, s, i, b, device: real(t, s, i, b, "cpu"))
        face_paste.paste(target, delta, alignment, "cuda")


def test_big_face_shortcut_matches_the_exact_warp_on_a_smooth_correction(monkeypatch):
    """Faces over 2× the crop: OpenCV warps at 1/m and enlarges ×m. With no texture at the crop's own
    pixel scale that is the exact warp to one level (finer texture comes out slightly softer)."""
    photo = np.random.default_rng(0).integers(0, 256, (2000, 2400, 3), dtype=np.uint8)
    alignment = _rotated_alignment(1300, -8.0, (1200, 1000))
    noise = np.random.default_rng(1).normal(0, 20, (512, 512, 3)).astype(np.float32)
    delta = cv2.GaussianBlur(noise, (0, 0), 5) * 5 * face_paste.ellipse_mask()[..., None]
    assert np.abs(delta).max() > 10
    a, b = photo.copy(), photo.copy()
    face_paste.paste(a, delta, alignment, "cpu")
    _exact_paste(monkeypatch, b, delta, alignment)
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.05  # rounding to whole levels at the two scales
    assert (a != photo).any()


@pytest.mark.gpu
@pytest.mark.parametrize("footprint", [400, 1800])
def test_gpu_paste_matches_the_exact_warp(monkeypatch, footprint):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    photo = np.random.default_rng(0).integers(0, 256, (4000, 6000, 3), dtype=np.uint8)
    alignment = _rotated_alignment(footprint, -8.0, (3000, 2000))
    delta = np.random.default_rng(1).normal(0, 20, (512, 512, 3)).astype(np.float32)
    delta *= face_paste.ellipse_mask()[..., None]
    gpu, exact, opencv = photo.copy(), photo.copy(), photo.copy()
    face_paste.paste(gpu, delta, alignment, "cuda")
    _exact_paste(monkeypatch, exact, delta, alignment)
    assert np.abs(gpu.astype(int) - exact.astype(int)).max() <= 1
    if footprint < 2 * 512:  # below 2× the crop the OpenCV path is the exact warp as well
        face_paste.paste(opencv, delta, alignment, "cpu")
        assert np.abs(gpu.astype(int) - opencv.astype(int)).max() <= 1


@pytest.mark.parametrize("footprint", [61, 150, 300])
def test_a_small_face_gets_its_correction_where_the_exact_warp_puts_it(footprint):
    """Below 1/1.5 of the crop the correction is area-shrunk before the warp: it must land where the
    full-size warp puts it (the shrunk pixels' centres are not at f·j), and all of it (none cut off)."""
    alignment = _rotated_alignment(footprint, 7.0, (150.3, 140.7))
    ys, xs = np.mgrid[:300, :300]
    blob = np.zeros((512, 512, 3), np.float32)
    cv2.circle(blob, (300, 200), 60, (40, 40, 40), -1)
    step = np.zeros((512, 512, 3), np.float32)
    step[20:492, 440:492] = 30.0  # a sharp step at the support's edge
    for delta in (blob, step):
        pasted = np.full((300, 300, 3), 100, np.uint8)
        face_paste.paste(pasted, delta, alignment)
        change = pasted[..., 0].astype(np.float64) - 100
        exact = cv2.warpAffine(delta, alignment.inverse, (300, 300), flags=cv2.INTER_LINEAR)[..., 0]
        assert change.sum() == pytest.approx(float(exact.sum()), rel=0.03)
        if delta is blob:  # smooth: the full-size warp is a fair reference for where it lands
            shift = [(c * change).sum() / change.sum() - (c * exact).sum() / exact.sum() for c in (xs, ys)]
            assert np.hypot(*shift) < 0.1, shift


@pytest.mark.slow  # several seconds on two cores: `make test-fast` skips it
def test_the_pasted_region_covers_every_photo_pixel_the_correction_reaches(monkeypatch):
    """Bilinear sampling reaches one crop pixel beyond the correction's support on every side; the
    box that is read and written must include it on the top and left too."""
    photo = np.full((3000, 3000, 3), 100, np.uint8)
    alignment = _rotated_alignment(2400, 0.0, (1500, 1500))  # ~4.7 photo px per crop px
    delta = np.zeros((512, 512, 3), np.float32)
    delta[100:400, 100:400] = 50.0  # a sharp step at the support's edge
    pasted = photo.copy()
    _exact_paste(monkeypatch, pasted, delta, alignment)
    full = cv2.warpAffine(delta, alignment.inverse, (3000, 3000), flags=cv2.INTER_LINEAR)
    expected = np.clip(np.rint(photo.astype(np.float32) + full), 0, 255).astype(np.uint8)
    assert np.abs(pasted.astype(int) - expected.astype(int)).max() <= 1
