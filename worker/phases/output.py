"""Phase 5 — output: encode the deliverables (full-resolution, web, thumbnail, watermarked) as JPEG.

Pure: the bytes land in ``frame.outputs`` (name → :class:`~worker.frame.Encoded`, each with its
content type) and the pipeline uploads them.

* ``edited`` — full resolution, ``EditSettings.jpeg_quality`` (4:4:4 chroma at 90 and above),
  sRGB profile embedded, the camera's photographic EXIF kept (``worker.imaging.exif``: not a TIFF's or
  RAW's own structure tags) with the orientation reset to 1 (the pixels are
  upright), the pixel size updated, colour space set to sRGB, the embedded EXIF thumbnail and the
  maker notes dropped (a stale preview and an opaque blob), and **GPS removed** unless
  ``EditSettings.keep_gps``.
* ``web`` — ``web_long_edge`` (2048) px, progressive, sRGB; only artist and copyright from EXIF.
* ``thumb`` — ``thumb_long_edge`` (400) px, progressive, sRGB, no EXIF.
* ``watermarked`` — the web image with the photographer's logo (``ctx.watermark``: a
  :class:`Watermark`, prepared once per job, or an RGBA array) at ``watermark_position`` and
  ``watermark_opacity``, when ``EditSettings.watermark`` asks for it.

Downscaling is high quality: area-filter halvings, then Lanczos-3 (``worker.imaging.resize.downscale``);
the thumbnail is made from the web image. The full-resolution encode runs in a second thread
while the smaller ones are made (libjpeg releases the GIL), so the three overlap on two cores.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage
from PIL import ImageCms
from PIL.ExifTags import IFD, Base

from worker.frame import Encoded, Frame
from worker.imaging import device as codec
from worker.imaging.exif import photographic
from worker.imaging.resize import downscale, halve_to
from worker.phases import PhaseContext
from worker.profile import EditSettings

NAME = "output"
CONTENT_TYPE = "image/jpeg"
WEB_QUALITY = 85
THUMB_QUALITY = 80
_SRGB_ICC: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
_MAX_EXIF = 65000  # a JPEG APP1 segment holds at most 65533 bytes

LOGO_WIDTH, LOGO_HEIGHT = 0.2, 0.15  # a watermark is at most this much of the image's width and height
VARIANTS: tuple[str, ...] = ("edited", "web", "thumb", "watermarked")
Pixels = npt.NDArray[Any]


def run(frames: list[Frame], ctx: PhaseContext) -> None:
    for frame in frames:
        outputs, notes = encode_all(frame, ctx.edit, ctx.watermark, device=ctx.models.codec_device)
        frame.outputs = outputs
        # The pipeline adds where each file went ("edited": key or path, …) once delivered.
        frame.report[NAME] = {
            "sizes": {
                name: {"width": enc.width, "height": enc.height, "bytes": len(enc.data)}
                for name, enc in outputs.items()
            },
            "gps_kept": bool(ctx.edit.keep_gps and frame.exif.get("has_gps")),
            **notes,
        }


def encode_all(
    frame: Frame, edit: EditSettings, watermark: Watermark | None = None, *, device: str | None = None
) -> tuple[dict[str, Encoded], dict[str, Any]]:
    """Every deliverable of ``frame``, and notes for the report: resized and encoded with torch on
    ``device`` (``ModelBundle.codec_device``: nvJPEG on a GPU) when given, else on the CPU."""
    if device is not None:
        return _encode_all_torch(frame, edit, watermark, device)
    image = frame.image
    h, w = image.shape[:2]
    exif = output_exif(frame.exif_bytes, keep_gps=edit.keep_gps, size=(w, h))
    notes: dict[str, Any] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="encode-full") as pool:
        edited = pool.submit(encode_jpeg, image, quality=edit.jpeg_quality, exif=exif)
        web_img = downscale(image, edit.web_long_edge)
        public_exif = public_exif_block(frame.exif_bytes)
        web = encode_jpeg(web_img, quality=WEB_QUALITY, progressive=True, exif=public_exif)
        thumb = encode_jpeg(downscale(web_img, edit.thumb_long_edge), quality=THUMB_QUALITY, progressive=True)
        outputs = {"edited": edited.result(), "web": web, "thumb": thumb}
    if edit.watermark:
        if watermark is None:
            notes["watermark"] = {
                "applied": False,
                "reason": "the job asked for a watermark but no logo was loaded",
            }
        else:
            marked, placed = apply_watermark(web_img, watermark, edit.watermark_position, edit.watermark_opacity)
            outputs["watermarked"] = encode_jpeg(marked, quality=WEB_QUALITY, progressive=True, exif=public_exif)
            notes["watermark"] = {"applied": True, **placed}
    return outputs, notes


def _encode_all_torch(
    frame: Frame, edit: EditSettings, watermark: Watermark | None, device: str
) -> tuple[dict[str, Encoded], dict[str, Any]]:
    """:func:`encode_all` on ``device``: the photo crosses to it once, the web and thumbnail copies are
    made there (antialiased bicubic) and the JPEGs encoded there, batched by quality; only the bytes
    come back. torchvision's encoder writes baseline JPEGs with 4:2:0 chroma at every quality (the
    CPU path: progressive web copies, 4:4:4 at 90 and above). The watermark is blended on the host,
    on the web copy (a 2048 px image), as in the CPU path."""
    h, w = frame.image.shape[:2]
    exif = output_exif(frame.exif_bytes, keep_gps=edit.keep_gps, size=(w, h))
    public_exif = public_exif_block(frame.exif_bytes)
    full = codec.to_device(frame.image, device)
    web = codec.downscale(full, edit.web_long_edge)
    images = {"edited": full, "web": web, "thumb": codec.downscale(web, edit.thumb_long_edge)}
    quality = {"edited": edit.jpeg_quality, "web": WEB_QUALITY, "thumb": THUMB_QUALITY, "watermarked": WEB_QUALITY}
    metadata = {"edited": exif, "web": public_exif, "thumb": None, "watermarked": public_exif}
    notes: dict[str, Any] = {}
    if edit.watermark:
        if watermark is None:
            notes["watermark"] = {"applied": False, "reason": "the job asked for a watermark but no logo was loaded"}
        else:
            marked, placed = apply_watermark(
                codec.to_host(web), watermark, edit.watermark_position, edit.watermark_opacity
            )
            images["watermarked"] = codec.to_device(marked, device)
            notes["watermark"] = {"applied": True, **placed}
    names = list(images)
    encoded = codec.encode_jpegs([images[n] for n in names], [quality[n] for n in names])
    outputs = {
        name: Encoded(
            with_metadata(data, metadata[name]), CONTENT_TYPE, int(images[name].shape[2]), int(images[name].shape[1])
        )
        for name, data in zip(names, encoded, strict=True)
    }
    return outputs, notes


def with_metadata(jpeg: bytes, exif: bytes | None) -> bytes:
    """``jpeg`` with the sRGB profile (and ``exif``) embedded, as every deliverable carries them."""
    segments = [_segment(0xE1, b"Exif\x00\x00" + exif)] if exif else []
    segments.append(_segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + _SRGB_ICC))
    return _insert_segments(jpeg, segments)


def encode_jpeg(image: Pixels, *, quality: int, progressive: bool = False, exif: bytes | None = None) -> Encoded:
    """JPEG bytes with the sRGB profile (and ``exif``) embedded.

    libjpeg-turbo through OpenCV: it reads the numpy array in place (handing a 24 MP image to
    Pillow costs a full copy first); the metadata segments are added here.
    """
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    params = [
        cv2.IMWRITE_JPEG_QUALITY, int(quality),
        cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444 if quality >= 90 else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    ]  # fmt: skip
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError("JPEG encoding failed")
    return Encoded(with_metadata(buf.tobytes(), exif), CONTENT_TYPE, pixels.shape[1], pixels.shape[0])


def _segment(marker: int, payload: bytes) -> bytes:
    if len(payload) + 2 > 0xFFFF:
        raise ValueError("JPEG segment too long")
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _insert_segments(jpeg: bytes, segments: list[bytes]) -> bytes:
    """Put APPn ``segments`` after SOI and the JFIF APP0 segment (where readers look for them)."""
    pos = 2  # after SOI
    if jpeg[2:4] == b"\xff\xe0":
        pos = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:pos] + b"".join(segments) + jpeg[pos:]


def _load_exif(exif_bytes: bytes | None) -> PILImage.Exif | None:
    if not exif_bytes:
        return None
    exif = PILImage.Exif()
    try:
        exif.load(exif_bytes)
        exif.get_ifd(IFD.Exif)  # parse the sub-IFDs now: a broken one drops the block, not the photo
        exif.get_ifd(IFD.GPSInfo)
    except Exception:  # an EXIF block Pillow cannot parse is dropped, never fatal
        return None
    return exif


def output_exif(exif_bytes: bytes | None, *, keep_gps: bool, size: tuple[int, int] | None = None) -> bytes | None:
    """The source's photographic EXIF (:func:`worker.imaging.exif.photographic`: no TIFF/RAW structure tags,
    EXIF thumbnail or maker note) for the edited file: orientation 1, sRGB, the new pixel size,
    and no GPS block unless ``keep_gps``."""
    source = _load_exif(exif_bytes)
    if source is None:
        return None
    exif = photographic(source, gps=keep_gps)
    if not len(exif):
        return None
    exif[Base.Orientation] = 1
    sub = exif.get(IFD.Exif)
    if sub:  # interop may have said "R03" (Adobe RGB) and is gone: the output is sRGB
        sub[Base.ColorSpace] = 1
        if size is not None:
            sub[Base.ExifImageWidth], sub[Base.ExifImageHeight] = size
    try:
        data = exif.tobytes()
        if len(data) > _MAX_EXIF and sub:
            sub.pop(Base.UserComment, None)
            data = exif.tobytes()
    except Exception:  # a value Pillow cannot write back: keep the photo, lose the block
        return None
    return data if len(data) <= _MAX_EXIF else None


def public_exif_block(exif_bytes: bytes | None) -> bytes | None:
    """Only the photographer's credit (artist, copyright) for the web copies; nothing else."""
    source = _load_exif(exif_bytes)
    if source is None:
        return None
    exif = PILImage.Exif()
    for tag in (Base.Artist, Base.Copyright):
        if source.get(tag):
            exif[tag] = source[tag]
    return exif.tobytes() if len(exif) else None


