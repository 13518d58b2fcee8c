"""Phase 5: deliverables that look right everywhere and never leak a client's location."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms
from PIL.ExifTags import IFD, Base

from tests import photo_files as pf
from tests.unit.test_decode import psnr
from worker.frame import Frame, SourceInfo
from worker.imaging.decode import decode
from worker.imaging.resize import downscale
from worker.phases import PhaseContext, output
from worker.profile import EditSettings

GPS = {1: "N", 2: (52.0, 22.0, 12.5), 3: "E", 4: (4.0, 53.0, 0.9)}


def camera_exif(gps: bool = True) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R5"
    exif[0x0112] = 6
    exif[0x013B] = "Jane Doe Photography"
    exif[0x8298] = "(c) Jane Doe"
    exif[0x011A] = exif[0x011B] = 300.0  # exported at 300 ppi
    exif[0x0128] = 2  # inches
    exif[0x8769] = {
        0x829D: 2.8,
        0x9003: "2024:06:01 14:03:22",
        0x927C: b"\x00maker note bytes" * 10,
        0xA001: 0xFFFF,
        0xA005: {0x0001: "R03"},
    }
    if gps:
        exif[0x8825] = GPS
    return exif.tobytes()


def frame_from(image: np.ndarray, exif_bytes: bytes | None = None, name: str = "IMG_0001.jpg") -> Frame:
    """Through the real decoder, as the pipeline does it."""
    data = pf.jpeg(image, quality=95, exif=exif_bytes) if exif_bytes else pf.jpeg(image, quality=95)
    return decode(data, photo_id="p1", filename=name, max_pixels=10**9)


@pytest.fixture(scope="module")
def big_photo() -> np.ndarray:
    """3000×2000 from a real photo (Lanczos up from china.jpg's 640×427)."""
    return cv2.resize(pf.wheel_photo("china"), (3000, 2000), interpolation=cv2.INTER_LANCZOS4)


def exif_of(data: bytes) -> Image.Exif:
    return Image.open(io.BytesIO(data)).getexif()


def test_three_deliverables_with_sizes_and_types(big_photo: np.ndarray) -> None:
    frame = frame_from(big_photo, camera_exif())
    output.run([frame], PhaseContext())
    outs = frame.outputs
    assert set(outs) == {"edited", "web", "thumb"}
    assert all(o.content_type == "image/jpeg" for o in outs.values())
    # The decoder turned the sideways (orientation 6) pixels upright: 2000×3000.
    assert (outs["edited"].width, outs["edited"].height) == (2000, 3000)
    assert (outs["web"].width, outs["web"].height) == (1365, 2048)
    assert (outs["thumb"].width, outs["thumb"].height) == (267, 400)
    for name, enc in outs.items():
        img = Image.open(io.BytesIO(enc.data))
        assert img.format == "JPEG" and img.size == (enc.width, enc.height), name
        profile = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(profile), name
    assert Image.open(io.BytesIO(outs["web"].data)).info.get("progressive")
    assert Image.open(io.BytesIO(outs["thumb"].data)).info.get("progressive")
    assert frame.report["output"]["sizes"]["edited"]["bytes"] == len(outs["edited"].data)


def test_edited_file_keeps_exif_with_orientation_reset_and_no_gps(big_photo: np.ndarray) -> None:
    frame = frame_from(big_photo, camera_exif())
    assert frame.exif["has_gps"]
    output.run([frame], PhaseContext())
    data = frame.outputs["edited"].data
    exif = exif_of(data)
    assert exif[0x010F] == "Canon" and exif[0x0110] == "Canon EOS R5"
    assert exif[0x0112] == 1  # pixels are upright; a viewer must not turn them again
    sub = exif.get_ifd(0x8769)
    assert sub[0x829D] == 2.8 and sub[0xA001] == 1  # colour space: sRGB now
    assert (sub[0xA002], sub[0xA003]) == (2000, 3000)
    assert 0x927C not in sub and not exif.get_ifd(0xA005)  # no maker note, no "R03" Adobe RGB index
    assert 0x8825 not in exif and not exif.get_ifd(0x8825)
    assert b"maker note" not in data
    assert Image.open(io.BytesIO(data)).info["dpi"] == (300, 300)  # the print size the photographer exported
    # Re-decoded, the edited file is upright and says so.
    again = decode(data, photo_id="x", filename="x.jpg", max_pixels=10**9)
    assert again.image.shape == (3000, 2000, 3) and again.exif["has_gps"] is False
    assert frame.report["output"]["gps_kept"] is False


def test_edited_file_from_a_tiff_keeps_the_photo_tags_not_the_tiff_structure() -> None:
    """A TIFF's IFD0 describes the TIFF (strips, compression, sample size); none of it belongs in a JPEG."""
    source = Image.Exif()
    source.load(camera_exif())
    del source.get_ifd(IFD.Exif)[IFD.Interop]  # Pillow's TIFF writer would keep its stale offset
    data = pf.encode(pf.wheel_photo("coffee"), "TIFF", exif=source)
    frame = decode(data, photo_id="p1", filename="scan.tif", max_pixels=10**9)
    output.run([frame], PhaseContext())
    exif = exif_of(frame.outputs["edited"].data)
    photo_tags = {Base.Make, Base.Model, Base.Artist, Base.Copyright, Base.Orientation, IFD.Exif}
    assert set(exif) == photo_tags | {Base.XResolution, Base.YResolution, Base.ResolutionUnit}
    assert exif[Base.Make] == "Canon" and exif[Base.Orientation] == 1 and exif[Base.XResolution] == 300
    sub = exif.get_ifd(IFD.Exif)
    assert sub[Base.FNumber] == 2.8 and sub[Base.DateTimeOriginal] == "2024:06:01 14:03:22"
    assert (sub[Base.ExifImageWidth], sub[Base.ExifImageHeight]) == (400, 600)
    assert Base.MakerNote not in sub and IFD.Interop not in sub and not exif.get_ifd(IFD.GPSInfo)
    output.run([frame], PhaseContext(edit=EditSettings(keep_gps=True)))
    assert exif_of(frame.outputs["edited"].data).get_ifd(IFD.GPSInfo)[1] == "N"


def test_gps_kept_only_when_the_profile_says_so(big_photo: np.ndarray) -> None:
    frame = frame_from(big_photo, camera_exif())
    output.run([frame], PhaseContext(edit=EditSettings(keep_gps=True)))
    gps = exif_of(frame.outputs["edited"].data).get_ifd(0x8825)
    assert gps[1] == "N" and gps[2] == (52.0, 22.0, 12.5)
    assert frame.report["output"]["gps_kept"] is True
    # The public copies never carry it, nor the camera details.
    for name in ("web", "thumb"):
        exif = exif_of(frame.outputs[name].data)
        assert 0x8825 not in exif and 0x010F not in exif and 0x8769 not in exif, name


def test_web_copy_keeps_only_the_credit(big_photo: np.ndarray) -> None:
    frame = frame_from(big_photo, camera_exif())
    output.run([frame], PhaseContext())
    web = exif_of(frame.outputs["web"].data)
    assert web[0x013B] == "Jane Doe Photography" and web[0x8298] == "(c) Jane Doe"
    assert set(web) == {0x013B, 0x8298}


def test_edited_file_is_high_quality(big_photo: np.ndarray) -> None:
    frame = frame_from(big_photo)
    before = frame.image.copy()
    output.run([frame], PhaseContext())
    decoded = np.asarray(Image.open(io.BytesIO(frame.outputs["edited"].data)).convert("RGB"))
    assert psnr(decoded, before) > 40


def test_downscale_is_high_quality_and_never_upscales(big_photo: np.ndarray) -> None:
    reference = np.asarray(Image.fromarray(big_photo).resize((2048, 1365), Image.Resampling.LANCZOS))
    ours = downscale(big_photo, 2048)
    assert ours.shape == reference.shape and psnr(ours, reference) > 38
    small = pf.wheel_photo("coffee")
    assert downscale(small, 2048) is small


def test_web_copy_of_a_small_photo_is_not_upscaled() -> None:
    frame = frame_from(pf.wheel_photo("coffee"))
    output.run([frame], PhaseContext())
    assert (frame.outputs["web"].width, frame.outputs["web"].height) == (600, 400)


def test_odd_sizes() -> None:
    for image in (np.full((1, 1, 3), 200, np.uint8), np.full((300, 20000, 3), 90, np.uint8)):
        frame = Frame("p", "x.jpg", image, SourceInfo("JPEG", image.shape[1], image.shape[0]))
        output.run([frame], PhaseContext())
        assert frame.outputs["edited"].width == image.shape[1]
        assert max(frame.outputs["thumb"].width, frame.outputs["thumb"].height) <= 400


def test_oversized_or_broken_exif_never_fails_the_photo(big_photo: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x8769] = {0x9286: b"ASCII\x00\x00\x00" + b"x" * 70000}  # a 70 KB user comment
    frame = frame_from(big_photo[:200, :300])
    frame.exif_bytes = exif.tobytes()
    output.run([frame], PhaseContext())
    assert exif_of(frame.outputs["edited"].data)[0x010F] == "Canon"
    frame.exif_bytes = b"II*\x00garbage"
    output.run([frame], PhaseContext())
    assert "edited" in frame.outputs


# --- watermark ---
@pytest.fixture(scope="module")
def logo() -> np.ndarray:
    from skimage import data

    return np.asarray(data.logo())  # scikit-image's own logo: RGBA with real transparency


def test_watermarked_copy(big_photo: np.ndarray, logo: np.ndarray) -> None:
    frame = frame_from(big_photo)
    edit = EditSettings(watermark=True, watermark_position="bottom-right", watermark_opacity=0.6)
    output.run([frame], PhaseContext(edit=edit, watermark=output.Watermark(logo)))
    assert "watermarked" in frame.outputs and frame.outputs["watermarked"].content_type == "image/jpeg"
    note = frame.report["output"]["watermark"]
    x0, y0, x1, y1 = note["box"]
    web = np.asarray(Image.open(io.BytesIO(frame.outputs["web"].data)).convert("RGB")).astype(int)
    marked = np.asarray(Image.open(io.BytesIO(frame.outputs["watermarked"].data)).convert("RGB")).astype(int)
    assert web.shape == marked.shape
    h, w = web.shape[:2]
    assert x1 > w * 0.7 and y1 > h * 0.8  # bottom right
    inside = np.abs(web[y0:y1, x0:x1] - marked[y0:y1, x0:x1]).mean()
    outside = np.abs(web[: y0 - 10] - marked[: y0 - 10]).mean()
    assert inside > 5 and outside < 1.5


def test_watermark_placement_and_opacity(logo: np.ndarray) -> None:
    image = pf.wheel_photo("coffee")
    mark = output.Watermark(logo)
    for position in ("top-left", "top-right", "bottom-left", "bottom-right", "center"):
        out, placed = output.apply_watermark(image, mark, position, 0.5)
        x0, y0, x1, y1 = placed["box"]
        assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
        assert (x1 - x0) <= 0.2 * image.shape[1] + 1
        if position == "top-left":
            assert x0 < 30 and y0 < 30
        if position == "center":
            assert abs((x0 + x1) / 2 - image.shape[1] / 2) < 2
    invisible, _ = output.apply_watermark(image, mark, "center", 0.0)
    assert np.array_equal(invisible, image)
    # Transparent parts of the logo leave the photo untouched.
    out, placed = output.apply_watermark(image, mark, "center", 1.0)
    assert np.array_equal(out[: placed["box"][1]], image[: placed["box"][1]])


def test_a_prepared_watermark_scales_once_per_size_and_marks_as_a_fresh_one_does(logo: np.ndarray) -> None:
    mark = output.Watermark(logo)
    landscape, portrait = pf.wheel_photo("coffee"), np.ascontiguousarray(pf.wheel_photo("coffee").transpose(1, 0, 2))
    for image in (landscape, portrait, landscape):
        for position, opacity in (("bottom-right", 0.6), ("center", 1.0)):
            prepared, placed = output.apply_watermark(image, mark, position, opacity)
            fresh, placed_fresh = output.apply_watermark(image, output.Watermark(logo), position, opacity)
            assert np.array_equal(prepared, fresh) and placed == placed_fresh
    x0, y0, x1, y1 = placed["box"]
    assert mark.scaled(x1 - x0, y1 - y0) is mark.scaled(x1 - x0, y1 - y0)  # cached, not resampled again
    grey = output.Watermark(np.asarray(Image.fromarray(logo).convert("L")))
    alpha, colour = grey.scaled(grey.width, grey.height)  # a greyscale logo is opaque and grey
    assert (grey.height, grey.width) == logo.shape[:2] and (alpha == 1.0).all()
    assert np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 1], colour[..., 2])


