"""Which EXIF tags describe the photograph (and travel into the edited file) and which describe the source file.

A source file's IFD0 also describes its own container: a TIFF or RAW lists its strips, compression,
sample size and planar layout there, and pointers (the interoperability IFD, a maker note's
offsets) lead to places in that file only. None of it is true of the JPEG the worker writes, so
only the tags below are kept, whatever the source format. Tag ids come from Pillow
(:class:`PIL.ExifTags.Base`, :class:`PIL.ExifTags.IFD`).
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from PIL.ExifTags import IFD, Base

# IFD0: who made the photo, with what, when, which way up, and at what print density (the pixels
# per inch a photographer exported at: print labs and layout software size the print from it).
PHOTO_TAGS: tuple[int, ...] = (
    Base.Make,
    Base.Model,
    Base.DateTime,
    Base.ImageDescription,
    Base.Artist,
    Base.Copyright,
    Base.Orientation,
    Base.XResolution,
    Base.YResolution,
    Base.ResolutionUnit,
)
# Dropped from the EXIF sub-IFD: an opaque camera blob whose offsets point into the source file,
# and the pointer to the source's interoperability IFD.
_NOT_PHOTO_SUB_TAGS = (Base.MakerNote, IFD.Interop)


def photographic(exif: Image.Exif, *, gps: bool = True) -> Image.Exif:
    """A new EXIF block with the photographic tags of ``exif``: IFD0's :data:`PHOTO_TAGS`, the EXIF
    sub-IFD (lens, exposure, times) without the maker note, and the GPS sub-IFD when ``gps``."""
    clean = Image.Exif()
    for tag in PHOTO_TAGS:
        if tag in exif:
            clean[tag] = exif[tag]
    sub = _sub_ifd(exif, IFD.Exif)
    for tag in _NOT_PHOTO_SUB_TAGS:
        sub.pop(tag, None)
    if sub:
        clean[IFD.Exif] = sub
    location = _sub_ifd(exif, IFD.GPSInfo) if gps else {}
    if location:
        clean[IFD.GPSInfo] = location
    return clean


def _sub_ifd(exif: Image.Exif, ifd: IFD) -> dict[int, Any]:
    try:
        return dict(exif.get_ifd(ifd)) if ifd in exif else {}
    except Exception:  # an unreadable sub-IFD is left out
        return {}
