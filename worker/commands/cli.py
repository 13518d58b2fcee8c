"""The ``apelier-worker`` command.

::

    apelier-worker demo                 embedded database + local storage, a real gallery, end to end
    apelier-worker run [--drain]        the daemon: claim jobs, run them, heartbeat, exit on SIGTERM
    apelier-worker api [--host H] [--port P]   the HTTP API the app's AI_ENGINE_URL points at (queues jobs)
    apelier-worker process INPUT... --out DIR [--report FILE] [--device auto|cpu|cuda] [--style MODEL]
    apelier-worker style train|apply|eval|export-cube …   (see worker/commands/style.py)
    apelier-worker enqueue --gallery ID [--style ID]
    apelier-worker models list [--verify] | fetch [NAME...]
    apelier-worker migrate | status | doctor

Errors reach the user as one line that says what went wrong and what to do: every command that
uses the database checks it first (``worker/service/preflight.py``; ``run`` before it loads its
models), and a database error met later is worded by ``worker.errors.database_error`` here, at the
boundary, never shown as a traceback.

A command imports the modules that load torch or OpenCV when it runs (``# noqa: PLC0415``), so
``--help``, ``status`` and ``doctor --quick`` (a container HEALTHCHECK) start without them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import psycopg

from worker.commands import api, doctor
from worker.commands import models as models_cli
from worker.commands import status as operator_views
from worker.commands import style as style_cli
from worker.errors import WorkerError, database_error
from worker.profile import EditSettings
from worker.queue.database import Postgres, Queue
from worker.queue.store import JOB_TYPES
from worker.service import logs, preflight
from worker.service.config import Settings
from worker.service.reaper import Reaper


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

    p = sub.add_parser("demo", help="embedded database + local storage + a real gallery, end to end")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="the daemon: claim jobs and run them until SIGTERM")
    p.add_argument("--drain", action="store_true", help="exit once no job is queued or running")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override WORKER_DEVICE")
    p.add_argument(
        "--job-types",
        default=",".join(JOB_TYPES),
        help=f"comma-separated job types this worker takes (default: {','.join(JOB_TYPES)})",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("api", help="the HTTP API the app's AI_ENGINE_URL points at: queues jobs, reads their rows")
    p.add_argument("--host", help="address to listen on (default: WORKER_API_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: WORKER_API_PORT, else 8000)")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("migrate", help="create or upgrade the database schema (idempotent)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("enqueue", help="queue a gallery job, as the app does")
    p.add_argument("--gallery", required=True, help="gallery id")
    p.add_argument("--style", help="style profile id")
    p.add_argument("--photos", help="comma-separated photo ids: a restyle of just these")
    p.add_argument("--priority", type=int, default=100, help="lower runs first (default 100)")
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job", help="job id")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("status", help="queue depth, jobs in flight, workers, recent failures")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("doctor", help="check the GPU, database, storage and models, one line each")
    p.add_argument(
        "--quick",
        action="store_true",
        help="cheap checks only, no model loading or storage writes (a container HEALTHCHECK)",
    )
    p.set_defaults(func=cmd_doctor)

    models_cli.add_parser(sub)
    style_cli.add_parser(sub)
    return parser


def _database(settings: Settings, schema: preflight.SchemaNeed = "any") -> str:
    """The database's URL once it answers with the ``schema`` this command needs (one line if not)."""
    return preflight.database(settings, schema=schema)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from worker.commands import demo  # noqa: PLC0415 - loads torch

    return demo.main(settings)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    job_types = [t.strip() for t in args.job_types.split(",") if t.strip()]
    unknown = sorted(set(job_types) - set(JOB_TYPES))
    if unknown:
        raise WorkerError(f"unknown job type(s) {', '.join(unknown)}; choose from {', '.join(JOB_TYPES)}")
    # The database first, before torch and the models load (seconds to a minute): jobs of dead workers
    # are requeued from the start, so a worker restarted after a crash already does its part
    # (service/reaper.py). A database it cannot use is said below, in its service status too.
    url: str | None = None
    refused: WorkerError | None = None
    try:
        url = _database(settings, "current")
    except WorkerError as exc:
        refused = exc
    reaper = None
    if url is not None:
        lease, beat = settings.lease_s, settings.heartbeat_interval_s
        reaper = Reaper(Postgres(url), settings.worker_id, lease_s=lease, heartbeat_interval_s=beat)
        reaper.start()
    try:
        from worker.jobs.runtime import Runtime  # noqa: PLC0415 - loads torch
        from worker.models import bundle  # noqa: PLC0415 - loads torch
        from worker.service import instrument as service  # noqa: PLC0415 - loads torch
        from worker.service.daemon import Daemon  # noqa: PLC0415 - loads torch

        # systemd readiness/status/watchdog and metrics (worker/service/instrument.py); no-ops when not configured.
        with service.instrumented(settings, device=bundle.resolve_device(settings.device)) as hooks:
            # The database and storage first: a worker that cannot work says so before loading models.
            hooks.starting("database")
            if refused is not None:
                raise refused
            assert url is not None
            hooks.starting("storage")
            storage = preflight.storage(settings)
            hooks.starting("loading models")
            runtime = Runtime(settings=settings, storage=storage, models=bundle.load(settings))
            daemon = Daemon(runtime, url, drain=args.drain, job_types=job_types, on_event=hooks.on_event, reaper=reaper)
            daemon.install_signal_handlers()
            return daemon.run()
    finally:
        if reaper is not None:
            reaper.stop()


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    return api.run(settings, host=args.host, port=args.port)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    queue = Queue(_database(settings, None), settings.worker_id)
    before, after = queue.admin.migrate()
    queue.close()
    print(f"schema: {'none' if before is None else f'version {before}'} → version {after}")
    return 0


def cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    queue = Queue(_database(settings), settings.worker_id)
    gallery = queue.app.gallery(args.gallery)
    if gallery is None:
        raise WorkerError(f"gallery {args.gallery} not found")
    photo_ids = [p.strip() for p in (args.photos or "").split(",") if p.strip()]
    job_id = queue.admin.enqueue(
        photographer_id=str(gallery["photographer_id"]),
        gallery_id=args.gallery,
        style_profile_id=args.style,
        job_type="restyle" if photo_ids else "gallery",
        payload={"photo_ids": photo_ids} if photo_ids else None,
        priority=args.priority,
    )
    queue.close()
    print(job_id)
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    queue = Queue(_database(settings), settings.worker_id)
    status = queue.jobs.cancel(args.job)
    queue.close()
    if status is None:
        raise WorkerError(f"job {args.job} is not queued or running (already finished, or no such job)")
    print(f"job {args.job}: canceled")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    return operator_views.print_status(_database(settings), settings, as_json=args.json)


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    return doctor.run(settings, quick=args.quick)


def cmd_process(args: argparse.Namespace, settings: Settings) -> int:
    from worker.commands.process import collect_inputs, process_files, write_report  # noqa: PLC0415 - loads torch
    from worker.models import bundle  # noqa: PLC0415 - loads torch

    report = args.report or args.out / "report.json"
    inputs = collect_inputs(args.inputs, exclude=[args.out])
    missing = [str(f) for f in inputs.files if not f.is_file()]
    if missing:
        raise WorkerError(
            f"no such file: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if not inputs.files:
        why = "; ".join(f"{s.path}: {s.reason}" for s in inputs.skipped[:3])
        more = f" (and {len(inputs.skipped) - 3} more)" if len(inputs.skipped) > 3 else ""
        raise WorkerError("no photos found in the given inputs" + (f" ({why}{more})" if why else ""))
    edit = EditSettings()
    if args.settings:
        edit = EditSettings.resolve(json.loads(args.settings.read_text()))
    style = None
    if args.style:
        from worker.style import model as style_model  # noqa: PLC0415 - loads torch

        style = style_model.load_file(args.style)
    models = bundle.load(settings)
    entries = process_files(
        inputs.files,
        args.out,
        settings,
        models,
        edit=edit,
        style_model=style,
        progress=not args.no_progress,
        names=inputs.names(),
    )
    write_report(entries, report, inputs.skipped)
    failed = [e for e in entries if e["error"]]
    skipped = f", {len(inputs.skipped)} skipped" if inputs.skipped else ""
    print(f"{len(entries) - len(failed)} of {len(entries)} photos processed{skipped} → {args.out}  (report: {report})")
    for entry in failed:
        print(f"  failed: {entry['file']}: {entry['error']['reason']}")
    for entry in entries:
        for note in entry["notes"]:
            print(f"  note: {entry['file']}: {note}")
        for reason in entry.get("review_reasons", ()):
            print(f"  review: {entry['file']}: {reason}")
    for item in inputs.skipped:
        print(f"  skipped: {item.path}: {item.reason}")
    return 0 if not failed else 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings: Settings | None = None
    try:
        overrides = {"device": args.device} if getattr(args, "device", None) else {}
        settings = Settings.from_env(**overrides)
        logs.configure(settings.log_level, settings.log_format)
        code: int = args.func(args, settings)
        return code
    except WorkerError as exc:
        print(f"apelier-worker: {exc.message}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:  # met after the preflight (the server went away mid-command): still one line
        typed = database_error(exc, settings.database_url if settings else None)
        print(f"apelier-worker: {typed.message if typed else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("apelier-worker: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
