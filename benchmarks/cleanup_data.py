"""The cleanup evaluation set: real sky photos, each with random synthetic power lines and without.

Wires are catenaries ``y = y0 - a·(cosh((x - xc)/a) - 1)`` (image y grows downwards)
spanning the frame, 1–6 px thick, dark grey to black (always darker than the sky they
cross), drawn anti-aliased at 4× supersampling; 1–4 per photo. Both versions (with and
without wires) are re-encoded as JPEG (quality 92), so the wires carry the same
compression as the photo around them.

Ground truth: a pixel is a *wire pixel* when the wire covers at least 10 % of it
(``WIRE_COVERAGE``). Photos are read from the wheels (scikit-image, scikit-learn) and from
``../shared/data`` (never copied into the repository).

Each photo has a hand-chosen sky band (fractions of its height) that the wires are drawn in;
the band is only used to place wires, never by the detector.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from benchmarks.common import SHARED_DATA

WIRE_COVERAGE = 0.1
SUPERSAMPLE = 4

# (source, path-or-name, sky band as fractions of the height where the wires go)
SKY_PHOTOS: tuple[tuple[str, str, tuple[float, float]], ...] = (
    ("skimage", "rocket", (0.03, 0.55)),
    ("sklearn", "china.jpg", (0.03, 0.35)),
    ("shared", "pairs/fivek_curl/before/a2917-jmac_DSC3800.png", (0.03, 0.50)),
    ("shared", "pairs/fivek_curl/before/a3102-JI2E4053.png", (0.03, 0.30)),
    ("shared", "pairs/fivek_curl/before/a3232-_DGW6397.png", (0.03, 0.30)),
    ("shared", "pairs/fivek_deeplpf/before/a4514-kme_0258.png", (0.03, 0.28)),
    ("shared", "pairs/fivek_deeplpf/before/a4759-Duggan_090305_5342.png", (0.03, 0.30)),
    ("shared", "pairs/fivek_deeplpf/before/a4783-20090321_at_19h16m32__MG_0220.png", (0.02, 0.12)),
    ("shared", "pairs/fivek_deeplpf/before/a4933-Duggan_090428_8040.png", (0.03, 0.40)),
    ("shared", "pairs/fivek_deeplpf_png/before/a4591-Duggan_080411_5940.png", (0.03, 0.35)),
    ("shared", "pairs/fivek_deeplpf_png/before/a4742-Duggan_090331_6517.png", (0.03, 0.45)),
    ("shared", "pairs/fivek_multi_expert_thumbs_no_input/expertC/a0001-jmac_DSC1459.jpg", (0.03, 0.30)),
    ("shared", "pairs/fivek_multi_expert_thumbs_no_input/expertC/a1384-dvf_095.jpg", (0.03, 0.45)),
)


@dataclass(frozen=True)
class Sample:
    name: str
    clean: np.ndarray  # H×W×3 uint8, JPEG round-tripped
    wired: np.ndarray  # the same photo with the wires, JPEG round-tripped
    coverage: np.ndarray  # H×W float32 in [0, 1]: how much of each pixel the wires cover
    n_wires: int
    widths: tuple[float, ...]

    @property
    def truth(self) -> np.ndarray:
        return self.coverage >= WIRE_COVERAGE


def load_photo(source: str, name: str, shared: Path = SHARED_DATA) -> np.ndarray:
    if source == "skimage":
        from skimage import data

        return np.ascontiguousarray(getattr(data, name)())
    if source == "sklearn":
        from sklearn.datasets import load_sample_image

        return np.ascontiguousarray(load_sample_image(name))
    with Image.open(shared / name) as im:
        return np.asarray(im.convert("RGB"))


def jpeg_roundtrip(image: np.ndarray, quality: int = 92) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def catenary(
    width: int, y_low: float, x_c: float, a: float, x_from: float = -0.05, x_to: float = 1.05, n: int = 200
) -> np.ndarray:
    """Points (x, y) of a hanging catenary with its lowest point at (x_c, y_low), spanning the frame."""
    xs = np.linspace(x_from * width, x_to * width, n)
    ys = y_low - a * (np.cosh((xs - x_c) / a) - 1.0)
    return np.stack([xs, ys], axis=1)


def wire_coverage(shape: tuple[int, int], points: np.ndarray, thickness: float) -> np.ndarray:
    """Anti-aliased coverage (0–1) of a polyline ``thickness`` px wide, by supersampling."""
    h, w = shape
    s = SUPERSAMPLE
    big = np.zeros((h * s, w * s), np.uint8)
    pts = np.round(points * s + (s - 1) / 2).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(big, [pts], False, 255, thickness=max(1, round(thickness * s)), lineType=cv2.LINE_8)
    small = cv2.resize(big.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)
    return np.clip(small, 0.0, 1.0)


def random_wires(
    image: np.ndarray, band: tuple[float, float], rng: np.random.Generator, n_wires: int | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Draw 1–4 random catenaries in the sky band; returns (wired image, coverage, widths)."""
    h, w = image.shape[:2]
    n = int(rng.integers(1, 5)) if n_wires is None else n_wires
    y_top, y_bot = band[0] * h, band[1] * h
    out = image.astype(np.float32)
    total = np.zeros((h, w), np.float32)
    widths: list[float] = []
    for _ in range(n):
        for _try in range(50):
            sag = rng.uniform(0.0, 0.08) * w  # drop from the higher end to the lowest point
            a = max(w * w / (8.0 * max(sag, 1.0)), 1.0)
            x_c = rng.uniform(-0.3, 1.3) * w
            y_low = rng.uniform(y_top, y_bot)
            pts = catenary(w, y_low, x_c, min(a, 1e6))
            inside = pts[(pts[:, 0] >= 0) & (pts[:, 0] < w), 1]
            if inside.size and inside.min() >= y_top - 2 and inside.max() <= y_bot:
                break
        thickness = float(rng.uniform(1.0, 6.0))
        cov = wire_coverage((h, w), pts, thickness)
        # Darker than the sky it crosses: grey level below 55 % of the sky's median brightness there.
        under = image[cov > 0.5].astype(np.float32)
        sky_level = float(np.median(under.mean(axis=1))) if under.size else 128.0
        top = min(90.0, 0.55 * sky_level)
        grey = float(rng.uniform(0.0, max(top, 1.0)))
        tint = rng.uniform(-4, 4, size=3)
        colour = np.clip(grey + tint, 0, 255).astype(np.float32)
        out = out * (1.0 - cov[..., None]) + colour[None, None, :] * cov[..., None]
        total = np.maximum(total, cov)
        widths.append(round(thickness, 2))
    return np.clip(np.round(out), 0, 255).astype(np.uint8), total, tuple(widths)


def sky_photos(shared: Path = SHARED_DATA) -> list[tuple[str, np.ndarray, tuple[float, float]]]:
    """The sky photos that exist on this machine: (name, image, band)."""
    out = []
    for source, name, band in SKY_PHOTOS:
        if source == "shared" and not (shared / name).is_file():
            continue
        out.append((Path(name).stem, load_photo(source, name, shared), band))
    return out


def build(seeds_per_photo: int = 4, seed: int = 0, shared: Path = SHARED_DATA) -> list[Sample]:
    """The synthetic set: ``seeds_per_photo`` wired versions of every sky photo, plus the clean one."""
    rng = np.random.default_rng(seed)
    samples: list[Sample] = []
    for name, photo, band in sky_photos(shared):
        clean = jpeg_roundtrip(photo)
        for k in range(seeds_per_photo):
            wired, cov, widths = random_wires(photo, band, rng)
            samples.append(Sample(f"{name}#{k}", clean, jpeg_roundtrip(wired), cov, len(widths), widths))
    return samples
