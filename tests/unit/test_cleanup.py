"""Phase 3 as the pipeline runs it: settings, report, face protection, untouched pixels."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from benchmarks.cleanup_data import catenary, jpeg_roundtrip, wire_coverage
from worker.frame import Face, Frame, SourceInfo
from worker.models.bundle import ModelBundle
from worker.models.lama import load_lama
from worker.phases import PhaseContext, cleanup
from worker.profile import EditSettings


@pytest.fixture(scope="module")
def wired() -> tuple[np.ndarray, np.ndarray]:
    """The rocket photo with one dark wire across its sky, and the wire's coverage."""
    from skimage import data

    rocket = np.ascontiguousarray(data.rocket())
    h, w = rocket.shape[:2]
    cov = wire_coverage((h, w), catenary(w, 110.0, w / 2.0, w * w / 200.0), 3.0)
    out = rocket.astype(np.float32) * (1 - cov[..., None]) + 15.0 * cov[..., None]
    return jpeg_roundtrip(np.clip(np.round(out), 0, 255).astype(np.uint8)), cov


def frame_of(image: np.ndarray, faces: list[Face] | None = None) -> Frame:
    h, w = image.shape[:2]
    return Frame("p1", "p1.jpg", image.copy(), SourceInfo("JPEG", w, h), faces=faces or [])


def run(frame: Frame, ctx: PhaseContext | None = None, **edit: object) -> dict:
    cleanup.run([frame], ctx or PhaseContext(edit=EditSettings.resolve(edit)))
    return frame.report["cleanup"]


def test_a_wire_is_removed_and_reported(wired: tuple[np.ndarray, np.ndarray]) -> None:
    image, cov = wired
    frame = frame_of(image)
    report = run(frame)
    assert report["applied"] and report["method"] == "classical" and report["level"] == "conservative"
    (region,) = report["regions"]
    assert region["kind"] == "power_line"
    assert set(region) >= {"kind", "box", "score", "area_px", "edited_px", "crops"}
    x0, y0, x1, y1 = region["box"]
    assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
    # The wire is gone where it crossed open sky: those pixels are now close to the sky around.
    sky_wire = (cov > 0.5) & (frame.image.astype(int).sum(axis=2) > 0)
    before = image[sky_wire].astype(int).mean()
    after = frame.image[sky_wire].astype(int).mean()
    assert after > before + 20


def test_pixels_outside_the_dilated_masks_are_bit_identical(wired: tuple[np.ndarray, np.ndarray]) -> None:
    image, _ = wired
    frame = frame_of(image)
    report = run(frame)
    edited = np.zeros(image.shape[:2], np.uint8)
    for r in report["regions"]:
        x0, y0, x1, y1 = r["box"]
        edited[y0:y1, x0:x1] = 1  # the whole box: a superset of the detector's mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    outside = ~cv2.dilate(edited, k).astype(bool)
    np.testing.assert_array_equal(frame.image[outside], image[outside])
    assert (frame.image != image).any()


@pytest.mark.parametrize(
    "settings",
    [{"cleanup_level": "off"}, {"power_line_removal": False, "exit_sign_removal": False}],
)
def test_settings_turn_it_off(wired: tuple[np.ndarray, np.ndarray], settings: dict) -> None:
    image, _ = wired
    frame = frame_of(image)
    report = run(frame, **settings)
    assert not report["applied"] and report["regions"] == [] and "off" in report["reason"]
    assert frame.image is not None and np.array_equal(frame.image, image)


def test_power_line_removal_off_keeps_the_wire(wired: tuple[np.ndarray, np.ndarray]) -> None:
    image, _ = wired
    frame = frame_of(image)
    report = run(frame, power_line_removal=False)
    assert report["regions"] == [] and np.array_equal(frame.image, image)


def test_a_wire_behind_a_face_is_cut_around_the_face(wired: tuple[np.ndarray, np.ndarray]) -> None:
    image, cov = wired
    ys, _ = np.nonzero(cov[:, 420:480] > 0.5)
    y = float(ys.mean())
    face = Face(box=(420.0, y - 30, 480.0, y + 30), landmarks=((0.0, 0.0),) * 5, score=0.99)
    frame = frame_of(image, [face])
    report = run(frame)
    x0, y0, x1, y1 = cleanup._grow(face.box, cleanup.FACE_MARGIN)
    np.testing.assert_array_equal(frame.image[y0:y1, x0:x1], image[y0:y1, x0:x1])
    assert report["regions"]  # the rest of the wire is still removed


