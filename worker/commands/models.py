"""``apelier-worker models list|fetch``: see and download the weight files in WORKER_MODELS_DIR.

::

    apelier-worker models list [--verify] [--json]
    apelier-worker models fetch [NAME...] [--force] [--no-progress]

``fetch`` with no names downloads every licence-clean model, plus the
non-commercial ones (CodeFormer, ParseNet) once WORKER_CODEFORMER_LICENSE_ACCEPTED
is true. Downloads are verified and atomic (``worker/models/registry.py``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker.errors import ModelFileError
from worker.models import registry
from worker.service.config import Settings


def add_parser(sub: Any) -> None:
    """Register the ``models`` command group on the top-level subparsers."""
    p = sub.add_parser("models", help="list or download model weights")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    lp = msub.add_parser("list", help="every model: present or missing, licence, size")
    lp.add_argument("--verify", action="store_true", help="hash each present file and check it")
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lp.set_defaults(func=cmd_list)

    fp = msub.add_parser("fetch", help="download weights (verified, atomic)")
    fp.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(registry.MODELS)}")
    fp.add_argument("--force", action="store_true", help="download again even when present")
    fp.add_argument("--no-progress", action="store_true", help="no progress bar")
    fp.set_defaults(func=cmd_fetch)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = registry.status(settings.models_dir, verify_hashes=args.verify)
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0 if all(r.verified is not False for r in rows) else 1
    print(f"models folder: {settings.models_dir}")
    header = ("NAME", "STATE", "SIZE", "LICENCE")
    lines = [header]
    for r in rows:
        if not r.present:
            state = "missing"
        elif r.verified is None:
            state = "present"
        else:
            state = "verified" if r.verified else "BAD"
        size = f"{(r.size or 0) / 1e6:.1f} MB" if r.present else f"~{r.spec.approx_mb:.0f} MB"
        lines.append((r.spec.name, state, size, r.spec.licence))
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    for line in lines:
        print("  ".join(col.ljust(widths[i]) for i, col in enumerate(line[:3])) + "  " + line[3])
    for r in rows:
        if r.problem:
            print(f"  {r.spec.name}: {r.problem}")
    if any(r.spec.noncommercial for r in rows) and not settings.codeformer_license_accepted:
        print("non-commercial models stay unused until WORKER_CODEFORMER_LICENSE_ACCEPTED=true (see docs/models.md)")
    return 0 if all(r.verified is not False for r in rows) else 1


def cmd_fetch(args: argparse.Namespace, settings: Settings) -> int:
    names = args.names or registry.default_selection(settings.codeformer_license_accepted)
    for name in names:
        registry.spec(name)  # unknown names fail before anything downloads
    failed = 0
    for name in names:
        s = registry.spec(name)
        try:
            path = registry.fetch(name, settings.models_dir, progress=not args.no_progress, force=args.force)
        except ModelFileError as exc:
            failed += 1
            print(f"  {name}: {exc.message}")
            continue
        print(f"  {name}: ok → {path}")
        if s.noncommercial and not settings.codeformer_license_accepted:
            print(f"  {name}: {s.licence}; it stays unused until WORKER_CODEFORMER_LICENSE_ACCEPTED=true")
    skipped = [s.name for s in registry.MODELS.values() if s.noncommercial and s.name not in names and not args.names]
    if skipped:
        print(
            f"  not fetched (non-commercial licence not acknowledged): {', '.join(skipped)}; name them to fetch anyway"
        )
    if failed:
        raise ModelFileError(f"{failed} of {len(names)} downloads failed; see above")
    return 0
