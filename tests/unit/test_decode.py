"""Decoding: every format and oddity a photographer uploads, on real photos from the wheels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from tests import photo_files as pf
from worker.errors import DecodeError, PhotoError, classify
from worker.imaging import icc
from worker.imaging.decode import decode

LIMIT = 250_000_000


def run(data: bytes, filename: str, max_pixels: int = LIMIT):
    return decode(data, photo_id="p1", filename=filename, max_pixels=max_pixels)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return deltaE_ciede2000(rgb2lab(np.clip(a, 0, 255) / 255.0), rgb2lab(np.clip(b, 0, 255) / 255.0))


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return pf.wheel_photo("coffee")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return pf.wheel_photo("astronaut")


# --- bad input: each fails alone, with a reason a photographer can read ---
def assert_readable(exc: DecodeError, *words: str) -> None:
    message = exc.message
    assert "\n" not in message and len(message) < 300
    assert "Traceback" not in message
    for word in words:
        assert word in message, message
    failure = classify(exc)
    assert failure.scope == "photo" and not failure.retryable


def test_zero_byte_file() -> None:
    with pytest.raises(DecodeError) as err:
        run(b"", "IMG_0001.jpg")
    assert_readable(err.value, "IMG_0001.jpg", "empty", "upload")


def test_truncated_jpeg(coffee: np.ndarray) -> None:
    with pytest.raises(DecodeError) as err:
        run(pf.truncated_jpeg(coffee), "IMG_0002.jpg")
    assert_readable(err.value, "IMG_0002.jpg", "truncated", "upload")


def test_truncated_png(coffee: np.ndarray) -> None:
    data = pf.encode(coffee, "PNG")
    with pytest.raises(DecodeError) as err:
        run(data[: len(data) // 2], "IMG_0003.png")
    assert_readable(err.value, "IMG_0003.png", "truncated")


def test_png_bomb_is_refused_from_the_header() -> None:
    data = pf.png_bomb(20000, 20000)
    assert len(data) < 200_000  # tiny on disk: 400 MP once decoded
    with pytest.raises(DecodeError) as err:
        run(data, "bomb.png")
    assert_readable(err.value, "20000×20000", "400 MP", "250 MP limit")


def test_pixel_limit_comes_from_the_caller(coffee: np.ndarray) -> None:
    with pytest.raises(DecodeError, match="limit"):
        run(pf.jpeg(coffee), "coffee.jpg", max_pixels=100_000)
    assert run(pf.jpeg(coffee), "coffee.jpg", max_pixels=coffee.shape[0] * coffee.shape[1]).width == 600


def test_text_file_named_jpg() -> None:
    with pytest.raises(DecodeError) as err:
        run(b"Dear client,\nhere are the photos from Saturday.\n", "notes.jpg")
    assert_readable(err.value, "notes.jpg", "text file", "not an image")


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", "web page"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "video"),
        (b"PK\x03\x04\x14\x00\x00\x00", "ZIP"),
    ],
)
def test_other_files_named_jpg_say_what_they_are(head: bytes, what: str) -> None:
    with pytest.raises(DecodeError) as err:
        run(head + b"\x00" * 64, "photo.jpg")
    assert_readable(err.value, what)


def test_random_bytes() -> None:
    data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(DecodeError) as err:
        run(data, "DSC_0001.jpg")
    assert_readable(err.value, "not in a photo format")


def test_broken_raw_file() -> None:
    with pytest.raises(DecodeError) as err:
        run(b"II*\x00" + b"\x00" * 100, "DSC_0001.NEF")
    assert_readable(err.value, "DSC_0001.NEF", "RAW")


def test_decode_error_is_a_photo_error() -> None:
    assert issubclass(DecodeError, PhotoError)


# --- good input: each comes out upright, sRGB, 8-bit RGB ---
def test_plain_jpeg_round_trips(coffee: np.ndarray) -> None:
    frame = run(pf.jpeg(coffee, quality=95), "coffee.jpg")
    assert frame.image.shape == coffee.shape and frame.image.dtype == np.uint8
    assert frame.image.flags["C_CONTIGUOUS"]
    assert psnr(frame.image, coffee) > 35
    assert frame.source.format == "JPEG" and frame.source.orientation == 1


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(astronaut: np.ndarray, orientation: int) -> None:
    upright = astronaut[:, 100:400]  # not square, so a wrong turn changes the shape
    frame = run(pf.oriented_jpeg(upright, orientation), "sideways.jpg")
    assert frame.image.shape == upright.shape
    assert psnr(frame.image, upright) > 30
    assert frame.source.orientation == orientation
    assert frame.exif["orientation"] == orientation and frame.exif["make"] == "Canon"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(astronaut: np.ndarray, orientation: int) -> None:
    from PIL import ImageOps

    stored = np.ascontiguousarray(astronaut[:, 50:450])
    data = pf.jpeg(stored, exif=pf.exif_with(orientation=orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    frame = run(data, "oriented.jpg")  # the fast OpenCV path for plain colour JPEGs
    assert np.array_equal(frame.image, expected)


def test_cmyk_jpeg_adobe_inverted(coffee: np.ndarray) -> None:
    data = pf.cmyk_jpeg(coffee)
    frame = run(data, "press.jpg")
    assert frame.source.mode == "CMYK"
    # Read as plain (non-inverted) CMYK the picture would be a negative: far from the photo.
    assert psnr(frame.image, coffee) > 28
    assert np.abs(frame.image.astype(int).mean() - coffee.mean()) < 3


def test_greyscale_jpeg(coffee: np.ndarray) -> None:
    grey = np.asarray(Image.fromarray(coffee).convert("L"))
    frame = run(pf.grey_jpeg(coffee), "bw.jpg")
    assert frame.source.mode == "L" and frame.image.shape == (*grey.shape, 3)
    assert np.array_equal(frame.image[..., 0], frame.image[..., 1])
    assert psnr(frame.image[..., 0], grey) > 35


def test_sixteen_bit_png(coffee: np.ndarray) -> None:
    frame = run(pf.png16(coffee), "scan.png")
    assert frame.source.bit_depth == 16
    assert np.abs(frame.image.astype(int) - coffee).max() <= 1


def test_sixteen_bit_tiff(coffee: np.ndarray) -> None:
    frame = run(pf.tiff16(coffee), "scan.tif")
    assert frame.source.format == "TIFF" and frame.source.bit_depth == 16
    assert np.abs(frame.image.astype(int) - coffee).max() <= 1


def test_sixteen_bit_grey_png_is_scaled_not_clipped(coffee: np.ndarray) -> None:
    grey = np.asarray(Image.fromarray(coffee).convert("L"))
    data = pf.encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG")
    frame = run(data, "grey16.png")
    assert frame.source.bit_depth == 16
    assert np.abs(frame.image[..., 0].astype(int) - grey).max() <= 1


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
@pytest.mark.parametrize("levels", [(100, 200), (150, 300), (20000, 40000)])
def test_dark_sixteen_bit_grey_is_read_as_sixteen_bit(fmt: str, levels: tuple[int, int]) -> None:
    """A 16-bit file whose values all happen to be ≤ 255 is a nearly black 16-bit photo, not 8-bit data."""
    grey = np.zeros((32, 48), np.uint16)
    grey[:, 24:] = levels[1]
    grey[:, :24] = levels[0]
    image = Image.fromarray(grey)
    assert image.mode == "I;16"
    frame = run(pf.encode(image, fmt), f"dark16.{fmt.lower()}")
    expected = np.round(grey.astype(float) / 65535 * 255)
    assert np.abs(frame.image[..., 0].astype(int) - expected).max() <= 1


def test_rgba_png_is_composited_over_white(coffee: np.ndarray) -> None:
    rgba = np.dstack([coffee, np.full(coffee.shape[:2], 255, np.uint8)])
    rgba[:100, :100, 3] = 0
    frame = run(pf.encode(rgba, "PNG"), "cutout.png")
    assert (frame.image[:100, :100] == 255).all()
    assert np.array_equal(frame.image[200:, 200:], coffee[200:, 200:])


def test_flattened_transparency_is_said_in_the_report(coffee: np.ndarray) -> None:
    rgba = np.dstack([coffee, np.full(coffee.shape[:2], 255, np.uint8)])
    opaque = run(pf.encode(rgba, "PNG"), "opaque.png")
    assert opaque.source.notes == ()  # an alpha channel that hides nothing changes nothing
    rgba[:100, :100, 3] = 0
    cutout = run(pf.encode(rgba, "PNG"), "cutout.png")
    (note,) = cutout.source.notes
    assert "transparent" in note and "white" in note
    assert cutout.source.to_json()["notes"] == [note]  # what reaches the analysis report
    palette = Image.fromarray(coffee).quantize(64)
    palette.info["transparency"] = 0
    assert any("white" in n for n in run(pf.encode(palette, "PNG", transparency=0), "p.png").source.notes)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF"])
def test_an_invalid_exif_orientation_is_ignored_and_said(astronaut: np.ndarray, fmt: str) -> None:
    data = pf.encode(astronaut, fmt, exif=pf.exif_with(orientation=99))
    frame = run(data, f"odd.{fmt.lower()}")
    assert frame.image.shape == astronaut.shape and frame.source.orientation == 1
    (note,) = frame.source.notes
    assert "orientation 99" in note and "1–8" in note
    assert run(pf.encode(astronaut, fmt, exif=pf.exif_with(orientation=6)), "six.jpg").source.notes == ()


def test_only_the_first_frame_of_an_animation_is_edited_and_it_is_said(coffee: np.ndarray) -> None:
    frames = [Image.fromarray(np.roll(coffee, i * 40, axis=1)).quantize(64) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    frame = run(buf.getvalue(), "teaser.gif")
    (note,) = frame.source.notes
    assert "3 frames" in note and "only the first" in note
    assert run(pf.encode(frames[0], "GIF"), "still.gif").source.notes == ()


@pytest.mark.parametrize("case", ["empty", "truncated", "text", "too_large", "too_small", "pdf"])
def test_advice_is_worded_for_where_the_file_came_from(coffee: np.ndarray, case: str) -> None:
    data, limit = {
        "empty": (b"", LIMIT),
        "truncated": (pf.truncated_jpeg(coffee), LIMIT),
        "text": (b"name,shutter\nIMG_1,1/200\n", LIMIT),
        "too_large": (pf.encode(coffee, "PNG"), 1000),
        "too_small": (pf.encode(coffee[:8, :8], "PNG"), LIMIT),
        "pdf": (b"%PDF-1.7\n%" + bytes(100), LIMIT),
    }[case]
    with pytest.raises(DecodeError) as uploaded:
        run(data, "IMG_0009.jpg", limit)
    with pytest.raises(DecodeError) as local:
        decode(data, photo_id="p1", filename="IMG_0009.jpg", max_pixels=limit, origin="file")
    assert "upload" in uploaded.value.message  # the app's words stay the app's
    assert "upload" not in local.value.message, local.value.message
    assert_readable(local.value, "IMG_0009.jpg")


def test_palette_gif(coffee: np.ndarray) -> None:
    frame = run(pf.encode(Image.fromarray(coffee).quantize(256), "GIF"), "anim.gif")
    assert frame.image.shape == coffee.shape and psnr(frame.image, coffee) > 25


@pytest.mark.parametrize("fmt", ["WEBP", "AVIF"])
def test_webp_and_avif(coffee: np.ndarray, fmt: str) -> None:
    frame = run(pf.encode(coffee, fmt, quality=90), f"photo.{fmt.lower()}")
    assert frame.source.format == fmt and psnr(frame.image, coffee) > 30


@pytest.mark.parametrize("fmt", ["WEBP", "AVIF", "PNG"])
def test_orientation_in_other_formats(astronaut: np.ndarray, fmt: str) -> None:
    upright = astronaut[:, 100:400]
    stored = np.ascontiguousarray(np.rot90(upright, 1))
    kwargs: dict[str, object] = {"exif": pf.exif_with(orientation=6).tobytes()}
    if fmt != "PNG":
        kwargs["quality"] = 92
    frame = run(pf.encode(stored, fmt, **kwargs), f"x.{fmt.lower()}")
    assert frame.image.shape == upright.shape and psnr(frame.image, upright) > 28


def test_heic(astronaut: np.ndarray) -> None:
    frame = run(pf.heic(astronaut), "IMG_1234.HEIC")
    assert frame.source.format == "HEIF" and frame.image.shape == astronaut.shape
    assert psnr(frame.image, astronaut) > 30


def test_heic_rotation_is_applied(astronaut: np.ndarray) -> None:
    upright = astronaut[:, 100:400]
    stored = np.ascontiguousarray(np.rot90(upright, 1))
    frame = run(pf.heic(stored, exif=pf.exif_with(orientation=6).tobytes()), "IMG_1235.HEIC")
    assert frame.image.shape == upright.shape and psnr(frame.image, upright) > 28
    assert frame.source.orientation == 6


def test_one_pixel_image_is_refused() -> None:
    with pytest.raises(DecodeError) as err:
        run(pf.encode(np.array([[[200, 100, 50]]], np.uint8), "PNG"), "dot.png")
    assert_readable(err.value, "dot.png", "1×1", "too small")


def test_smallest_accepted_image() -> None:
    image = np.full((16, 16, 3), (200, 100, 50), np.uint8)
    frame = run(pf.encode(image, "PNG"), "tiny.png")
    assert frame.image.shape == (16, 16, 3) and frame.image[0, 0].tolist() == [200, 100, 50]


def test_long_panorama() -> None:
    frame = run(pf.panorama(20000, 300), "pano.jpg")
    assert frame.image.shape == (300, 20000, 3)


# --- colour: embedded profiles are converted to sRGB, checked against the specs' own matrices ---
@pytest.fixture(scope="module")
def adobe_codes(coffee: np.ndarray) -> tuple[bytes, np.ndarray]:
    data = pf.adobe_rgb_jpeg(coffee)
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # the code values, no colour management
    return data, stored


def test_adobe_rgb_jpeg_matches_reference_conversion(adobe_codes: tuple[bytes, np.ndarray]) -> None:
    data, stored = adobe_codes
    frame = run(data, "adobe.jpg")
    assert frame.source.icc_profile == "Adobe RGB (1998)"
    reference = pf.reference_to_srgb(stored, "adobe")
    de = delta_e(frame.image.astype(np.float64), reference)
    assert float(de.mean()) < 1.0 and float(de.max()) < 2.0, (de.mean(), de.max())
    # Without the conversion the same pixels are visibly off: the test can fail.
    assert float(delta_e(stored.astype(np.float64), reference).mean()) > 2.0


def test_adobe_rgb_declared_in_exif_without_profile(adobe_codes: tuple[bytes, np.ndarray]) -> None:
    _, stored = adobe_codes
    exif = Image.Exif()
    # ColorSpace uncalibrated + interoperability index R03: Adobe RGB (DCF option file), as cameras write it.
    exif[0x8769] = {0xA001: 0xFFFF, 0xA005: {0x0001: "R03"}}
    data = pf.jpeg(stored, quality=95, subsampling=0, exif=exif.tobytes())
    frame = run(data, "_DSC0001.JPG")
    assert "Adobe RGB" in (frame.source.icc_profile or "")
    reference = pf.reference_to_srgb(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), "adobe")
    assert float(delta_e(frame.image.astype(np.float64), reference).mean()) < 1.0


@pytest.mark.parametrize(
    ("space", "key", "fmt"), [(icc.DISPLAY_P3, "p3", "PNG"), (icc.PROPHOTO_RGB, "prophoto", "TIFF")]
)
def test_wide_gamut_profiles(coffee: np.ndarray, space: icc.RGBSpace, key: str, fmt: str) -> None:
    data = pf.encode(coffee, fmt, icc_profile=icc.rgb_profile(space))
    frame = run(data, f"wide.{fmt.lower()}")
    assert frame.source.icc_profile == space.name
    de = delta_e(frame.image.astype(np.float64), pf.reference_to_srgb(coffee, key))
    assert float(de.mean()) < 1.0 and float(de.max()) < 2.0, (de.mean(), de.max())


def test_a_profile_whose_description_does_not_decode_costs_nothing(coffee: np.ndarray) -> None:
    """Found by fuzzing (tests/fuzz_decode.py): LittleCMS refuses to turn such a description into text."""
    profile = bytearray(icc.rgb_profile(icc.ADOBE_RGB))
    count = int.from_bytes(profile[128:132], "big")
    tags = {bytes(profile[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    desc = int.from_bytes(profile[tags[b"desc"] + 4 : tags[b"desc"] + 8], "big")
    profile[desc + 14 : desc + 16] = b"\xff\xff"  # inside the ASCII text: no longer ASCII
    frame = run(pf.jpeg(pf.srgb_to_adobe_codes(coffee), quality=95, icc_profile=bytes(profile)), "odd_icc.jpg")
    assert frame.source.icc_profile == "embedded profile"
    assert psnr(frame.image, coffee) > 30  # still converted from Adobe RGB


def test_srgb_profile_is_not_converted(coffee: np.ndarray) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    frame = run(pf.encode(coffee, "PNG", icc_profile=srgb), "srgb.png")
    assert np.array_equal(frame.image, coffee)


def test_garbage_icc_profile_is_ignored(coffee: np.ndarray) -> None:
    frame = run(pf.encode(coffee, "PNG", icc_profile=b"not a profile" * 20), "odd.png")
    assert np.array_equal(frame.image, coffee) and "ignored" in (frame.source.icc_profile or "")


# --- camera RAW through LibRaw ---
def test_linear_dng(astronaut: np.ndarray) -> None:
    frame = run(pf.linear_dng(astronaut), "IMG_0001.DNG")
    assert frame.source.format == "RAW:DNG" and frame.image.shape == astronaut.shape
    corr = np.corrcoef(frame.image.reshape(-1).astype(float), astronaut.reshape(-1).astype(float))[0, 1]
    assert corr > 0.99
    assert frame.exif["make"] == "Apelier"


def test_dng_orientation(astronaut: np.ndarray) -> None:
    upright = astronaut[:, 100:400]
    frame = run(pf.linear_dng(np.ascontiguousarray(np.rot90(upright, 1)), orientation=6), "IMG_0002.dng")
    assert frame.image.shape == upright.shape and frame.source.orientation == 6
    corr = np.corrcoef(frame.image.reshape(-1).astype(float), upright.reshape(-1).astype(float))[0, 1]
    assert corr > 0.99


def test_dng_over_the_pixel_limit(astronaut: np.ndarray) -> None:
    with pytest.raises(DecodeError, match="limit"):
        run(pf.linear_dng(astronaut), "big.dng", max_pixels=1000)


# --- EXIF summary ---
def test_camera_jpeg_profiles_on_the_fast_path(coffee: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image, ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    plain = run(pf.jpeg(coffee, quality=95), "plain.jpg")
    tagged_bytes = pf.encode(coffee, "JPEG", quality=95, icc_profile=srgb)
    odd_bytes = pf.encode(coffee, "JPEG", quality=95, icc_profile=b"not a profile" * 20)

    def slow_path(*args: object, **kwargs: object) -> None:
        raise AssertionError("handed to Pillow for a colour conversion it does not need")

    monkeypatch.setattr(Image, "fromarray", slow_path)  # the fast path never hands the pixels over
    tagged, odd = run(tagged_bytes, "srgb.jpg"), run(odd_bytes, "odd.jpg")
    assert plain.source.icc_profile is None and "sRGB" in (tagged.source.icc_profile or "")
    assert odd.source.icc_profile == "unreadable profile (ignored, assumed sRGB)"
    assert np.array_equal(tagged.image, plain.image) and np.array_equal(odd.image, plain.image)


def test_exif_summary_of_a_camera_file(shared_data) -> None:
    path = shared_data / "pairs" / "fivek_fullres_deepupe_pytorch" / "before" / "a0015-DSC_0081.jpg"
    frame = run(path.read_bytes(), path.name)
    exif = frame.exif
    assert exif["make"] == "NIKON CORPORATION" and exif["model"] == "NIKON D70s"
    assert exif["lens"] == "50.0 mm f/1.4" and exif["focal_length_mm"] == 50.0
    assert exif["aperture"] == 8.0 and exif["iso"] == 200 and exif["shutter"] == "1/750"
    assert exif["captured_at"].startswith("2008-05-25T13:08:59")
    assert exif["has_gps"] is False
    assert frame.source.icc_profile == "sRGB IEC61966-2.1"


def test_exif_gps_is_reported_as_present_only(coffee: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 12.5), 3: "E", 4: (4.0, 53.0, 0.9)}
    frame = run(pf.jpeg(coffee, exif=exif.tobytes()), "home.jpg")
    assert frame.exif["has_gps"] is True
    assert "52" not in str(frame.exif)  # the coordinates never reach the summary
    assert frame.exif_bytes is not None  # kept for the output phase, which strips GPS


def test_capture_time_with_subseconds_and_offset(coffee: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x8769] = {0x9003: "2024:06:01 14:03:22", 0x9291: "45", 0x9011: "+02:00"}
    frame = run(pf.jpeg(coffee, exif=exif.tobytes()), "burst.jpg")
    assert frame.exif["captured_at"] == "2024-06-01T14:03:22.45+02:00"


def test_broken_exif_does_not_cost_the_photo(coffee: np.ndarray) -> None:
    data = pf.jpeg(coffee)
    app1 = b"\xff\xe1" + (2 + 14).to_bytes(2, "big") + b"Exif\x00\x00II*\x00\xff\xff\xff\x7f"
    with pytest.warns(UserWarning, match="Corrupt EXIF"):  # Pillow says so; the photo goes on
        frame = run(data[:2] + app1 + data[2:], "odd_exif.jpg")
    assert frame.image.shape == coffee.shape
