"""Real photos for the benchmarks: ../shared/data (research use, never copied) and the wheels."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import SHARED_DATA
from worker.imaging import colour

SHARED = SHARED_DATA
WHEEL_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "china", "flower")


def wheel(name: str) -> np.ndarray:
    if name in {"china", "flower"}:
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(f"{name}.jpg"))
    if name == "grace_hopper":
        import matplotlib.cbook

        path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        return np.asarray(Image.open(str(path)).convert("RGB"))
    from skimage import data

    return np.asarray(getattr(data, name)())


def shared(*patterns: str) -> list[Path]:
    if not SHARED.is_dir():
        return []
    files: list[Path] = []
    for pattern in patterns:
        files.extend(sorted(SHARED.glob(pattern)))
    return files


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def named_photos(*patterns: str, wheels: bool = True) -> list[tuple[str, np.ndarray]]:
    """(name, RGB array) for every shared file matching ``patterns`` plus the wheel photos."""
    photos = [(p.stem, load(p)) for p in shared(*patterns)]
    if wheels:
        photos += [(n, wheel(n)) for n in (*WHEEL_PHOTOS, "grace_hopper")]
    return photos


def photo_24mp() -> np.ndarray:
    """A 6016×4000 (24 MP) photo: the full-resolution FiveK frame mirrored 2×2 (real detail at
    native resolution, not an upscale), with mild sensor-like noise; falls back to wheel photos."""
    path = SHARED / "pairs" / "fivek_fullres_deepupe_pytorch" / "before" / "a0015-DSC_0081.jpg"
    if path.is_file():
        base = np.asarray(Image.open(path).convert("RGB"))  # 3008×2000 portrait
        base = np.ascontiguousarray(np.rot90(base))  # landscape 3008 wide, 2000 high
    else:
        import cv2

        base = cv2.resize(wheel("china"), (3008, 2000), interpolation=cv2.INTER_CUBIC)
    top = np.concatenate([base, base[:, ::-1]], axis=1)
    mosaic = np.concatenate([top, top[::-1]], axis=0)
    rng = np.random.default_rng(0)
    noisy = mosaic.astype(np.int16) + rng.normal(0, 1.5, mosaic.shape).astype(np.int16)
    return np.ascontiguousarray(np.clip(noisy, 0, 255).astype(np.uint8))


def jpeg_bytes(array: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def timed(fn, repeat: int = 7) -> dict[str, float]:
    """Best and median wall time of ``fn()`` in milliseconds (first call is a warm-up)."""
    import time

    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return {"best_ms": round(min(samples), 1), "median_ms": round(float(np.median(samples)), 1)}


def exposed(img: np.ndarray, ev: float) -> np.ndarray:
    """``img`` (uint8 sRGB) with its exposure changed by ``ev`` stops, in linear light."""
    lin = colour.srgb_to_linear(img / 255.0) * 2.0**ev
    return np.round(colour.linear_to_srgb(np.clip(lin, 0.0, 1.0)) * 255).astype(np.uint8)
