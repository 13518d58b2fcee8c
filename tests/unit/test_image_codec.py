"""The torch image path (worker/imaging/device.py: nvJPEG on a GPU) against the CPU path, on the CPU.

torchvision's decode/encode run on the CPU too, so the same code the GPU runs is forced here with
``device="cpu"`` and checked to give the frame, orientation and metadata the CPU path gives; the
``gpu``-marked tests run it on CUDA.
"""

from __future__ import annotations

import functools
import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from tests import photo_files as pf
from tests.unit.test_output import camera_exif
from worker.errors import DecodeError
from worker.imaging import decode as cpu
from worker.imaging import device as codec
from worker.models.bundle import ModelBundle, image_codec
from worker.phases import PhaseContext, output
from worker.profile import EditSettings
from worker.service.config import Settings

LIMIT = 10**9
EDIT = EditSettings(web_long_edge=480, thumb_long_edge=120)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return pf.wheel_photo("astronaut")


def both(data: bytes, filename: str = "IMG_0001.jpg", device: str = "cpu"):
    """The CPU decoder's frame and the torch path's, for the same bytes."""
    reference = cpu.decode(data, photo_id="p", filename=filename, max_pixels=LIMIT)
    torch_frame = codec.decode_one(data, photo_id="p", filename=filename, device=device, max_pixels=LIMIT)
    return reference, torch_frame


def assert_same_frame(a, b, levels: int = 2) -> None:
    assert a.image.shape == b.image.shape and b.image.dtype == np.uint8
    assert int(np.abs(a.image.astype(int) - b.image.astype(int)).max()) <= levels
    assert a.source == b.source
    assert a.exif == b.exif and a.exif_bytes == b.exif_bytes


@pytest.mark.parametrize("orientation", range(1, 9))
def test_torch_decode_matches_the_cpu_path_in_every_orientation(astronaut: np.ndarray, orientation: int) -> None:
    exif = pf.exif_with(orientation=orientation, make="Canon")
    data = pf.jpeg(astronaut[:300, :450], quality=92, exif=exif.tobytes())
    assert cpu.plan_jpeg(data, filename="x.jpg") is not None  # the torch decoder takes it
    reference, torch_frame = both(data)
    assert torch_frame.source.orientation == orientation
    assert_same_frame(reference, torch_frame)


def test_an_srgb_profile_and_a_camera_exif_stay_on_the_torch_path(astronaut: np.ndarray) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = pf.jpeg(astronaut, quality=90, icc_profile=srgb, exif=camera_exif())
    assert cpu.plan_jpeg(data, filename="x.jpg") is not None
    reference, torch_frame = both(data)
    assert torch_frame.exif["has_gps"] and torch_frame.exif["make"] == "Canon"
    assert_same_frame(reference, torch_frame)


@pytest.mark.parametrize(
    "case",
    ["png", "cmyk", "grey", "adobe_profile", "adobe_in_exif", "truncated"],
)
def test_what_the_torch_path_does_not_take_goes_to_the_cpu_decoder(astronaut: np.ndarray, case: str) -> None:
    photo = astronaut[:200, :300]
    adobe_exif = Image.Exif()
    adobe_exif[0x8769] = {0xA001: 0xFFFF, 0xA005: {0x0001: "R03"}}
    data = {
        "png": lambda: pf.encode(photo, "PNG"),
        "cmyk": lambda: pf.cmyk_jpeg(photo),
        "grey": lambda: pf.grey_jpeg(photo),
        "adobe_profile": lambda: pf.adobe_rgb_jpeg(photo),
        "adobe_in_exif": lambda: pf.jpeg(photo, exif=adobe_exif.tobytes()),
        "truncated": lambda: pf.truncated_jpeg(photo),
    }[case]()
    assert cpu.plan_jpeg(data, filename="x.jpg") is None
    if case == "truncated":
        with pytest.raises(DecodeError) as on_cpu:
            cpu.decode(data, photo_id="p", filename="x.jpg", max_pixels=LIMIT)
        with pytest.raises(DecodeError) as on_torch:
            codec.decode_one(data, photo_id="p", filename="x.jpg", device="cpu", max_pixels=LIMIT)
        assert on_torch.value.message == on_cpu.value.message
        return
    reference, torch_frame = both(data, "x.jpg")
    assert np.array_equal(reference.image, torch_frame.image)  # the same decoder made both
    assert reference.source == torch_frame.source


