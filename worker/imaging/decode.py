"""Decode an uploaded file into a :class:`~worker.frame.Frame`: sRGB, upright, 8-bit RGB.

The first step of phase 0. Runs in the I/O thread pool (Pillow, libheif and
LibRaw release the GIL while decoding). What it reads:

* JPEG, PNG, TIFF (8/16-bit), WebP, AVIF, BMP, GIF (first frame) — Pillow;
* HEIC/HEIF — pillow-heif (libheif); the rotation stored in the file is applied by libheif;
* camera RAW (DNG, CR2/CR3, NEF, ARW, RAF, ORF, RW2, PEF, …) — rawpy (LibRaw), camera white
  balance, rendered straight to sRGB.

What it fixes on the way: the EXIF orientation is applied; an embedded ICC profile
(Adobe RGB, Display P3, ProPhoto, a CMYK press profile, a grey profile…) is converted to
sRGB with LittleCMS (relative colorimetric, black-point compensation); a camera JPEG
marked as Adobe RGB without a profile (EXIF interoperability index ``R03``) gets one;
CMYK (Adobe's inverted CMYK JPEGs too), greyscale, palette and 16-bit files become 8-bit
RGB; transparency is composited over white.

Every way a file can be unusable ends in a :class:`~worker.errors.DecodeError` whose one-line
message a photographer can act on, worded for where the file came from (``origin``: an upload to
the app, or a file on this computer for ``apelier-worker process``). The pixel limit
(``WORKER_MAX_IMAGE_PIXELS``) is checked from the header, before a single pixel is decompressed,
so a decompression bomb costs nothing.

What was changed on the way that the photographer would not expect is said in the frame's
``source.notes`` (the analysis report): transparency flattened on white, an EXIF orientation
outside 1–8 ignored, only the first image of an animated or multi-page file edited.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import PurePath
from typing import Any, Literal

import cv2
import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError
from PIL.ExifTags import IFD, Base

from worker.errors import DecodeError
from worker.frame import Frame, SourceInfo
from worker.imaging import icc
from worker.imaging.exif import photographic
from worker.service import logs

log = logs.get("decode")

pillow_heif.register_heif_opener()
# The worker applies its own limit (``max_pixels``, checked below from the header) to every
# format, including those Pillow does not open; Pillow's global check would otherwise reject
# 180–250 MP files we accept and warn (an error under pytest) on 90–180 MP ones.
Image.MAX_IMAGE_PIXELS = None

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
MIN_SIDE = 16  # pixels: anything smaller is an icon or a broken export, not a photo
_CMS_FLAGS = ImageCms.Flags.BLACKPOINTCOMPENSATION

RAW_SUFFIXES = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".rwl",
     ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".mef", ".mos", ".kdc", ".dcr", ".mrw"}
)  # fmt: skip
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
# LibRaw's ``flip`` → the EXIF orientation it corresponds to.
_LIBRAW_FLIP_TO_EXIF = {0: 1, 3: 3, 5: 8, 6: 6}

Origin = Literal["upload", "file"]


@dataclass(frozen=True)
class _Advice:
    """What to do about an unusable file, in the words of where it came from."""

    again: str  # the bytes are damaged or cut short: get them again
    cut_short: str  # how a truncated file came to be
    instead: str  # not a photo at all
    export: str  # a format this worker does not read
    full_size: str  # a thumbnail
    smaller: str  # over the pixel limit


_ADVICE: dict[str, _Advice] = {
    "upload": _Advice(
        again="upload the original file again",
        cut_short="the upload was cut short, upload the original again",
        instead="upload the photo file instead",
        export="export it as JPEG and upload it again",
        full_size="upload the full-size file",
        smaller="resize it before uploading (or the operator can raise WORKER_MAX_IMAGE_PIXELS)",
    ),
    "file": _Advice(
        again="copy it again from the camera card or your backup",
        cut_short="the copy was cut short, copy it again from the camera card or your backup",
        instead="leave it out, or give the photo file instead",
        export="export it as JPEG",
        full_size="use the full-size file",
        smaller="resize it, or raise WORKER_MAX_IMAGE_PIXELS",
    ),
}


def decode(data: bytes, *, photo_id: str, filename: str, max_pixels: int, origin: Origin = "upload") -> Frame:
    """Decode ``data`` to a frame, or raise :class:`DecodeError` saying why not (and what to do, for
    a file from ``origin``: an upload to the app, or a local file).

    Whatever the bytes, the photo fails alone: an exception the checks below did not foresee (a
    library's own, on a file damaged in a new way) is still a :class:`DecodeError`, chained to the
    original (``__cause__``, which no foreseen failure has) and logged with its traceback.
    """
    name = PurePath(filename).name or "the file"
    say = _ADVICE[origin]
    try:
        return _decode(data, photo_id=photo_id, filename=filename, name=name, max_pixels=max_pixels, say=say)
    except DecodeError:
        raise
    except MemoryError:
        raise DecodeError(f"{name} is too large to decode in memory; {say.smaller}") from None
    except Exception as exc:
        log.warning("decode_unforeseen_error", file=name, error=f"{type(exc).__name__}: {_short(exc)}", exc_info=True)
        raise DecodeError(f"{name} could not be decoded ({type(exc).__name__}: {_short(exc)}); {say.again}") from exc


def _decode(data: bytes, *, photo_id: str, filename: str, name: str, max_pixels: int, say: _Advice) -> Frame:
    if not data:
        done = "the upload did not complete" if say is _ADVICE["upload"] else "the copy did not complete"
        raise DecodeError(f"{name} is empty (0 bytes); {done}, {say.again}")
    kind = _sniff(data)
    if kind in _NOT_PHOTOS:
        raise DecodeError(f"{name} is {_NOT_PHOTOS[kind]}, not an image; {say.instead}")
    if kind == "raw" or (kind in {"tiff", None} and PurePath(filename).suffix.lower() in RAW_SUFFIXES):
        return _decode_raw(data, photo_id=photo_id, filename=filename, name=name, max_pixels=max_pixels, say=say)
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        if kind is None and _looks_like_text(data):
            raise DecodeError(f"{name} is a text file, not an image; {say.instead}") from None
        raise DecodeError(
            f"{name} is not in a photo format this worker reads (JPEG, PNG, TIFF, WebP, HEIC, AVIF "
            f"or camera RAW); {say.export}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"{name} is damaged ({_short(exc)}); {say.again}") from None
    if img.format == "TIFF" and Base.DNGVersion in getattr(img, "tag_v2", {}):
        return _decode_raw(data, photo_id=photo_id, filename=filename, name=name, max_pixels=max_pixels, say=say)
    return _decode_pillow(img, data, photo_id=photo_id, filename=filename, name=name, max_pixels=max_pixels, say=say)


@dataclass(frozen=True)
class JpegPlan:
    """What the header of a plain sRGB camera JPEG says, for a decoder that only needs its pixels
    (:mod:`worker.imaging.device`): the same source description, EXIF summary and block as
    :func:`decode` gives it."""

    source: SourceInfo
    summary: dict[str, Any]
    exif_bytes: bytes | None


def plan_jpeg(data: bytes, *, filename: str) -> JpegPlan | None:
    """The frame's metadata for a JPEG whose pixels another decoder may produce, or None when
    :func:`decode` must take the file: not a complete RGB/YCbCr JPEG, or a colour profile to convert
    (a wide-gamut profile, or Adobe RGB declared in EXIF). Reads the header only.

    The size checks are the caller's (:data:`MIN_SIDE`, the pixel limit); :func:`decode` words them.
    """
    if _sniff(data) != "jpeg" or b"\xff\xd9" not in data[-65536:]:
        return None
    try:
        img = Image.open(io.BytesIO(data))
    except Exception:  # whatever it is, the CPU decoder says so
        return None
    with img:
        if img.format != "JPEG" or img.mode != "RGB":
            return None
        width, height = img.size
        notes = _frames_note(img, "JPEG")
        bit_depth = _bit_depth(img)
        try:
            exif = img.getexif()
        except Exception:  # a broken EXIF block must not cost the photo (as in decode)
            exif = Image.Exif()
        summary = exif_summary(exif)
        orientation = _orientation(img, exif, None, summary, notes)
        exif_bytes = _exif_bytes(img, exif)
        icc_profile = img.info.get("icc_profile")
        if not icc_profile and _declares_adobe_rgb(exif):
            return None
        profile, profile_name = _read_profile(icc_profile) if icc_profile else (None, None)
        if profile is not None and not _is_srgb(profile_name or ""):
            return None
        source = SourceInfo("JPEG", width, height, orientation, profile_name, img.mode, bit_depth, tuple(notes))
    return JpegPlan(source, summary, exif_bytes)


def _check_size(name: str, width: int, height: int, max_pixels: int, say: _Advice) -> None:
    if min(width, height) < MIN_SIDE:
        raise DecodeError(
            f"{name} is {width}×{height} pixels, too small to be a photo (under {MIN_SIDE} px); {say.full_size}"
        )
    if width * height > max_pixels:
        raise DecodeError(
            f"{name} is {width}×{height} pixels ({_mp(width * height)}), over the "
            f"{_mp(max_pixels)} limit; {say.smaller}"
        )


def _mp(pixels: int) -> str:
    mp = pixels / 1e6
    return f"{mp:.0f} MP" if mp >= 10 else f"{mp:.2g} MP"


def _decode_pillow(
    img: Image.Image, data: bytes, *, photo_id: str, filename: str, name: str, max_pixels: int, say: _Advice
) -> Frame:
    width, height = img.size  # from the header; nothing is decompressed yet
    _check_size(name, width, height, max_pixels, say)
    source_mode = img.mode
    fmt = img.format or "unknown"
    notes = _frames_note(img, fmt)
    bit_depth = _bit_depth(img)  # before loading: the tile list still names the file's sample size
    # TIFF applies its orientation while loading; read the tag first.
    tiff_orientation = getattr(img, "tag_v2", {}).get(Base.Orientation) if fmt == "TIFF" else None
    fast = _fast_jpeg(img, data)  # the camera JPEG: OpenCV decodes straight into a numpy array
    if fast is None:
        _load(img, name, say)
    try:
        exif = img.getexif()
    except Exception:  # a broken EXIF block must not cost the photo
        exif = Image.Exif()
    summary = exif_summary(exif)
    orientation = _orientation(img, exif, tiff_orientation, summary, notes)
    exif_bytes = _exif_bytes(img, exif)
    icc_profile = img.info.get("icc_profile")
    implied = None
    if not icc_profile and _declares_adobe_rgb(exif):
        icc_profile, implied = icc.rgb_profile(icc.ADOBE_RGB), "Adobe RGB (1998) (from EXIF, no profile)"
    if fast is not None:
        fast = _orient(fast, orientation)
        profile, profile_name = _read_profile(icc_profile) if icc_profile else (None, None)
        if profile is None or _is_srgb(profile_name or ""):  # none, unreadable (assumed sRGB) or sRGB
            source = SourceInfo(fmt, width, height, orientation, profile_name, source_mode, bit_depth, tuple(notes))
            return _frame(fast, photo_id=photo_id, filename=filename, source=source, summary=summary,
                          exif_bytes=exif_bytes)  # fmt: skip
        img = Image.fromarray(fast, "RGB")  # a wide-gamut camera JPEG: convert through LittleCMS
    else:
        try:
            ImageOps.exif_transpose(img, in_place=True)
        except (OSError, ValueError) as exc:
            raise DecodeError(f"{name} could not be turned upright ({_short(exc)}); {say.again}") from None
    if _has_transparency(img):
        notes.append("transparent areas were flattened onto white (the edited JPEG has no transparency)")
    try:
        rgb, icc_name = _to_srgb(img, icc_profile)
    except (OSError, ValueError) as exc:
        raise DecodeError(
            f"{name} uses a colour mode this worker cannot convert ({img.mode}: {_short(exc)}); "
            "export it as an RGB JPEG"
        ) from None
    array = np.asarray(rgb, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise DecodeError(f"{name} decoded to an unexpected layout {array.shape}; export it as an RGB JPEG")
    source = SourceInfo(fmt, width, height, orientation, implied or icc_name, source_mode, bit_depth, tuple(notes))
    return _frame(array, photo_id=photo_id, filename=filename, source=source, summary=summary,
                  exif_bytes=exif_bytes)  # fmt: skip


def _frame(array: np.ndarray, *, photo_id: str, filename: str, source: SourceInfo, summary: dict[str, Any],
           exif_bytes: bytes | None) -> Frame:  # fmt: skip
    return Frame(
        photo_id=photo_id,
        filename=filename,
        image=np.ascontiguousarray(array, dtype=np.uint8),
        source=source,
        exif=summary,
        exif_bytes=exif_bytes,
    )


def _load(img: Image.Image, name: str, say: _Advice) -> None:
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = _short(exc)
        if "truncat" in reason.lower() or isinstance(exc, EOFError):
            raise DecodeError(
                f"{name} is truncated (the file ends part-way through the picture); {say.cut_short}"
            ) from None
        raise DecodeError(f"{name} is damaged ({reason}); {say.again}") from None
    except MemoryError:
        raise DecodeError(f"{name} is too large to decode in memory; {say.smaller}") from None


def _frames_note(img: Image.Image, fmt: str) -> list[str]:
    """A note when the file holds several images, of which only the first is edited."""
    frames = _frame_count(img)
    if frames <= 1 or fmt == "MPO":  # an MPO is a camera JPEG with its preview: one photograph
        return []
    what = f"an animated {fmt} of {frames} frames" if fmt in {"GIF", "PNG", "WEBP"} else f"a {fmt} of {frames} images"
    return [f"{what}: only the first is edited"]


def _orientation(
    img: Image.Image, exif: Image.Exif, tiff_orientation: Any, summary: dict[str, Any], notes: list[str]
) -> int:
    """The orientation to apply (1–8). An EXIF value outside 1–8 is ignored, and ``notes`` says so; a
    TIFF's own tag wins (``summary`` gets it); HEIF's rotation was applied by libheif already."""
    raw = exif.get(Base.Orientation, 1)
    orientation = _orientation_tag(raw)
    if not 1 <= orientation <= 8:
        notes.append(
            f"EXIF orientation {raw!s:.20} is not a valid value (1–8): ignored, the photo is edited "
            "as stored; check that it is upright"
        )
        orientation = 1
    if isinstance(tiff_orientation, int) and 1 <= tiff_orientation <= 8:
        summary["orientation"] = tiff_orientation
        return tiff_orientation
    if img.format == "HEIF":  # libheif applied the file's own rotation; pillow-heif keeps the tag for reference
        return int(img.info.get("original_orientation") or 1)
    return orientation


def _frame_count(img: Image.Image) -> int:
    try:
        return int(getattr(img, "n_frames", 1) or 1)
    except Exception:  # counting frames reads the file; a broken one is found by loading it
        return 1


def _orientation_tag(value: Any) -> int:
    """The EXIF orientation as a number (0 when it is not one: invalid, as 0 itself is)."""
    if isinstance(value, tuple) and value:
        value = value[0]
    try:
        return int(value) if value is not None else 1
    except (TypeError, ValueError):
        return 0


def _has_transparency(img: Image.Image) -> bool:
    """Whether the image has a pixel that is not fully opaque (an alpha channel of all 255 does not count)."""
    if img.mode in {"RGBA", "LA", "La", "RGBa", "PA"}:  # what _to_srgb flattens (_flatten_alpha)
        alpha = img.getchannel("A")
    elif img.mode == "P" and "transparency" in img.info:
        alpha = img.convert("RGBA").getchannel("A")
    else:
        return False
    low = alpha.getextrema()[0]  # one band: (min, max)
    return isinstance(low, int | float) and low < 255


def _fast_jpeg(img: Image.Image, data: bytes) -> np.ndarray | None:
    """An ordinary colour JPEG decoded by OpenCV (libjpeg-turbo) straight into numpy, or None.

    Pillow decodes as fast but then needs ~140 ms to hand a 24 MP image to numpy; OpenCV
    does not. Only for complete files (end-of-image marker present: OpenCV would fill a
    truncated file with grey where Pillow stops with an error) in plain YCbCr/RGB.
    """
    if img.format != "JPEG" or img.mode != "RGB" or b"\xff\xd9" not in data[-65536:]:
        return None
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    if array is None or array.shape != (img.size[1], img.size[0], 3):
        return None
    return array


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) to an H×W×3 array, as Pillow's ``exif_transpose`` does."""
    if orientation == 2:
        return cv2.flip(array, 1)
    if orientation == 3:
        return cv2.rotate(array, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(array, 0)
    if orientation == 5:
        return cv2.transpose(array)
    if orientation == 6:
        return cv2.rotate(array, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(array), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(array, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return array


def _read_profile(icc_profile: bytes) -> tuple[ImageCms.ImageCmsProfile | None, str]:
    """The embedded profile and its name for the report (None and why, when LittleCMS cannot read it)."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None, "unreadable profile (ignored, assumed sRGB)"
    try:
        description = (ImageCms.getProfileDescription(profile) or "").strip()
    except (ImageCms.PyCMSError, OSError, ValueError):  # a description tag that does not decode (fuzzed)
        description = ""
    return profile, description or "embedded profile"


def _decode_raw(data: bytes, *, photo_id: str, filename: str, name: str, max_pixels: int, say: _Advice) -> Frame:
    """Develop a camera RAW file with LibRaw: camera white balance, sRGB, 8 bits, upright."""
    import rawpy  # noqa: PLC0415 - LibRaw (0.07 s), only for RAW uploads

    suffix = PurePath(filename).suffix.lstrip(".").upper() or "RAW"
    try:
        raw = rawpy.imread(io.BytesIO(data))
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise DecodeError(
            f"{name} is not a camera RAW file this worker can read ({_short(exc)}); export it as JPEG or DNG"
        ) from None
    with raw:
        sizes = raw.sizes
        flip = int(getattr(sizes, "flip", 0) or 0)
        width, height = int(sizes.width), int(sizes.height)
        _check_size(name, width, height, max_pixels, say)
        try:
            array = raw.postprocess(
                use_camera_wb=True,
                output_color=rawpy.ColorSpace.sRGB,
                output_bps=8,
                no_auto_bright=False,
            )
        except (rawpy.LibRawError, OSError, ValueError) as exc:
            raise DecodeError(
                f"{name} is a damaged or unsupported RAW file ({_short(exc)}); export it as JPEG or DNG"
            ) from None
        except MemoryError:
            raise DecodeError(f"{name} is too large to develop in memory; {say.smaller}") from None
        exif = _raw_exif(data, raw)
    source = SourceInfo(
        format=f"RAW:{suffix}",
        width=width,
        height=height,
        orientation=_LIBRAW_FLIP_TO_EXIF.get(flip, 1),
        icc_profile="camera RAW → sRGB (LibRaw)",
        mode="RAW",
        bit_depth=16,
    )
    return _frame(array, photo_id=photo_id, filename=filename, source=source, summary=exif_summary(exif),
                  exif_bytes=exif.tobytes() if len(exif) else None)  # fmt: skip


def _raw_exif(data: bytes, raw: Any) -> Image.Exif:
    """The RAW file's EXIF: from its TIFF structure when it has one, else from its embedded preview.

    Only its photographic tags (:func:`worker.imaging.exif.photographic`) are carried: a RAW's IFD0 also
    holds its strip offsets, colour matrices and private DNG data, which mean nothing outside it.
    """
    full = Image.Exif()
    if data[:4] in {b"II*\x00", b"MM\x00*"}:
        try:
            full.load(data)
        except Exception:  # an IFD LibRaw can read but Pillow cannot: try the preview
            full = Image.Exif()
    if not len(full):
        try:
            thumb = raw.extract_thumb()
            if getattr(thumb.format, "name", "") == "JPEG":
                with Image.open(io.BytesIO(bytes(thumb.data))) as preview:
                    full = preview.getexif()
        except Exception:  # no preview, or an unreadable one: no EXIF, the photo still develops
            return Image.Exif()
    return photographic(full)


def _bit_depth(img: Image.Image) -> int:
    """Bits per sample in the file (Pillow opens 16-bit RGB as 8-bit ``RGB``; the tile still says 16)."""
    if img.mode in {"I", "F"}:
        return 32
    if img.mode in _SIXTEEN_BIT_MODES:
        return 16
    for tile in getattr(img, "tile", None) or ():
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and re.search(r";16[BLN]?$", rawmode):
            return 16
    bps = getattr(img, "tag_v2", {}).get(Base.BitsPerSample) if img.format == "TIFF" else None
    if isinstance(bps, tuple) and bps and int(bps[0]) > 8:
        return int(bps[0])
    return 8


def _exif_bytes(img: Image.Image, exif: Image.Exif) -> bytes | None:
    """The raw EXIF block to carry into the edited file (``Exif\\0\\0`` header stripped)."""
    raw = img.info.get("exif")
    if isinstance(raw, bytes) and raw:
        return raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    if len(exif):
        try:
            return exif.tobytes()
        except Exception:  # an EXIF block Pillow cannot write back is dropped, not fatal
            return None
    return None


def _declares_adobe_rgb(exif: Image.Exif) -> bool:
    """A DCF camera file in Adobe RGB: ColorSpace uncalibrated and interoperability index R03."""
    try:
        sub = exif.get_ifd(IFD.Exif)
        if sub.get(Base.ColorSpace) != 0xFFFF:
            return False
        interop = exif.get_ifd(IFD.Interop)
    except Exception:  # a malformed IFD: assume sRGB, the DCF default
        return False
    index = interop.get(Base.InteropIndex)
    if isinstance(index, bytes):
        index = index.decode("ascii", "replace")
    return isinstance(index, str) and index.strip("\x00 ") == "R03"


def _to_srgb(img: Image.Image, icc_profile: bytes | None) -> tuple[Image.Image, str | None]:
    """Any mode and profile → 8-bit sRGB ``RGB``. Returns the image and the source profile's name."""
    if img.mode in _SIXTEEN_BIT_MODES:
        img = _high_bit_grey_to_l(img)
    elif img.mode in {"LA", "La", "PA", "RGBA", "RGBa"} or (img.mode == "P" and "transparency" in img.info):
        img = _flatten_alpha(img)
    elif img.mode == "P":
        img = img.convert("RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode == "LAB":
        lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
        converted = ImageCms.profileToProfile(img, lab, _SRGB, outputMode="RGB")
        return (converted if converted is not None else img.convert("RGB")), "CIELAB"
    if icc_profile:
        profile, name = _read_profile(icc_profile)
        if profile is None:
            return img.convert("RGB"), name
        if img.mode == "RGB" and _is_srgb(name):
            return img, name
        try:
            if img.mode not in {"RGB", "CMYK", "L"}:
                img = img.convert("RGB")
            converted = ImageCms.profileToProfile(
                img,
                profile,
                _SRGB,
                renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                outputMode="RGB",
                flags=_CMS_FLAGS,
            )
            if converted is not None:
                return converted, name
        except (ImageCms.PyCMSError, OSError, ValueError):
            # A profile that does not match the pixels (an RGB profile on a CMYK file…) is ignored.
            return img.convert("RGB"), f"{name} (does not match the pixels; ignored)"
    return (img if img.mode == "RGB" else img.convert("RGB")), None


def _is_srgb(description: str) -> bool:
    text = description.lower().replace(" ", "")
    return text.startswith("srgb") and "linear" not in text


def _high_bit_grey_to_l(img: Image.Image) -> Image.Image:
    """16-bit (or 32-bit int / float) greyscale → 8-bit ``L``, scaled, not clipped."""
    arr = np.asarray(img, dtype=np.float32)
    if img.mode == "F":
        peak = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
    elif img.mode == "I":  # 32-bit integers say nothing of their range: 8-bit values, or 16-bit
        peak = 65535.0 if float(arr.max(initial=0)) > 255 else 255.0
    else:  # I;16*: 16-bit samples, however dark the photo (levels 100 and 200 are near black)
        peak = 65535.0
    scaled = np.nan_to_num(arr / peak * 255.0 + 0.5, nan=0.0)
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite over white, as a photo viewer shows a transparent area; keeps L or RGB."""
    grey = img.mode in {"LA", "La"}
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", img.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(background, rgba)
    return flat.convert("L" if grey else "RGB")


def _sniff(data: bytes) -> str | None:
    """A coarse file kind from the first bytes: enough to route RAW files and name non-photos."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "raw" if head[8:10] == b"CR" else "tiff"  # Canon CR2 is a TIFF with a CR marker
    if head.startswith((b"IIRO", b"IIRS", b"MMOR", b"IIU\x00", b"FUJIFILMCCD-RAW", b"FOVb")):
        return "raw"  # Olympus ORF, Panasonic RW2, Fujifilm RAF, Sigma X3F
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand == b"crx ":
            return "raw"  # Canon CR3
        if brand in {b"isom", b"iso2", b"mp41", b"mp42", b"qt  ", b"M4V ", b"3gp4", b"3gp5", b"avc1"}:
            return "video"
        return "isobmff"  # HEIF, AVIF
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"Rar!", b"7z\xbc\xaf")):
        return "archive"
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    if lowered.startswith(b"<svg") or (lowered.startswith(b"<?xml") and b"<svg" in data[:1024].lower()):
        return "svg"
    return None


_NOT_PHOTOS = {
    "video": "a video",
    "pdf": "a PDF document",
    "zip": "a ZIP archive",
    "archive": "a compressed archive",
    "html": "a web page (HTML, often an error page saved by a failed download)",
    "svg": "a vector drawing (SVG)",
}


def _looks_like_text(data: bytes) -> bool:
    sample = data[:4096]
    if b"\x00" in sample:
        return False
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * len(text)


def exif_summary(exif: Image.Exif) -> dict[str, Any]:
    """The fields a photographer looks for, JSON-able. GPS is reported as present/absent only."""
    try:
        sub = exif.get_ifd(IFD.Exif) if IFD.Exif in exif else {}
    except Exception:  # a malformed sub-IFD: summarise what IFD0 has
        sub = {}
    out: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            value = value.replace("\x00", "").strip()
            if not value:
                return
        out[key] = value

    put("make", exif.get(Base.Make))
    put("model", exif.get(Base.Model))
    lens = sub.get(Base.LensModel)
    put("lens", lens)
    put("lens_make", sub.get(Base.LensMake))
    put("focal_length_mm", _num(sub.get(Base.FocalLength)))
    put("aperture", _num(sub.get(Base.FNumber)))
    exposure = sub.get(Base.ExposureTime)
    if exposure is not None:
        seconds = _num(exposure)
        if seconds:
            put("shutter_s", seconds)
            put("shutter", f"1/{round(1 / seconds)}" if seconds < 1 else f"{seconds:g}s")
    iso = sub.get(Base.ISOSpeedRatings)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        put("iso", int(iso[0] if isinstance(iso, tuple) else iso) if iso else None)
    put("exposure_bias_ev", _num(sub.get(Base.ExposureBiasValue)))
    flash = sub.get(Base.Flash)
    if isinstance(flash, int):
        out["flash_fired"] = bool(flash & 1)
    put(
        "captured_at",
        _exif_time(
            sub.get(Base.DateTimeOriginal) or exif.get(Base.DateTime),
            sub.get(Base.SubsecTimeOriginal) if sub.get(Base.DateTimeOriginal) else None,
            sub.get(Base.OffsetTimeOriginal),
        ),
    )
    put("artist", exif.get(Base.Artist))
    put("copyright", exif.get(Base.Copyright))
    if Base.Orientation in exif:
        with contextlib.suppress(TypeError, ValueError):
            put("orientation", int(exif[Base.Orientation]))
    try:
        out["has_gps"] = bool(exif.get_ifd(IFD.GPSInfo)) if IFD.GPSInfo in exif else False
    except Exception:  # a GPS pointer we cannot follow still means the file carries a location
        out["has_gps"] = True
    return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, tuple) and len(value) == 2:
            value = Fraction(int(value[0]), int(value[1]))
        result = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return round(result, 6) if math.isfinite(result) else None


def _exif_time(value: Any, subsec: Any, offset: Any) -> str | None:
    """``2024:06:01 14:03:22`` (+ sub-seconds ``45``, + ``+02:00``) → ISO 8601."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or len(value.strip()) < 19:
        return None
    date, _, time = value.strip().partition(" ")
    parts = date.split(":")
    clock = time[:8].split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or parts[0] == "0000":
        return None
    if len(clock) != 3 or not all(c.isdigit() for c in clock):
        return None
    iso = f"{parts[0]}-{parts[1]}-{parts[2]}T{time[:8]}"
    if isinstance(subsec, bytes):
        subsec = subsec.decode("ascii", "replace")
    if isinstance(subsec, str) and subsec.strip("\x00 ").isdigit():
        iso += "." + subsec.strip("\x00 ")[:6]
    if isinstance(offset, bytes):
        offset = offset.decode("ascii", "replace")
    if isinstance(offset, str) and len(offset.strip("\x00 ")) == 6:
        iso += offset.strip("\x00 ")
    return iso


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__
