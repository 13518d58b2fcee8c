"""Decode an uploaded file into a :class:`~worker.frame.Frame`: sRGB, upright, 8-bit RGB.

The first step of phase 0. Runs in the I/O thread pool (Pillow releases the
GIL while decoding). Every way a file can be unusable ends in a
:class:`~worker.errors.DecodeError` whose message a photographer can read.
"""

from __future__ import annotations

import io
import math
import warnings
from fractions import Fraction
from typing import Any

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from worker.errors import DecodeError
from worker.frame import Frame, SourceInfo

_SRGB = ImageCms.createProfile("sRGB")
MIN_SIDE = 16  # pixels: anything smaller is an icon or a broken export, not a photo

# EXIF tag ids (see the EXIF 2.32 spec).
_ORIENTATION = 0x0112
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_EXPOSURE_TIME, _FNUMBER, _ISO, _DATETIME_ORIGINAL = 0x829A, 0x829D, 0x8827, 0x9003
_FOCAL_LENGTH, _LENS_MODEL, _OFFSET_TIME_ORIGINAL = 0x920A, 0xA434, 0x9011


def decode(data: bytes, *, photo_id: str, filename: str, max_pixels: int) -> Frame:
    """Decode ``data`` to a frame, or raise :class:`DecodeError` saying why not."""
    if not data:
        raise DecodeError(f"{filename} is empty (0 bytes); upload the file again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None  # we check the size ourselves, with our own limit
            img: Image.Image = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise DecodeError(
                    f"{filename} is {width}×{height} ({width * height / 1e6:.0f} MP), over the "
                    f"{max_pixels / 1e6:.0f} MP limit; resize it or raise WORKER_MAX_IMAGE_PIXELS"
                )
            img.load()
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError(f"{filename} is not an image file this worker can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"{filename} is damaged or truncated ({_short(exc)}); upload it again") from None
    if min(width, height) < MIN_SIDE:
        raise DecodeError(
            f"{filename} is {width}×{height} pixels, too small to be a photo (under {MIN_SIDE} px); "
            "upload the full-size file"
        )

    source_mode = img.mode
    fmt = img.format or "unknown"
    exif = img.getexif()
    orientation = int(exif.get(_ORIENTATION, 1) or 1)
    exif_bytes = exif.tobytes() if len(exif) else None
    summary = exif_summary(exif)
    icc_name = None
    bit_depth = 16 if source_mode in {"I;16", "I;16B", "I;16L", "I", "RGB;16", "RGBA;16"} else 8

    img = ImageOps.exif_transpose(img)
    rgb, icc_name = _to_srgb(img, filename)
    array = np.asarray(rgb, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise DecodeError(f"{filename} decoded to an unexpected layout {array.shape}")
    return Frame(
        photo_id=photo_id,
        filename=filename,
        image=np.ascontiguousarray(array),
        source=SourceInfo(
            format=fmt,
            width=width,
            height=height,
            orientation=orientation if 1 <= orientation <= 8 else 1,
            icc_profile=icc_name,
            mode=source_mode,
            bit_depth=bit_depth,
        ),
        exif=summary,
        exif_bytes=exif_bytes,
    )


def _to_srgb(img: Image.Image, filename: str) -> tuple[Image.Image, str | None]:
    """Convert any mode to 8-bit RGB, through the embedded ICC profile when there is one."""
    icc = img.info.get("icc_profile")
    if img.mode in {"I;16", "I;16B", "I;16L", "I"}:
        # 16-bit greyscale: scale to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    name = None
    if icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            name = ImageCms.getProfileDescription(profile).strip() or "embedded"
            if img.mode not in {"RGB", "CMYK", "L"}:
                img = img.convert("RGB")
            out_mode = "RGB"
            converted = ImageCms.profileToProfile(
                img, profile, _SRGB, outputMode=out_mode, renderingIntent=ImageCms.Intent.PERCEPTUAL
            )
            if converted is not None:
                return converted, name
        except (ImageCms.PyCMSError, OSError, ValueError):
            name = "unreadable (ignored)"
    return img.convert("RGB"), name


def exif_summary(exif: Image.Exif) -> dict[str, Any]:
    """The fields a photographer looks for, JSON-able. GPS is reported as present/absent only."""
    sub = exif.get_ifd(_EXIF_IFD) if _EXIF_IFD in exif else {}
    out: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            value = value.strip("\x00 ").strip()
            if not value:
                return
        out[key] = value

    put("make", exif.get(_MAKE))
    put("model", exif.get(_MODEL))
    put("lens", sub.get(_LENS_MODEL))
    put("focal_length_mm", _num(sub.get(_FOCAL_LENGTH)))
    put("aperture", _num(sub.get(_FNUMBER)))
    exposure = sub.get(_EXPOSURE_TIME)
    if exposure is not None:
        seconds = _num(exposure)
        if seconds:
            put("shutter_s", seconds)
            put("shutter", f"1/{round(1 / seconds)}" if seconds < 1 else f"{seconds:g}s")
    iso = sub.get(_ISO)
    put("iso", int(iso[0] if isinstance(iso, tuple) else iso) if iso else None)
    put(
        "captured_at",
        _exif_time(sub.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME), sub.get(_OFFSET_TIME_ORIGINAL)),
    )
    put("orientation", int(exif.get(_ORIENTATION, 1) or 1))
    out["has_gps"] = bool(exif.get_ifd(_GPS_IFD)) if _GPS_IFD in exif else False
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


def _exif_time(value: Any, offset: Any) -> str | None:
    """``2024:06:01 14:03:22`` (+ ``+02:00``) → ISO 8601."""
    if not isinstance(value, str) or len(value) < 19:
        return None
    date, _, time = value.strip().partition(" ")
    parts = date.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or parts[0] == "0000":
        return None
    iso = f"{parts[0]}-{parts[1]}-{parts[2]}T{time[:8]}"
    if isinstance(offset, str) and len(offset.strip()) == 6:
        iso += offset.strip()
    return iso


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__
