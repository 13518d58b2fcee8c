"""Phase 5 — output: encode the deliverables (full-resolution, web, thumbnail) as JPEG bytes.

Pure: the bytes land in ``frame.outputs`` and the pipeline uploads them. Every
file is sRGB with the profile embedded, so browsers and print labs agree on
colour; the edited file keeps the camera's EXIF with the orientation reset
(the pixels are already upright) and GPS removed unless the profile keeps it.
"""

from __future__ import annotations

import io
from typing import cast

import cv2
from PIL import Image as PILImage
from PIL import ImageCms

from worker.frame import Encoded, Frame, Image
from worker.phases import PhaseContext
from worker.profile import EditSettings

NAME = "output"
_SRGB_ICC: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
_ORIENTATION, _GPS_IFD = 0x0112, 0x8825

VARIANTS: tuple[str, ...] = ("edited", "web", "thumb")


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    for frame in frames:
        frame.outputs = encode_all(frame, ctx.edit)
        # The pipeline adds where each file went ("edited": key or path, …) once delivered.
        frame.report[NAME] = {
            "sizes": {
                name: {"width": enc.width, "height": enc.height, "bytes": len(enc.data)}
                for name, enc in frame.outputs.items()
            }
        }


def encode_all(frame: Frame, edit: EditSettings) -> dict[str, Encoded]:
    exif = output_exif(frame.exif_bytes, keep_gps=edit.keep_gps)
    edited = encode_jpeg(frame.image, quality=edit.jpeg_quality, exif=exif)
    web_img = resize_long_edge(frame.image, edit.web_long_edge)
    web = encode_jpeg(web_img, quality=85, progressive=True)
    thumb_img = resize_long_edge(web_img, edit.thumb_long_edge)
    thumb = encode_jpeg(thumb_img, quality=80, progressive=True)
    return {"edited": edited, "web": web, "thumb": thumb}


def resize_long_edge(image: Image, long_edge: int) -> Image:
    """Downscale so the longer side is ``long_edge`` (area-averaging: no aliasing); never upscale."""
    h, w = image.shape[:2]
    if max(h, w) <= long_edge:
        return image
    scale = long_edge / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cast(Image, cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def encode_jpeg(image: Image, *, quality: int, progressive: bool = False, exif: bytes | None = None) -> Encoded:
    pil = PILImage.fromarray(image, "RGB")
    buf = io.BytesIO()
    kwargs: dict[str, object] = {
        "quality": quality,
        "icc_profile": _SRGB_ICC,
        "optimize": False,
        "progressive": progressive,
        "subsampling": "4:4:4" if quality >= 90 else "4:2:0",
    }
    if exif:
        kwargs["exif"] = exif
    pil.save(buf, "JPEG", **kwargs)
    return Encoded(buf.getvalue(), "image/jpeg", pil.width, pil.height)


def output_exif(exif_bytes: bytes | None, *, keep_gps: bool) -> bytes | None:
    """The source EXIF with orientation reset to 1 and, unless ``keep_gps``, no GPS block."""
    if not exif_bytes:
        return None
    exif = PILImage.Exif()
    try:
        exif.load(exif_bytes)
    except (OSError, ValueError, SyntaxError):
        return None
    exif[_ORIENTATION] = 1
    if not keep_gps and _GPS_IFD in exif:
        del exif[_GPS_IFD]
    return exif.tobytes()
