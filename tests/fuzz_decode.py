"""Fuzzing the decoder: real photo files of every upload format, mutated by a seeded RNG.

Case ``i`` of seed ``s`` is the same bytes on every machine (``random.Random(f"{s}:{i}")``), so a
failure is replayed alone: ``python -m tests.fuzz_decode --seed S --only I``. Each case must end,
within :data:`CASE_LIMIT_S`, as a frame (upright 8-bit RGB, within the pixel limit) or as a
:class:`~worker.errors.DecodeError` — a per-photo failure with a one-line reason — and the cases
together may not raise the process's peak memory past :data:`MEMORY_BUDGET_MB`. Anything else
(another exception, a failure only ``decode``'s safety net caught, a crash of a native library, a
hang, memory beyond the pixel limit) is what the fuzzing is for.

Run in a child process (``run_child``) by ``tests/unit/test_decode_fuzz.py`` (a few hundred cases)
and ``benchmarks/decode_fuzz.py`` (thousands): a crash in a native decoder then kills the child,
not the test run, and the child's peak memory is its own.

    python -m tests.fuzz_decode --cases 300 --seed 1     # JSON on stdout
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

# The limit the decoder is given: the seeds are ~20 kP, so anything the mutations blow up past this
# (a header that says 60000×60000) must be refused from the header, never allocated.
MAX_PIXELS = 2_000_000
CASE_LIMIT_S = 20.0  # one case's decode, however slow the machine: beyond it is a hang
# Peak memory the cases may add to the child's (RSS, after the seeds were decoded once): a few copies
# of the largest frame the limit allows, and slack for the allocator.
MEMORY_BUDGET_MB = MAX_PIXELS * 3 * 8 / 2**20 + 150


@dataclass(frozen=True)
class Seed:
    name: str  # what it is, for the report
    filename: str  # the name it is decoded under (the extension routes RAW files)
    data: bytes


def seeds() -> list[Seed]:
    """Small real photos in every format the worker reads, with the features that have their own code
    paths: EXIF orientation, ICC profile, alpha, 16 bits, progressive JPEG, animation, RAW, HEIC."""
    from tests import photo_files as pf

    photo = cv2.resize(pf.wheel_photo("coffee"), (160, 120), interpolation=cv2.INTER_AREA)
    face = cv2.resize(pf.wheel_photo("astronaut"), (128, 128), interpolation=cv2.INTER_AREA)
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:30, :30, 3] = 0
    frames = [Image.fromarray(np.roll(photo, 20 * i, axis=1)).quantize(32) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    found = [
        Seed("jpeg", "a.jpg", pf.jpeg(photo)),
        Seed("jpeg-exif-orientation", "b.jpg", pf.oriented_jpeg(face, 6)),
        Seed("jpeg-progressive", "c.jpg", pf.jpeg(photo, progressive=True)),
        Seed("jpeg-adobe-rgb", "d.jpg", pf.adobe_rgb_jpeg(photo)),
        Seed("jpeg-cmyk", "e.jpg", pf.cmyk_jpeg(photo)),
        Seed("png", "f.png", pf.encode(photo, "PNG")),
        Seed("png-alpha", "g.png", pf.encode(rgba, "PNG")),
        Seed("png-16bit", "h.png", pf.png16(photo)),
        Seed("tiff-16bit", "i.tif", pf.tiff16(photo)),
        Seed("tiff-lzw", "j.tif", pf.encode(photo, "TIFF", compression="tiff_lzw")),
        Seed("gif-animated", "k.gif", gif.getvalue()),
        Seed("webp", "l.webp", pf.encode(photo, "WEBP", quality=80)),
        Seed("bmp", "m.bmp", pf.encode(photo, "BMP")),
        Seed("heic", "n.heic", pf.heic(photo)),
        Seed("dng", "o.dng", pf.linear_dng(face)),
    ]
    return found


# -- mutations: each takes the bytes and the case's RNG ------------------------------------------------
def _flip_bits(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 4, 16, 64))):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _random_run(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    start = rng.randrange(len(out))
    length = min(len(out) - start, rng.choice((1, 4, 16, 256, 4096)))
    out[start : start + length] = rng.randbytes(length)
    return bytes(out)


def _header_values(data: bytes, rng: random.Random) -> bytes:
    """Sizes, offsets and counts live in the first bytes: set some 16/32-bit fields there to extremes."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 3))):
        width = rng.choice((2, 4))
        i = rng.randrange(max(1, min(len(out), 600) - width))
        value = rng.choice((0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(8 * width)))
        out[i : i + width] = (value & ((1 << 8 * width) - 1)).to_bytes(width, rng.choice(("big", "little")))
    return bytes(out)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def _insert(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.randbytes(rng.choice((1, 3, 64, 1024))) + data[i:]


def _delete(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.choice((1, 4, 64, 2048)) :]


def _repeat(data: bytes, rng: random.Random) -> bytes:
    """A piece of the file again (a marker, a chunk, an IFD entry) somewhere else."""
    i = rng.randrange(len(data))
    piece = data[i : i + rng.choice((2, 16, 256, 4096))]
    j = rng.randrange(len(data) + 1)
    return data[:j] + piece * rng.choice((1, 2, 50)) + data[j:]


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _fix_png_crcs(data: bytes) -> bytes:
    """Every chunk's CRC made right again, as far as the chunk lengths still hold: without it almost any
    change to a PNG stops at the first CRC check, and the decompressor behind it is never reached."""
    out = bytearray(data)
    at = len(PNG_SIGNATURE)
    while at + 12 <= len(out):
        length = int.from_bytes(out[at : at + 4], "big")
        end = at + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = zlib.crc32(out[at + 4 : end]).to_bytes(4, "big")
        at = end + 4
    return bytes(out)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def _png_pixels(data: bytes, rng: random.Random) -> bytes:
    """The PNG's pixel stream (filter bytes and samples) decompressed, mutated and compressed again, so
    the unfiltering and the sample layout are reached with a valid zlib stream and valid CRCs."""
    chunks, at = [], len(PNG_SIGNATURE)
    while at + 12 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        chunks.append((data[at + 4 : at + 8], data[at + 8 : at + 8 + length]))
        at += 12 + length
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    raw = rng.choice((_flip_bits, _random_run, _truncate, _insert, _delete))(raw, rng)
    out, wrote = [PNG_SIGNATURE], False
    for kind, body in chunks:
        if kind != b"IDAT":
            out.append(_png_chunk(kind, body))
        elif not wrote:
            out.append(_png_chunk(b"IDAT", zlib.compress(raw)))
            wrote = True
    return b"".join(out)


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "flip_bits": _flip_bits,
    "random_run": _random_run,
    "header_values": _header_values,
    "truncate": _truncate,
    "insert": _insert,
    "delete": _delete,
    "repeat": _repeat,
}


