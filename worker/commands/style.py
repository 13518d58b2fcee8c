"""``apelier-worker style …``: train, apply, evaluate and export a photographer's look on local files.

::

    apelier-worker style train PAIRS_DIR --out MODEL [--epochs N] [--device auto|cpu|cuda]
                                         [--method lut3d|histogram] [--preset PRESET]
    apelier-worker style preset PRESET.xmp|.lrtemplate [--out MODEL] [--cube look.cube] [--title TITLE]
    apelier-worker style apply MODEL INPUT... --out DIR [--device …]
    apelier-worker style eval MODEL PAIRS_DIR            (JSON on stdout)
    apelier-worker style export-cube MODEL --out look.cube [--like PHOTO] [--title TITLE]

``PAIRS_DIR`` holds ``before/`` and ``after/``; files pair up by name (the
extension may differ: ``before/a.jpg`` ↔ ``after/a.png``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from worker.errors import WorkerError
from worker.service import logs
from worker.service import progress as progress_bar
from worker.service.config import Settings
from worker.style import preset as style_preset
from worker.style.cube import write_cube
from worker.style.metrics import delta_e2000, psnr
from worker.style.preset import PresetSettings


def add_parser(sub: Any) -> None:
    """Register the ``style`` command group on the main parser's subparsers."""
    style = sub.add_parser("style", help="train, apply, evaluate or export a learned look")
    ssub = style.add_subparsers(dest="style_command", required=True, metavar="STYLE_COMMAND")

    p = ssub.add_parser("train", help="learn a look from before/after pairs")
    p.add_argument("pairs_dir", type=Path, help="folder with before/ and after/ (matching file names)")
    p.add_argument("--out", required=True, type=Path, help="model file to write")
    p.add_argument("--epochs", type=int, help="training epochs (default: about 600 optimiser steps)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override WORKER_DEVICE")
    p.add_argument(
        "--method",
        choices=("lut3d", "histogram"),
        default="lut3d",
        help="lut3d (pairs, default) or histogram (uses only after/ as references)",
    )
    p.add_argument("--preset", type=Path, help="a Lightroom preset (.xmp/.lrtemplate) the pairs refine (lut3d)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = ssub.add_parser("preset", help="turn a Lightroom preset into a style model and/or a .cube LUT")
    p.add_argument("preset", type=Path, help=".xmp or .lrtemplate develop preset")
    p.add_argument("--out", type=Path, help="style model file to write")
    p.add_argument("--cube", type=Path, help=".cube file to write")
    p.add_argument("--title", default=None, help="TITLE line of the .cube file (default: the preset's name)")
    p.set_defaults(func=cmd_preset)

    p = ssub.add_parser("apply", help="apply a look to photos")
    p.add_argument("model", type=Path)
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override WORKER_DEVICE")
    p.set_defaults(func=cmd_apply)

    p = ssub.add_parser("eval", help="PSNR and ΔE2000 of a look on pairs, as JSON")
    p.add_argument("model", type=Path)
    p.add_argument("pairs_dir", type=Path)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override WORKER_DEVICE")
    p.set_defaults(func=cmd_eval)

    p = ssub.add_parser("export-cube", help="write the look as a .cube 3D LUT")
    p.add_argument("model", type=Path)
    p.add_argument("--out", required=True, type=Path, help=".cube file to write")
    p.add_argument("--like", type=Path, help="export the LUT this photo gets (default: an average photo)")
    p.add_argument("--title", default=None, help="TITLE line of the .cube file")
    p.set_defaults(func=cmd_export_cube)


def read_image(path: Path, max_pixels: int) -> npt.NDArray[np.uint8]:
    """A local photo as H×W×3 uint8 sRGB, upright (the worker's own decoder; larger than ``max_pixels``: an error)."""
    from worker.imaging.decode import decode  # noqa: PLC0415 - loads OpenCV

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkerError(f"cannot read {path}: {exc.strerror or exc}") from None
    frame = decode(data, photo_id=path.name, filename=path.name, max_pixels=max_pixels, origin="file")
    return frame.image


def find_pairs(pairs_dir: Path) -> list[tuple[str, Path, Path]]:
    """``(name, before, after)`` for every stem present in both ``before/`` and ``after/``, sorted by name."""
    # Every format the decoder reads: RAW, HEIC, AVIF too.
    from worker.commands.process import expand_inputs  # noqa: PLC0415 - loads torch

    before_dir, after_dir = pairs_dir / "before", pairs_dir / "after"
    for d in (before_dir, after_dir):
        if not d.is_dir():
            raise WorkerError(f"{d} does not exist; PAIRS_DIR must hold before/ and after/ folders")

    def index(d: Path) -> dict[str, Path]:
        return {p.stem: p for p in expand_inputs([d])}

    before, after = index(before_dir), index(after_dir)
    return [(stem, before[stem], after[stem]) for stem in sorted(set(before) & set(after))]


def _load_pairs(
    pairs_dir: Path, long_edge: int | None = None, *, max_pixels: int
) -> tuple[list[str], list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]]:
    """The usable pairs, each photo shrunk to ``long_edge`` as it is read (None: full size)."""
    from worker.imaging.resize import shrink  # noqa: PLC0415 - loads OpenCV
    from worker.style.train import align_pair  # noqa: PLC0415 - loads torch

    def load(path: Path) -> npt.NDArray[np.uint8]:
        img = read_image(path, max_pixels)
        return img if long_edge is None else shrink(img, long_edge)

    names, pairs = [], []
    for stem, b, a in find_pairs(pairs_dir):
        try:
            pairs.append(align_pair(load(b), load(a)))
            names.append(stem)
        except (WorkerError, ValueError) as exc:
            reason = exc.message if isinstance(exc, WorkerError) else str(exc)
            # An event on stderr, as every other: stdout is the command's JSON result.
            logs.get("style").warning("pair_skipped", pair=stem, reason=reason)
    return names, pairs


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from worker.imaging.resize import shrink  # noqa: PLC0415 - loads OpenCV
    from worker.style import model as style_model  # noqa: PLC0415 - loads torch
    from worker.style.train import (  # noqa: PLC0415 - loads torch
        MIN_PAIRS,
        MIN_PAIRS_WITH_PRESET,
        SUMMARY_KEYS,
        TrainConfig,
        TrainProgress,
        train,
    )

    if args.method == "histogram":
        from worker.commands.process import expand_inputs  # noqa: PLC0415 - loads torch
        from worker.style import histogram as style_histogram  # noqa: PLC0415 - loads torch

        after_dir = args.pairs_dir / "after"
        if not after_dir.is_dir():
            raise WorkerError(f"{after_dir} does not exist; the histogram method reads reference photos from after/")
        refs = [
            shrink(read_image(p, settings.max_image_pixels), style_histogram.STAT_EDGE)
            for p in expand_inputs([after_dir])
        ]
        if not refs:
            raise WorkerError(f"no reference photos in {after_dir}")
        hist = style_histogram.fit(refs)
        style_model.save_file(hist, args.out)
        summary = {k: hist.metadata[k] for k in SUMMARY_KEYS if k in hist.metadata}
        print(json.dumps({"model": str(args.out), "method": "histogram", **summary}))
        return 0

    preset = _read_preset(args.preset) if args.preset is not None else None
    least = MIN_PAIRS if preset is None else MIN_PAIRS_WITH_PRESET
    # Training keeps only small copies.
    _, pairs = _load_pairs(args.pairs_dir, TrainConfig().long_edge, max_pixels=settings.max_image_pixels)
    if len(pairs) < least:
        raise WorkerError(
            f"found {len(pairs)} usable before/after pairs in {args.pairs_dir}; at least {least} are needed"
            + (" with a preset (or use `style preset` for the preset alone)" if preset is not None else "")
        )
    bar = progress_bar.bar(total=1, unit="step", disable=args.no_progress, desc="training")

    def on_progress(p: TrainProgress) -> None:
        bar.total = p.total_steps
        bar.n = p.step
        if p.heldout_psnr is not None:
            bar.set_postfix(epoch=f"{p.epoch}/{p.total_epochs}", heldout_psnr=f"{p.heldout_psnr:.2f}")
        bar.refresh()

    start = None
    if preset is not None:
        from worker.style.develop import render_lut  # noqa: PLC0415 - loads torch

        start = render_lut(preset)
    try:
        style = train(pairs, epochs=args.epochs, device=settings.device, on_progress=on_progress, start=start)
    finally:
        bar.close()
    if preset is not None:
        style.metadata["preset"] = preset.summary()
    style_model.save_file(style, args.out)
    meta = style.metadata
    print(json.dumps({"model": str(args.out), **{k: meta[k] for k in SUMMARY_KEYS if k in meta}}))
    return 0