# --- watermark ---
class Watermark:
    """The photographer's logo, prepared once per job: premultiplied by its alpha (in float, so a faint
    edge keeps its colour) and, given ``largest`` (the long edge of the biggest image it will mark:
    the web size), kept only at about the largest size it can be drawn at. Each size it is drawn at
    is then scaled once from that small copy, however many sizes straightening and cropping make.

    Safe to share between the encode threads (two threads may scale the same size once each).
    """

    def __init__(self, logo: Pixels, largest: int | None = None) -> None:
        logo = np.asarray(logo)
        if logo.ndim == 2:
            logo = np.dstack([logo, logo, logo])
        if logo.shape[2] == 3:
            logo = np.dstack([logo, np.full(logo.shape[:2], 255, np.uint8)])
        logo = np.ascontiguousarray(logo, dtype=np.uint8)  # H×W×4 straight RGBA; not kept
        self.height, self.width = logo.shape[:2]
        alpha = logo[..., 3:4].astype(np.float32) / 255.0
        premultiplied = np.concatenate([logo[..., :3].astype(np.float32) * alpha, alpha * 255.0], axis=2)
        if largest:
            scale = min(LOGO_WIDTH * largest / self.width, LOGO_HEIGHT * largest / self.height, 1.0)
            premultiplied = halve_to(premultiplied, max(1, math.ceil(scale * max(self.width, self.height))))
        self._premultiplied: Pixels = np.ascontiguousarray(premultiplied)  # colour × alpha, alpha (0–255)
        self._scaled: dict[tuple[int, int], tuple[Pixels, Pixels]] = {}
        self._lock = threading.Lock()

    def scaled(self, width: int, height: int) -> tuple[Pixels, Pixels]:
        """The logo at ``width``×``height``: its alpha (0–1, before opacity) and its straight colour."""
        with self._lock:
            cached = self._scaled.get((width, height))
        if cached is not None:
            return cached
        small = self._premultiplied
        if small.shape[:2] != (height, width):
            # Lanczos per channel in float ("F" images): 8-bit premultiplied values would round a faint
            # edge's colour away (to black), and Pillow premultiplies RGBA by itself.
            lanczos = PILImage.Resampling.LANCZOS
            channels = [PILImage.fromarray(np.ascontiguousarray(small[..., c]), "F") for c in range(4)]
            small = np.dstack([np.asarray(ch.resize((width, height), lanczos)) for ch in channels])
        a = np.clip(small[..., 3:4], 0.0, 255.0)  # Lanczos rings a little past the ends
        alpha = a / 255.0
        colour = np.where(a > 0, np.clip(small[..., :3] / np.maximum(alpha, 1e-6), 0.0, 255.0), 0.0)
        with self._lock:
            return self._scaled.setdefault((width, height), (alpha, colour))