def test_watermark_asked_but_no_logo(big_photo: np.ndarray) -> None:
    frame = frame_from(big_photo[:400, :600])
    output.run([frame], PhaseContext(edit=EditSettings(watermark=True)))
    assert "watermarked" not in frame.outputs
    assert frame.report["output"]["watermark"]["applied"] is False


def test_a_soft_edged_logo_keeps_its_colour_where_it_is_faint() -> None:
    """One colour with a soft alpha ramp (an anti-aliased edge, a glow): scaled, the colour stays that
    colour however faint the alpha, and the blend matches compositing the ramp by hand."""
    h, w = 64, 512
    ramp = np.tile(np.linspace(0, 255, w), (h, 1)).astype(np.uint8)
    logo = np.dstack(
        [np.full((h, w), 200, np.uint8), np.full((h, w), 40, np.uint8), np.full((h, w), 90, np.uint8), ramp]
    )
    mark = output.Watermark(logo)
    alpha, colour = mark.scaled(128, 16)
    seen = alpha[..., 0] > 0.02
    assert seen.mean() > 0.9
    assert np.abs(colour[seen] - np.array([200, 40, 90])).max() <= 1.5
    photo = np.full((400, 1000, 3), 128, np.uint8)
    marked, placed = output.apply_watermark(photo, mark, "center", 1.0)
    x0, y0, x1, y1 = placed["box"]
    a = np.asarray(Image.fromarray(ramp).resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS), np.float64) / 255
    expected = 128 * (1 - a[..., None]) + np.array([200, 40, 90]) * a[..., None]
    assert np.abs(marked[y0:y1, x0:x1].astype(np.float64) - expected).max() <= 2.0


