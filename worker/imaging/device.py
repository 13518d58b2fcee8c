"""Decode, resize and encode JPEGs with torch on the worker's device (the device path of issue 19).

On CUDA, ``torchvision.io.decode_jpeg``/``encode_jpeg`` run on nvJPEG: a batch of camera JPEGs is
decoded on the GPU and the deliverables are resized and encoded there, so only compressed bytes
cross the bus. The same functions run on the CPU (torchvision's libjpeg), which is how the tests
check this path against the CPU path (OpenCV, Pillow, LittleCMS) on a machine without a GPU.

What this path takes on, and what it leaves to the CPU decoder (``worker.imaging.decode``), is
decided per file by :func:`worker.imaging.decode.plan_jpeg`: complete RGB/YCbCr JPEGs that are
sRGB (an sRGB profile, none, or one LittleCMS cannot read) go to the device; every other file —
non-JPEG, CMYK or grey, a wide-gamut profile to convert, a file that fails the size checks or that
nvJPEG cannot read — is decoded by the CPU path, with its messages. Orientation, EXIF, the
source's description and the notes come from the same header reading in both paths.

The frame still holds a host ``numpy`` image (the phases run on numpy today), so on CUDA the
decoded photo is copied to the host once, and the output phase copies the edited photo to the
device once; the three encodes and both resizes then run there.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.io
from torchvision.io import ImageReadMode

from worker.errors import DecodeError
from worker.frame import Frame
from worker.imaging import decode as cpu
from worker.imaging.resize import fit_size
from worker.service import logs

log = logs.get("decode")
# torchvision 0.29 says its codec will move to TorchCodec (not installed on these boxes); it still works.
warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchVision", DeprecationWarning)

Outcome = Frame | DecodeError
# The pipeline decodes in its fetch threads and encodes in its delivery threads; nvJPEG calls on a GPU
# take turns (a few ms each), so no torchvision codec state is ever shared by two threads at once.
_CUDA_CODEC = threading.Lock()


def _turn(device: str) -> contextlib.AbstractContextManager[object]:
    return _CUDA_CODEC if device.startswith("cuda") else contextlib.nullcontext()


def decode_batch(
    items: Sequence[tuple[bytes, str, str]],
    *,
    device: str,
    max_pixels: int,
    origin: cpu.Origin = "upload",
) -> list[Outcome]:
    """Decode ``(data, photo_id, filename)`` items: the plain sRGB JPEGs in one batched torch call on
    ``device``, every other file (and any the batch cannot read) with the CPU decoder, one by one.

    Returns a frame or the :class:`DecodeError` the CPU decoder raised, per item, in order.
    """
    plans: list[cpu.JpegPlan | None] = [cpu.plan_jpeg(data, filename=name) for data, _, name in items]
    pixels: list[torch.Tensor | None] = [None] * len(items)
    chosen = [i for i, plan in enumerate(plans) if plan is not None and _fits(plan, max_pixels)]
    if chosen:
        for i, image in zip(chosen, _decode_jpegs([items[i][0] for i in chosen], device), strict=True):
            pixels[i] = image
    out: list[Outcome] = []
    for (data, photo_id, filename), plan, image in zip(items, plans, pixels, strict=True):
        if plan is not None and image is not None and tuple(image.shape) == (3, plan.source.height, plan.source.width):
            array = orient(image, plan.source.orientation).permute(1, 2, 0).contiguous().cpu().numpy()
            out.append(
                Frame(
                    photo_id=photo_id,
                    filename=filename,
                    image=array,
                    source=plan.source,
                    exif=dict(plan.summary),
                    exif_bytes=plan.exif_bytes,
                )
            )
            continue
        try:
            out.append(cpu.decode(data, photo_id=photo_id, filename=filename, max_pixels=max_pixels, origin=origin))
        except DecodeError as exc:
            out.append(exc)
    return out


def decode_one(
    data: bytes, *, photo_id: str, filename: str, device: str, max_pixels: int, origin: cpu.Origin = "upload"
) -> Frame:
    """:func:`decode_batch` of one file: its frame, or its :class:`DecodeError` raised."""
    (result,) = decode_batch([(data, photo_id, filename)], device=device, max_pixels=max_pixels, origin=origin)
    if isinstance(result, DecodeError):
        raise result
    return result


def _fits(plan: cpu.JpegPlan, max_pixels: int) -> bool:
    """Within the size checks (the CPU decoder raises the message for a file outside them)."""
    w, h = plan.source.width, plan.source.height
    return min(w, h) >= cpu.MIN_SIDE and w * h <= max_pixels


def _decode_jpegs(datas: list[bytes], device: str) -> list[torch.Tensor | None]:
    """C×H×W ``uint8`` RGB per file (None where this decoder cannot read it): one batched call, and
    file by file when the batch fails (one broken file must not send the others to the CPU)."""
    tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    try:
        with _turn(device):
            return list(torchvision.io.decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
    except (RuntimeError, ValueError) as exc:
        if len(tensors) > 1:
            log.info("device_decode_batch_failed", files=len(tensors), error=_short(exc))
    results: list[torch.Tensor | None] = []
    for tensor in tensors:
        try:
            with _turn(device):
                results.append(torchvision.io.decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
        except (RuntimeError, ValueError) as exc:
            log.info("device_decode_fell_back", error=_short(exc))
            results.append(None)
    return results


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation (1–8) to a C×H×W tensor, as Pillow's ``exif_transpose`` does."""
    if orientation == 2:
        return image.flip(2)
    if orientation == 3:
        return image.flip(1, 2)
    if orientation == 4:
        return image.flip(1)
    if orientation == 5:
        return image.transpose(1, 2)
    if orientation == 6:
        return image.transpose(1, 2).flip(2)
    if orientation == 7:
        return image.transpose(1, 2).flip(1, 2)
    if orientation == 8:
        return image.transpose(1, 2).flip(1)
    return image