def test_a_batch_decodes_plain_jpegs_in_one_call_and_each_other_file_alone(
    astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = [pf.jpeg(np.roll(astronaut, 40 * i, axis=1)[:256, :384]) for i in range(3)]
    items = [(plain[0], "a", "a.jpg"), (b"not an image at all", "b", "b.jpg"), (plain[1], "c", "c.jpg"),
             (pf.encode(astronaut[:64, :64], "PNG"), "d", "d.png"), (plain[2], "e", "e.jpg")]  # fmt: skip
    calls: list[int] = []
    real = codec.torchvision.io.decode_jpeg

    def counting(data, **kwargs):
        calls.append(len(data) if isinstance(data, list) else 1)
        return real(data, **kwargs)

    monkeypatch.setattr(codec.torchvision.io, "decode_jpeg", counting)
    results = codec.decode_batch(items, device="cpu", max_pixels=LIMIT)
    assert calls == [3]  # the three JPEGs in one batched call
    assert isinstance(results[1], DecodeError) and "text file" in results[1].message
    assert [r.photo_id for r in results if not isinstance(r, DecodeError)] == ["a", "c", "d", "e"]
    for data, result in zip(plain, (results[0], results[2], results[4]), strict=True):
        assert not isinstance(result, DecodeError)
        assert_same_frame(cpu.decode(data, photo_id=result.photo_id, filename="x.jpg", max_pixels=LIMIT), result)


def test_a_file_the_device_decoder_rejects_falls_back_alone(
    astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, bad = pf.jpeg(astronaut[:200, :300]), pf.jpeg(astronaut[:300, :200])
    real = codec.torchvision.io.decode_jpeg

    def picky(data, **kwargs):  # nvJPEG refusing one file of a batch fails the whole call
        datas = data if isinstance(data, list) else [data]
        if any(len(d) == len(bad) for d in datas):
            raise RuntimeError("nvjpeg: unsupported")
        return real(data, **kwargs)

    monkeypatch.setattr(codec.torchvision.io, "decode_jpeg", picky)
    fell_back = []
    real_cpu = cpu.decode

    def tracking(data, **kwargs):
        fell_back.append(kwargs["photo_id"])
        return real_cpu(data, **kwargs)

    monkeypatch.setattr(codec.cpu, "decode", tracking)
    results = codec.decode_batch([(good, "g", "g.jpg"), (bad, "b", "b.jpg")], device="cpu", max_pixels=LIMIT)
    assert fell_back == ["b"]
    assert [getattr(r, "photo_id", None) for r in results] == ["g", "b"]


def test_the_size_checks_are_the_cpu_decoders(astronaut: np.ndarray) -> None:
    data = pf.jpeg(astronaut[:200, :300])
    with pytest.raises(DecodeError) as exc:
        codec.decode_one(data, photo_id="p", filename="x.jpg", device="cpu", max_pixels=1000)
    assert "over the" in exc.value.message and "WORKER_MAX_IMAGE_PIXELS" in exc.value.message


# --- output ---
def outputs(frame, device: str | None, edit: EditSettings = EDIT, watermark=None):
    return output.encode_all(frame, edit, watermark, device=device)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def test_torch_output_matches_the_cpu_path(astronaut: np.ndarray) -> None:
    frame = cpu.decode(pf.jpeg(astronaut, quality=95, exif=camera_exif()), photo_id="p", filename="x.jpg",
                       max_pixels=LIMIT)  # fmt: skip
    on_cpu, _ = outputs(frame, None)
    on_torch, _ = outputs(frame, "cpu")
    assert list(on_torch) == list(on_cpu) == ["edited", "web", "thumb"]
    for name, enc in on_cpu.items():
        other = on_torch[name]
        assert (other.width, other.height, other.content_type) == (enc.width, enc.height, enc.content_type)
        a, b = pixels(enc.data), pixels(other.data)
        assert a.shape == b.shape == (enc.height, enc.width, 3)
        diff = np.abs(a - b)  # bicubic (torch) against halvings + Lanczos-3 (CPU), and two JPEG encoders
        # The 120 px thumbnail of a detailed photo is where resampling filters differ most: Pillow's own
        # Lanczos straight from the original is 2.4 levels from the CPU path's there (before encoding).
        mean, p99 = (4.0, 20) if name == "thumb" else (1.5, 10)
        assert float(diff.mean()) < mean and float(np.percentile(diff, 99)) <= p99, name
        ours, theirs = Image.open(io.BytesIO(other.data)), Image.open(io.BytesIO(enc.data))
        assert ours.info.get("exif") == theirs.info.get("exif")
        assert ours.info.get("icc_profile") == theirs.info.get("icc_profile")
    edited_exif = Image.open(io.BytesIO(on_torch["edited"].data)).getexif()
    assert edited_exif[0x0112] == 1 and 0x8825 not in edited_exif  # upright, no GPS: as the CPU path writes it
    assert not Image.open(io.BytesIO(on_torch["thumb"].data)).info.get("exif")


def test_torch_output_never_upscales_and_marks_the_web_copy(astronaut: np.ndarray) -> None:
    frame = cpu.decode(pf.jpeg(astronaut[:100, :90]), photo_id="p", filename="x.jpg", max_pixels=LIMIT)
    logo = np.zeros((40, 80, 4), np.uint8)
    logo[..., 0], logo[..., 3] = 255, 200
    edit = replace(EDIT, watermark=True)
    mark = output.Watermark(logo, 480)
    on_cpu, notes_cpu = outputs(frame, None, edit, mark)
    on_torch, notes_torch = outputs(frame, "cpu", edit, mark)
    assert notes_torch == notes_cpu and notes_torch["watermark"]["applied"]
    assert {n: (e.width, e.height) for n, e in on_torch.items()} == {n: (e.width, e.height) for n, e in on_cpu.items()}
    assert on_torch["web"].width == 90  # not upscaled
    assert float(np.abs(pixels(on_torch["watermarked"].data) - pixels(on_cpu["watermarked"].data)).mean()) < 2


def test_the_output_phase_follows_the_bundles_codec_device(astronaut: np.ndarray) -> None:
    frame = cpu.decode(pf.jpeg(astronaut[:200, :300]), photo_id="p", filename="x.jpg", max_pixels=LIMIT)
    called: list[str] = []
    real = codec.encode_jpegs

    def spy(images, qualities):
        called.append(str(images[0].device))
        return real(images, qualities)

    ctx = PhaseContext(edit=EDIT, models=ModelBundle(codec_device="cpu"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(codec, "encode_jpegs", spy)
        output.run([frame], ctx)
    assert called == ["cpu"] and set(frame.outputs) == {"edited", "web", "thumb"}


# --- the setting ---
def test_the_image_codec_setting() -> None:
    assert Settings.from_env({}).image_codec == "auto"
    assert Settings.from_env({"WORKER_IMAGE_CODEC": "Torch"}).image_codec == "torch"
    with pytest.raises(Exception, match="WORKER_IMAGE_CODEC"):
        Settings.from_env({"WORKER_IMAGE_CODEC": "gpu"})
    assert image_codec("auto", "cpu") is None and image_codec("auto", "cuda") == "cuda"
    assert image_codec("torch", "cpu") == "cpu" and image_codec("cpu", "cuda") is None


# --- on a GPU ---
@pytest.mark.gpu
def test_nvjpeg_decode_and_encode_match_the_cpu_path(astronaut: np.ndarray) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    datas = [pf.jpeg(astronaut, quality=92, exif=pf.exif_with(orientation=o).tobytes()) for o in (1, 6, 3, 8)]
    items = [(d, f"p{i}", f"{i}.jpg") for i, d in enumerate(datas)]
    results = codec.decode_batch(items, device="cuda", max_pixels=LIMIT)
    for data, result in zip(datas, results, strict=True):
        assert not isinstance(result, DecodeError)
        # nvJPEG upsamples chroma its own way: a few levels at sharp colour edges
        reference = cpu.decode(data, photo_id=result.photo_id, filename="x.jpg", max_pixels=LIMIT)
        assert reference.image.shape == result.image.shape and reference.source == result.source
        assert float(np.abs(reference.image.astype(int) - result.image).mean()) < 1.5
    on_cpu, _ = outputs(results[0], None)
    on_gpu, _ = outputs(results[0], "cuda")
    for name, enc in on_cpu.items():
        assert (on_gpu[name].width, on_gpu[name].height) == (enc.width, enc.height)
        assert float(np.abs(pixels(on_gpu[name].data) - pixels(enc.data)).mean()) < 2, name


def test_the_pipeline_decodes_and_encodes_with_the_bundles_codec_device(
    astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.pipeline.stream import PhotoTask, Pipeline

    datas = [pf.jpeg(np.roll(astronaut, 50 * i, axis=0)[:256, :320], exif=camera_exif()) for i in range(3)]
    decoded: list[str] = []
    real = codec.decode_one

    def spy(data, **kwargs):
        decoded.append(kwargs["photo_id"])
        return real(data, **kwargs)

    monkeypatch.setattr(codec, "decode_one", spy)
    delivered: dict[str, dict[str, bytes]] = {}

    def deliver(frame):
        delivered[frame.photo_id] = {name: enc.data for name, enc in frame.outputs.items()}
        return {}

    ctx = PhaseContext(edit=EDIT, models=ModelBundle(codec_device="cpu"))
    pipeline = Pipeline(ctx, deliver, batch_size=2, phases=(), io_threads=2)
    tasks = [PhotoTask(f"p{i}", f"{i}.jpg", functools.partial(bytes, d)) for i, d in enumerate(datas)]
    results: list = []
    stats = pipeline.run(tasks, results.append)
    assert stats.done == 3 and sorted(decoded) == ["p0", "p1", "p2"]
    for i, data in enumerate(datas):
        reference = cpu.decode(data, photo_id="r", filename="x.jpg", max_pixels=LIMIT)
        frame = results[i].frame
        assert np.array_equal(frame.image, reference.image) and frame.exif == reference.exif
        assert set(delivered[f"p{i}"]) == {"edited", "web", "thumb"}
