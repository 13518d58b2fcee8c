"""Files a photographer might upload, good and bad, generated from real photos that ship in wheels.

Used by the decode unit tests and the ``apelier-worker process`` acceptance test. Every
generator returns bytes; nothing is written into the repository.
"""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image

from worker.imaging import icc

# --- reference colour math, straight from the specifications (independent of worker.imaging.icc) -------------
# Adobe RGB (1998) Color Image Encoding, v2005-05, section 4.3.4.1: RGB → XYZ (D65), and gamma 563/256.
ADOBE_TO_XYZ = np.array([[0.57667, 0.18556, 0.18823], [0.29734, 0.62736, 0.07529], [0.02703, 0.07069, 0.99134]])
ADOBE_GAMMA = 563 / 256
# IEC 61966-2-1 (sRGB), XYZ (D65) → linear sRGB.
XYZ_TO_SRGB = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
# SMPTE EG 432-1 (Display P3 = DCI-P3 primaries, D65 white): RGB → XYZ.
P3_TO_XYZ = np.array([[0.4866, 0.2657, 0.1982], [0.2290, 0.6917, 0.0793], [0.0000, 0.0451, 1.0439]])
# ROMM RGB (ISO 22028-2) → XYZ (D50), and Bradford D50 → D65 (Lindbloom's published matrix).
PROPHOTO_TO_XYZ_D50 = np.array([[0.7977, 0.1352, 0.0313], [0.2880, 0.7119, 0.0001], [0.0, 0.0, 0.8249]])
BRADFORD_D50_TO_D65 = np.array(
    [
        [0.9555766, -0.0230393, 0.0631636],
        [-0.0282895, 1.0099416, 0.0210077],
        [0.0122982, -0.0204830, 1.3299098],
    ]
)


def srgb_decode(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    v = np.clip(linear, 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055) * 255.0


def reference_to_srgb(code_values: np.ndarray, space: str) -> np.ndarray:
    """8-bit code values in ``space`` → sRGB (float, 0–255), by the published matrices."""
    v = np.asarray(code_values, dtype=np.float64) / 255.0
    if space == "adobe":
        xyz = (v**ADOBE_GAMMA) @ ADOBE_TO_XYZ.T
    elif space == "p3":
        xyz = srgb_decode(code_values) @ P3_TO_XYZ.T
    elif space == "prophoto":
        xyz = (v**1.8) @ PROPHOTO_TO_XYZ_D50.T @ BRADFORD_D50_TO_D65.T
    else:
        raise ValueError(space)
    return srgb_encode(xyz @ XYZ_TO_SRGB.T)


def srgb_to_adobe_codes(rgb: np.ndarray) -> np.ndarray:
    """sRGB 8-bit → Adobe RGB 8-bit code values (so the photo looks natural once tagged Adobe RGB)."""
    xyz = srgb_decode(rgb) @ np.linalg.inv(XYZ_TO_SRGB).T
    lin = np.clip(xyz @ np.linalg.inv(ADOBE_TO_XYZ).T, 0, 1)
    return np.round(lin ** (1 / ADOBE_GAMMA) * 255).astype(np.uint8)


# --- photos ---
def wheel_photo(name: str) -> np.ndarray:
    """A real photo that ships in a wheel: astronaut, coffee, chelsea, rocket (skimage), china, flower."""
    if name in {"china", "flower"}:
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(f"{name}.jpg"))
    from skimage import data

    return np.asarray(getattr(data, name)())


