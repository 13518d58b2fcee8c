"""``apelier-worker status``: what the queue and the fleet are doing, for the operator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.queue.database import Queue
from worker.service.config import Settings


def _age(value: Any) -> str:
    if not isinstance(value, timedelta):
        return "-"
    seconds = int(value.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def _since(value: Any) -> timedelta | None:
    return datetime.now(UTC) - value if isinstance(value, datetime) and value.tzinfo else None


def _chunk_line(chunk: dict[str, Any], settings: Settings) -> str:
    """One chunk of a split gallery: its state, photos edited of its own, and who holds it."""
    line = f"chunk {chunk['chunk'] + 1:<3} {chunk['status']:<10} {chunk['edited']}/{chunk['photos']} photos"
    if chunk["locked_by"] is None:
        return line + f"  attempts {chunk['attempts']}"
    silent = _since(chunk.get("heartbeat_at"))
    stale = silent is not None and silent.total_seconds() > settings.lease_s
    return (
        line
        + f"  worker {chunk['locked_by']}  heartbeat {_age(silent)} ago"
        + ("  STALE: its worker stopped; any worker requeues this chunk" if stale else "")
    )


def print_status(database_url: str, settings: Settings, *, as_json: bool = False) -> int:
    queue = Queue(database_url, settings.worker_id)
    report = queue.admin.status_report()
    queue.close()
    if as_json:
        print(json.dumps(report, default=str, indent=2))
        return 0
    print("queue:")
    if not report["queue"]:
        print("  (no jobs)")
    for row in report["queue"]:
        print(f"  {row['status']:<11} {row['job_type']:<12} {row['jobs']:>6}")
    print("in flight:")
    if not report["in_flight"]:
        print("  (none)")
    chunks: dict[str, list[dict[str, Any]]] = {}
    for chunk in report.get("chunks", []):
        chunks.setdefault(str(chunk["job_id"]), []).append(chunk)
    for row in report["in_flight"]:
        silent = _since(row.get("heartbeat_at"))
        parts = chunks.get(str(row["id"]))
        if parts is not None:  # a split gallery: its chunks hold the leases, each shown below it
            print(
                f"  {row['id']} {row['job_type']:<11} {row['current_phase'] or '-':<12} "
                f"{row['processed_images']}/{row['total_images']}  split in {len(parts)} chunks  "
                f"age {_age(row['age'])}"
            )
            for chunk in parts:
                print("    " + _chunk_line(chunk, settings))
            continue
        stale = silent is not None and silent.total_seconds() > settings.lease_s
        print(
            f"  {row['id']} {row['job_type']:<11} {row['current_phase'] or '-':<12} "
            f"{row['processed_images']}/{row['total_images']}  worker {row['locked_by']}  age {_age(row['age'])}"
            f"  heartbeat {_age(silent)} ago" + ("  STALE: its worker stopped; any worker requeues it" if stale else "")
        )
    print("workers seen in the last 5 minutes:")
    if not report["workers"]:
        print("  (none)")
    for row in report["workers"]:
        job = f" job {row['job_id']}" if row["job_id"] else ""
        print(
            f"  {row['id']:<28} {row['state']:<8} {row['device'] or '-':<5} "
            f"last seen {_age(row['silent_for'])} ago{job}"
        )
    print("recent failures:")
    if not report["failures"]:
        print("  (none)")
    for row in report["failures"]:
        print(f"  {row['id']} {row['job_type']:<11} attempts {row['attempts']}: {row['error_log']}")
    return 0