def _read_preset(path: Path) -> PresetSettings:
    """A preset file's settings; what it uses and ignores is an event on stderr (stdout stays one JSON line)."""
    preset = style_preset.load(path)
    logs.get("style").info(
        "preset_read",
        preset=preset.name,
        used=len(preset.applied),
        ignored=dict(preset.ignored),
        unknown=list(preset.unknown),
        notes=list(preset.notes),
    )
    return preset


def cmd_preset(args: argparse.Namespace, settings: Settings) -> int:
    from worker.style import model as style_model  # noqa: PLC0415 - loads torch
    from worker.style.develop import to_style  # noqa: PLC0415 - loads torch

    if args.out is None and args.cube is None:
        raise WorkerError("nothing to write: give --out MODEL, --cube FILE.cube, or both")
    preset = _read_preset(args.preset)
    style = to_style(preset)
    if args.out is not None:
        style_model.save_file(style, args.out)
    if args.cube is not None:
        args.cube.parent.mkdir(parents=True, exist_ok=True)
        args.cube.write_text(write_cube(style.cube(), args.title or preset.name or args.preset.stem))
    written = {k: str(v) for k, v in (("model", args.out), ("cube", args.cube)) if v is not None}
    print(json.dumps({**written, "method": "preset", **preset.summary()}))
    return 0


