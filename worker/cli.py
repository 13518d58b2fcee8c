"""The ``apelier-worker`` command.

::

    apelier-worker demo                 embedded database + local storage, a real gallery, end to end
    apelier-worker run [--drain]        the daemon: claim jobs, run them, heartbeat, exit on SIGTERM
    apelier-worker process INPUT... --out DIR [--report FILE] [--device auto|cpu|cuda] [--style MODEL]
    apelier-worker style train|apply|eval|export-cube …   (see worker/style_cli.py)
    apelier-worker enqueue --gallery ID [--style ID]
    apelier-worker migrate | status | doctor

Errors reach the user as one line that says what went wrong and what to do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from worker import logs
from worker.config import Settings
from worker.errors import WorkerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apelier-worker", description="Apelier GPU worker daemon.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("process", help="run the phases on local files (no database)")
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--out", required=True, type=Path, help="output folder (edited/, web/, thumbs/)")
    p.add_argument("--report", type=Path, help="write the JSON report here (default: OUT/report.json)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override WORKER_DEVICE")
    p.add_argument("--settings", type=Path, help="JSON file of edit settings (as in style_profiles.settings)")
    p.add_argument("--style", type=Path, help="style model file to apply in phase 1 (from `style train`)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_process)

    from worker import style_cli

    style_cli.add_parser(sub)
    return parser


def cmd_process(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from worker.local import expand_inputs, process_files, write_report
    from worker.models import bundle
    from worker.profile import EditSettings

    files = expand_inputs(args.inputs)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise WorkerError(
            f"no such file: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if not files:
        raise WorkerError("no images found in the given inputs")
    edit = EditSettings()
    if args.settings:
        edit = EditSettings.resolve(json.loads(args.settings.read_text()))
    style = None
    if args.style:
        from worker import style_model

        style = style_model.load_file(args.style)
    models = bundle.load(settings)
    entries = process_files(
        files, args.out, settings, models, edit=edit, style_model=style, progress=not args.no_progress
    )
    report = args.report or args.out / "report.json"
    write_report(entries, report)
    failed = [e for e in entries if e["error"]]
    print(f"{len(entries) - len(failed)} of {len(entries)} photos processed → {args.out}  (report: {report})")
    for entry in failed:
        print(f"  failed: {entry['file']}: {entry['error']['reason']}")
    return 0 if not failed else 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        overrides = {"device": args.device} if getattr(args, "device", None) else {}
        settings = Settings.from_env(**overrides)
        logs.configure(settings.log_level, settings.log_format)
        code: int = args.func(args, settings)
        return code
    except WorkerError as exc:
        print(f"apelier-worker: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("apelier-worker: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