# --- output ---
def to_device(image: np.ndarray, device: str) -> torch.Tensor:
    """An H×W×3 ``uint8`` array as a C×H×W tensor on ``device`` (a read-only array, as a phase may hand
    on a view, is copied first: torch shares memory with the arrays it wraps)."""
    array = np.ascontiguousarray(image, dtype=np.uint8)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array).to(device).permute(2, 0, 1)


def downscale(image: torch.Tensor, long_edge: int) -> torch.Tensor:
    """A C×H×W ``uint8`` copy with the longer side ``long_edge`` (never upscaled): antialiased bicubic
    (``F.interpolate(antialias=True)``, a prefilter as wide as the reduction, like Pillow's)."""
    _, h, w = image.shape
    tw, th = fit_size(w, h, long_edge)
    if (tw, th) == (w, h):
        return image
    small = F.interpolate(image[None].float(), size=(th, tw), mode="bicubic", antialias=True, align_corners=False)
    return small[0].add_(0.5).clamp_(0, 255).to(torch.uint8)


def encode_jpegs(images: list[torch.Tensor], qualities: list[int]) -> list[bytes]:
    """JPEG bytes of C×H×W ``uint8`` tensors (on one device): batched where they share a quality."""
    out: list[bytes | None] = [None] * len(images)
    for quality in sorted(set(qualities)):
        idx = [i for i, q in enumerate(qualities) if q == quality]
        with _turn(str(images[idx[0]].device)):
            encoded = torchvision.io.encode_jpeg([images[i].contiguous() for i in idx], quality=int(quality))
        for i, data in zip(idx, encoded, strict=True):
            out[i] = data.cpu().numpy().tobytes()
    return [data for data in out if data is not None]


def to_host(image: torch.Tensor) -> np.ndarray:
    """A C×H×W tensor as an H×W×3 ``uint8`` host array."""
    return image.permute(1, 2, 0).contiguous().cpu().numpy()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__