def jpeg(array: np.ndarray, quality: int = 92, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def encode(array: np.ndarray | Image.Image, fmt: str, **kwargs: object) -> bytes:
    img = array if isinstance(array, Image.Image) else Image.fromarray(array)
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def exif_with(**tags: object) -> Image.Exif:
    names = {"orientation": 0x0112, "make": 0x010F, "model": 0x0110}
    exif = Image.Exif()
    for key, value in tags.items():
        exif[names[key]] = value
    return exif


def truncated_jpeg(photo: np.ndarray) -> bytes:
    data = jpeg(photo)
    return data[: len(data) * 6 // 10]


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A 1-bit greyscale PNG of ``width``×``height`` black pixels: tiny on disk, huge decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 500) for _ in range(height // 500)]
    parts.append(comp.compress(row * (height % 500)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def cmyk_jpeg(photo: np.ndarray) -> bytes:
    """Pillow writes CMYK JPEGs the way Photoshop does: inverted, with an Adobe APP14 marker."""
    data = encode(Image.fromarray(photo).convert("CMYK"), "JPEG", quality=95)
    assert b"Adobe" in data[:256]
    return data


def png16(photo: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", (photo.astype(np.uint16) * 257)[..., ::-1])
    assert ok
    return buf.tobytes()


def tiff16(photo: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".tiff", (photo.astype(np.uint16) * 257)[..., ::-1])
    assert ok
    return buf.tobytes()


def grey_jpeg(photo: np.ndarray) -> bytes:
    return encode(Image.fromarray(photo).convert("L"), "JPEG", quality=92)


def oriented_jpeg(upright: np.ndarray, orientation: int = 6) -> bytes:
    """Pixels stored as a camera held sideways stores them; the tag says how to turn them upright."""
    stored = {6: np.rot90(upright, 1), 8: np.rot90(upright, -1), 3: np.rot90(upright, 2)}[orientation]
    return jpeg(np.ascontiguousarray(stored), exif=exif_with(orientation=orientation, make="Canon"))


def adobe_rgb_jpeg(photo: np.ndarray) -> bytes:
    codes = srgb_to_adobe_codes(photo)
    return jpeg(codes, quality=95, icc_profile=icc.rgb_profile(icc.ADOBE_RGB), subsampling=0)


def heic(photo: np.ndarray, **kwargs: object) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return encode(photo, "HEIF", quality=90, **kwargs)


def panorama(width: int = 20000, height: int = 300) -> bytes:
    """Real photos side by side, each resized to ``height`` rows, cut to ``width`` columns."""
    strips = []
    for name in ("china", "coffee", "chelsea", "flower", "rocket", "astronaut"):
        img = wheel_photo(name)
        w = round(img.shape[1] * height / img.shape[0])
        strips.append(cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA))
    row = np.concatenate(strips, axis=1)
    reps = -(-width // row.shape[1])
    return jpeg(np.ascontiguousarray(np.tile(row, (1, reps, 1))[:, :width]), quality=90)


def linear_dng(photo: np.ndarray, orientation: int = 1) -> bytes:
    """A minimal linear DNG (demosaiced, camera space = linear sRGB) holding ``photo``."""
    h, w = photo.shape[:2]
    linear = np.round(srgb_decode(photo) * 65535).astype("<u2")
    pixels = linear.tobytes()
    srgb_to_xyz = np.linalg.inv(XYZ_TO_SRGB)
    xyz_to_cam = np.linalg.inv(srgb_to_xyz)
    entries: list[tuple[int, int, int, bytes]] = []  # tag, type, count, payload

    def short(tag: int, *values: int) -> None:
        entries.append((tag, 3, len(values), struct.pack(f"<{len(values)}H", *values)))

    def long(tag: int, *values: int) -> None:
        entries.append((tag, 4, len(values), struct.pack(f"<{len(values)}I", *values)))

    def byte(tag: int, *values: int) -> None:
        entries.append((tag, 1, len(values), bytes(values)))

    def ascii_(tag: int, text: str) -> None:
        payload = text.encode() + b"\0"
        entries.append((tag, 2, len(payload), payload))

    def srational(tag: int, values: list[float]) -> None:
        payload = b"".join(struct.pack("<ii", round(v * 10000), 10000) for v in values)
        entries.append((tag, 10, len(values), payload))

    def rational(tag: int, values: list[float]) -> None:
        payload = b"".join(struct.pack("<II", round(v * 10000), 10000) for v in values)
        entries.append((tag, 5, len(values), payload))

    long(254, 0)
    long(256, w)
    long(257, h)
    short(258, 16, 16, 16)
    short(259, 1)
    short(262, 34892)  # LinearRaw
    ascii_(271, "Apelier")
    ascii_(272, "Test Linear DNG")
    long(273, 0)  # patched below
    short(274, orientation)
    short(277, 3)
    long(278, h)
    long(279, len(pixels))
    short(284, 1)
    byte(50706, 1, 4, 0, 0)
    byte(50707, 1, 1, 0, 0)
    ascii_(50708, "Apelier Test")
    long(50717, 65535)
    srational(50721, list(xyz_to_cam.ravel()))
    rational(50728, [1.0, 1.0, 1.0])
    short(50778, 21)  # D65
    entries.sort(key=lambda e: e[0])

    ifd_offset = 8
    ifd_size = 2 + 12 * len(entries) + 4
    extra_offset = ifd_offset + ifd_size
    extra = b""
    records: list[tuple[int, int, int, bytes]] = []
    for tag, kind, count, payload in entries:
        if len(payload) <= 4:
            records.append((tag, kind, count, payload.ljust(4, b"\0")))
        else:
            records.append((tag, kind, count, struct.pack("<I", extra_offset + len(extra))))
            extra += payload + (b"\0" if len(payload) % 2 else b"")
    pixel_offset = extra_offset + len(extra)
    ifd = struct.pack("<H", len(records))
    for tag, kind, count, value in records:
        field = struct.pack("<I", pixel_offset) if tag == 273 else value
        ifd += struct.pack("<HHI", tag, kind, count) + field
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + extra + pixels
