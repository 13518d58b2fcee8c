"""Pixels in and out: decode every upload format to upright sRGB, colour spaces, ICC profiles, EXIF, resizing."""