def test_an_exit_sign_near_a_face_is_left_alone(shared_data: Path) -> None:
    from PIL import Image

    path = shared_data / "exit_signs/ucsc_exitsign_263593.224926166.jpg"
    image = np.asarray(Image.open(path).convert("RGB"))
    report = run(frame_of(image))
    (sign,) = report["regions"]
    _, y0, x1, y1 = sign["box"]
    face = Face(box=(float(x1), float(y0), float(x1 + 40), float(y1)), landmarks=((0.0, 0.0),) * 5, score=0.9)
    frame = frame_of(image, [face])
    report = run(frame)
    assert report["regions"] == [] and report["dropped_near_faces"] == 1
    assert np.array_equal(frame.image, image)


def test_nothing_found_leaves_the_photo_as_it_was(astronaut: np.ndarray) -> None:
    frame = frame_of(astronaut)
    report = run(frame)
    assert report == {
        **report,
        "applied": False,
        "regions": [],
        "method": None,
        "reason": "nothing to remove",
    }
    assert np.array_equal(frame.image, astronaut)


class MeanFill(torch.nn.Module):
    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - mask
        mean = (image * keep).sum(dim=(2, 3), keepdim=True) / keep.sum(dim=(2, 3), keepdim=True).clamp(min=1.0)
        return image * keep + mean * mask


def test_the_report_names_lama_when_it_ran(wired: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    path = tmp_path / "big-lama.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(MeanFill()).save(str(path))
    ctx = PhaseContext(models=ModelBundle(inpainter=load_lama(path, "cpu")))
    image, _ = wired
    frame = frame_of(image)
    report = run(frame, ctx)
    assert report["method"] == "lama" and report["applied"]


@pytest.mark.parametrize("model", [False, True])
def test_photo_threads_find_in_parallel_and_a_model_fills_one_photo_at_a_time(
    wired: tuple[np.ndarray, np.ndarray], astronaut: np.ndarray, model: bool
) -> None:
    """Detection runs on the photo threads; OpenCV fills there too, a model inpainter (LaMa on the GPU)
    is called on the phase's own thread, one call at a time; the result is the same either way."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from worker.cleanup.opencv_inpaint import OpenCVInpainter

    image, _ = wired
    calls: list[str] = []
    inside = threading.Semaphore(1)

    class Recording(OpenCVInpainter):
        def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
            assert inside.acquire(blocking=False), "two inpainting calls at once"
            try:
                calls.append(threading.current_thread().name)
                return super().inpaint(image, mask)
            finally:
                inside.release()

    class Model:  # not an OpenCVInpainter: stands for LaMa
        name = "opencv-telea"

        def __init__(self) -> None:
            self.inner = Recording("telea")

        def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return self.inner.inpaint(image, mask)

    serial = [frame_of(image), frame_of(astronaut), frame_of(image)]
    cleanup.run(serial, PhaseContext(models=ModelBundle(inpainter=OpenCVInpainter("telea"))))
    frames = [frame_of(image), frame_of(astronaut), frame_of(image)]
    with ThreadPoolExecutor(3, thread_name_prefix="photo") as pool:
        if model:
            cleanup.run(frames, PhaseContext(models=ModelBundle(inpainter=Model()), photo_pool=pool))
        else:
            inside = threading.Semaphore(3)  # OpenCV may fill photos at once
            cleanup.run(frames, PhaseContext(models=ModelBundle(inpainter=Recording("telea")), photo_pool=pool))
    on_photo_threads = {name.startswith("photo") for name in calls}
    assert calls and on_photo_threads == ({False} if model else {True})
    for a, b in zip(serial, frames, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        strip = ("detect_ms", "inpaint_ms")
        assert {k: v for k, v in a.report["cleanup"].items() if k not in strip} == {
            k: v for k, v in b.report["cleanup"].items() if k not in strip
        }