def _to_uint8(values: Pixels) -> Pixels:
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)


def apply_watermark(image: Pixels, mark: Watermark, position: str, opacity: float) -> tuple[Pixels, dict[str, Any]]:
    """``image`` with the logo ``mark`` (prepared once per job) blended in at ``position`` with ``opacity``.

    The logo is scaled (never up) to :data:`LOGO_WIDTH` of the image width, and at most :data:`LOGO_HEIGHT` of
    its height, with a margin of 3 % of the shorter side; alpha is premultiplied while
    resampling so its edges do not fringe.
    """
    h, w = image.shape[:2]
    lh, lw = mark.height, mark.width
    scale = min(LOGO_WIDTH * w / lw, LOGO_HEIGHT * h / lh, 1.0)
    tw, th = max(1, round(lw * scale)), max(1, round(lh * scale))
    alpha, colour = mark.scaled(tw, th)
    a = alpha * float(np.clip(opacity, 0.0, 1.0))
    margin = round(0.03 * min(h, w))
    x = {"left": margin, "right": w - tw - margin, "center": (w - tw) // 2}
    y = {"top": margin, "bottom": h - th - margin, "center": (h - th) // 2}
    vertical, _, horizontal = position.partition("-")
    x0 = max(0, x["center" if position == "center" else horizontal])
    y0 = max(0, y["center" if position == "center" else vertical])
    x1, y1 = min(w, x0 + tw), min(h, y0 + th)
    out = image.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    blend = region * (1.0 - a[: y1 - y0, : x1 - x0]) + colour[: y1 - y0, : x1 - x0] * a[: y1 - y0, : x1 - x0]
    out[y0:y1, x0:x1] = _to_uint8(blend)
    return out, {"position": position, "opacity": round(float(opacity), 3), "box": [x0, y0, x1, y1]}