def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    from worker.commands.process import expand_inputs, unique_stems  # noqa: PLC0415 - loads torch
    from worker.models.device import resolve_device  # noqa: PLC0415 - loads torch
    from worker.style import model as style_model  # noqa: PLC0415 - loads torch

    style = style_model.load_file(args.model)
    device = resolve_device(settings.device)
    files = expand_inputs(args.inputs)
    if not files:
        raise WorkerError("no images found in the given inputs")
    args.out.mkdir(parents=True, exist_ok=True)
    names = unique_stems(files)
    failed = 0
    for path in files:
        try:
            edited = style.apply(read_image(path, settings.max_image_pixels), device)
        except WorkerError as exc:
            print(f"  failed: {path}: {exc.message}")  # with the summary below, on stdout
            failed += 1
            continue
        suffix = path.suffix.lower() if path.suffix.lower() in (".png", ".tif", ".tiff") else ".jpg"
        target = args.out / f"{names[path]}{suffix}"
        img = Image.fromarray(edited)
        img.save(target, quality=95) if suffix == ".jpg" else img.save(target)
    print(f"{len(files) - failed} of {len(files)} photos styled → {args.out}")
    return 0 if not failed else 3


def evaluate(
    style: Any, pairs: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]], device: str
) -> dict[str, Any]:
    """Mean PSNR/ΔE2000 of ``style`` on ``pairs`` and of leaving the photos alone."""
    rows = []
    for before, after in pairs:
        out = style.apply(before, device)
        rows.append((psnr(out, after), delta_e2000(out, after), psnr(before, after), delta_e2000(before, after)))
    arr = np.asarray(rows)
    return {
        "pairs": len(pairs),
        "psnr_db": round(float(arr[:, 0].mean()), 3),
        "delta_e2000": round(float(arr[:, 1].mean()), 3),
        "identity": {
            "psnr_db": round(float(arr[:, 2].mean()), 3),
            "delta_e2000": round(float(arr[:, 3].mean()), 3),
        },
    }


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from worker.models.device import resolve_device  # noqa: PLC0415 - loads torch
    from worker.style import model as style_model  # noqa: PLC0415 - loads torch

    style = style_model.load_file(args.model)
    _, pairs = _load_pairs(args.pairs_dir, max_pixels=settings.max_image_pixels)
    if not pairs:
        raise WorkerError(f"no usable before/after pairs in {args.pairs_dir}")
    result = {
        "model": str(args.model),
        "method": style.method,
        **evaluate(style, pairs, resolve_device(settings.device)),
    }
    print(json.dumps(result, indent=2))
    return 0


def cmd_export_cube(args: argparse.Namespace, settings: Settings) -> int:
    from worker.style import model as style_model  # noqa: PLC0415 - loads torch

    style = style_model.load_file(args.model)
    lut = style.lut_for(read_image(args.like, settings.max_image_pixels)).numpy() if args.like else style.cube()
    title = args.title or f"Apelier {args.model.stem}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(write_cube(lut, title))
    print(f"wrote {args.out} ({lut.shape[1]}³ LUT)")
    return 0