def case(seed: int, index: int, pool: list[Seed]) -> tuple[Seed, list[str], bytes]:
    """Case ``index`` of ``seed``: which file, which mutations (one to three, in order), the bytes."""
    rng = random.Random(f"{seed}:{index}")
    source = rng.choice(pool)
    names = [rng.choice(list(MUTATIONS)) for _ in range(rng.choice((1, 1, 2, 3)))]
    data = source.data
    for name in names:
        data = MUTATIONS[name](data, rng) if data else data
    if data.startswith(PNG_SIGNATURE) and rng.random() < 0.7:  # past the CRC check, into the decompressor
        data, names = _fix_png_crcs(data), [*names, "crc fixed"]
    if source.data.startswith(PNG_SIGNATURE) and rng.random() < 0.3:  # into the filters and the pixel layout
        data, names = _png_pixels(source.data, rng), ["png pixels"]
    if rng.random() < 0.05:  # a file named for another format (RAW routing goes by the extension)
        other = rng.choice(pool)
        return Seed(source.name, other.filename, source.data), [*names, f"named {other.filename}"], data
    return source, names, data


# -- running -------------------------------------------------------------------------------------------
def _check_frame(frame: Any, max_pixels: int) -> str | None:
    """What is wrong with a decoded frame, or None."""
    image = frame.image
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        return f"decoded to {image.dtype} {image.shape}, not H×W×3 uint8"
    if image.shape[0] * image.shape[1] > max_pixels:
        return f"decoded {image.shape[1]}×{image.shape[0]}, over the {max_pixels}-pixel limit"
    if not image.flags.c_contiguous:
        return "not C-contiguous"
    return None


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def run_cases(seed: int, cases: int, *, only: int | None = None, max_pixels: int = MAX_PIXELS) -> dict[str, Any]:
    """Decode the cases here, one after another; a summary (the problems listed in full)."""
    from worker.errors import DecodeError, PhotoError, classify
    from worker.imaging.decode import decode

    pool = seeds()
    for s in pool:  # warm up every code path once, so the peak below is the cases' own
        decode(s.data, photo_id="warm", filename=s.filename, max_pixels=max_pixels)
    base_rss = _peak_rss_mb()
    current: dict[str, Any] = {}
    done = threading.Event()

    def watchdog() -> None:  # a decoder stuck in C with the GIL released: say which case, then stop
        while not done.wait(1.0):
            started = current.get("started")
            if started is not None and time.monotonic() - started > CASE_LIMIT_S:
                print(json.dumps({"hung": current.get("case")}), flush=True)
                os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    outcomes = {"decoded": 0, "refused": 0}
    by_seed: dict[str, dict[str, int]] = {}
    problems: list[dict[str, Any]] = []
    slowest = (0.0, -1)
    reasons: dict[str, int] = {}
    indices = [only] if only is not None else list(range(cases))
    for index in indices:
        source, names, data = case(seed, index, pool)
        where = {"case": index, "seed": seed, "file": source.name, "mutations": names}
        print(json.dumps(where), file=sys.stderr, flush=True)  # the last line names the case a crash killed
        current.update(case=where, started=time.monotonic())
        t0 = time.perf_counter()
        outcome = "refused"
        try:
            frame = decode(data, photo_id=f"fuzz-{index}", filename=source.filename, max_pixels=max_pixels)
        except DecodeError as exc:
            failure = classify(exc)
            if not isinstance(exc, PhotoError) or failure.scope != "photo" or not exc.message.strip():
                problems.append({**where, "problem": f"DecodeError that is not a per-photo failure: {failure}"})
            elif "\n" in exc.message:
                problems.append({**where, "problem": f"reason of several lines: {exc.message!r}"})
            elif exc.__cause__ is not None:  # decode's safety net: a failure nobody foresaw, worth a reason of its own
                problems.append({**where, "problem": f"unforeseen, caught by decode's safety net: {exc.message}"})
            key = exc.message.split(" ", 2)[-1][:48]  # the reason without the file name
            reasons[key] = reasons.get(key, 0) + 1
        except Exception as exc:  # the finding: the worker would see an internal error, not a photo's
            problems.append({**where, "problem": f"{type(exc).__module__}.{type(exc).__name__}: {exc!s:.200}"})
            outcome = "other exception"
        else:
            outcome = "decoded"
            wrong = _check_frame(frame, max_pixels)
            if wrong:
                problems.append({**where, "problem": wrong})
        elapsed = time.perf_counter() - t0
        current["started"] = None
        slowest = max(slowest, (elapsed, index))
        if outcome in outcomes:
            outcomes[outcome] += 1
        by_seed.setdefault(source.name, {"decoded": 0, "refused": 0})
        if outcome in by_seed[source.name]:
            by_seed[source.name][outcome] += 1
    done.set()
    return {
        "seed": seed,
        "cases": len(indices),
        "max_pixels": max_pixels,
        **outcomes,
        "by_file": by_seed,
        "problems": problems,
        "slowest_case_s": round(slowest[0], 3),
        "slowest_case": slowest[1],
        "peak_rss_growth_mb": round(_peak_rss_mb() - base_rss, 1),
        "memory_budget_mb": round(MEMORY_BUDGET_MB, 1),
        "top_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:12]),
    }


def run_child(seed: int, cases: int, *, timeout_s: float) -> dict[str, Any]:
    """:func:`run_cases` in a fresh interpreter. A crash or a hang there is reported, with its case."""
    command = [sys.executable, "-m", "tests.fuzz_decode", "--seed", str(seed), "--cases", str(cases)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENCV_LOG_LEVEL": "ERROR"}
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or "").strip().splitlines()
        return {"crashed": f"no answer in {timeout_s:.0f} s", "last_case": tail[-1] if tail else None}
    lines = child.stderr.strip().splitlines()
    if child.returncode != 0:  # a signal (negative) or the watchdog's 3: the last case it started is the one
        last = lines[-1] if lines else None
        return {"crashed": f"exit status {child.returncode}", "last_case": last, "stdout": child.stdout[-2000:]}
    result: dict[str, Any] = json.loads(child.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--only", type=int, help="replay this one case")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    print(json.dumps(run_cases(args.seed, args.cases, only=args.only)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