def test_a_watermark_for_web_images_keeps_only_a_small_copy_and_marks_the_same(logo: np.ndarray) -> None:
    """Prepared for 2048 px web images, a big logo is kept at about the largest size it is drawn at
    (straightening and crops make many web sizes, each scaled once), and marks as the full one does."""
    big = np.asarray(Image.fromarray(logo).resize((logo.shape[1] * 6, logo.shape[0] * 6), Image.Resampling.LANCZOS))
    full, prepared = output.Watermark(big), output.Watermark(big, 2048)
    kept = prepared._premultiplied.shape
    assert max(kept[:2]) < 2 * output.LOGO_WIDTH * 2048 + 2 and kept[:2] != big.shape[:2]
    for size in ((2048, 1365), (2011, 1327), (1365, 2048)):
        photo = np.full((size[1], size[0], 3), 90, np.uint8)
        a, placed = output.apply_watermark(photo, full, "bottom-right", 0.8)
        b, placed_b = output.apply_watermark(photo, prepared, "bottom-right", 0.8)
        assert placed == placed_b
        diff = np.abs(a.astype(int) - b.astype(int))[
            placed["box"][1] : placed["box"][3], placed["box"][0] : placed["box"][2]
        ]
        # Area halvings then Lanczos (as for the web images themselves) vs one Lanczos: a few levels
        # at the sharpest edges of the lettering, nothing to see.
        assert diff.max() <= 12 and np.percentile(diff, 99) <= 3 and diff.mean() < 0.3
