"""``apelier-worker doctor``: is this box ready? One line per check, with what to do when it is not."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

from worker.config import Settings, redact_url


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warn: bool = False  # not fatal: the worker runs, with less

    def line(self) -> str:
        mark = "ok  " if self.ok else ("warn" if self.warn else "FAIL")
        return f"[{mark}] {self.name:<10} {self.detail}"


def check_device(settings: Settings) -> Check:
    import torch

    if not torch.cuda.is_available():
        if settings.device == "cuda":
            return Check("gpu", False, "WORKER_DEVICE=cuda but no CUDA device is visible; check `nvidia-smi`")
        return Check(
            "gpu",
            True,
            f"none: running on the CPU (torch {torch.__version__}); fine for tests, slow for galleries",
            warn=True,
        )
    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info()
    return Check(
        "gpu",
        True,
        f"{props.name}, {total / 2**30:.0f} GiB ({free / 2**30:.1f} free), "
        f"torch {torch.__version__} CUDA {torch.version.cuda}",
    )


def check_database(settings: Settings) -> Check:
    from worker import embedded
    from worker.queue import SCHEMA_VERSION, Listener, Queue

    try:
        url = embedded.database_url(settings)
        queue = Queue(url, settings.worker_id)
        version = queue.schema_version()
        queue.close()
    except Exception as exc:
        where = redact_url(settings.database_url) if settings.database_url else "embedded"
        return Check(
            "database",
            False,
            f"{where} unreachable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); check DATABASE_URL",
        )
    listener = Listener(url)
    can_listen = listener.start()
    listener.close()
    where = redact_url(url) if settings.database_url else f"embedded ({settings.data_dir / 'pg'})"
    if version != SCHEMA_VERSION:
        found = "no schema" if version is None else f"schema {version}"
        return Check("database", False, f"{where}: {found}, need {SCHEMA_VERSION}; run `apelier-worker migrate`")
    note = (
        "LISTEN ok"
        if can_listen
        else "LISTEN unavailable (transaction pooler?): polling only; use the session pooler or a direct connection"
    )
    return Check("database", True, f"{where}, schema {version}, {note}", warn=not can_listen)


def check_storage(settings: Settings) -> Check:
    from worker.storage import from_settings

    try:
        storage = from_settings(settings)
        key = f".apelier-worker/doctor-{settings.worker_id.replace(':', '-').replace('/', '-')}"
        storage.put(key, b"ok", "text/plain")
        readable = storage.get(key) == b"ok"
        storage.delete(key)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fix = "check SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, STORAGE_BUCKET"
        return Check("storage", False, f"not writable ({reason}); {fix}")
    return Check(
        "storage",
        readable,
        f"{storage.describe()}: read/write ok" if readable else "wrote a probe but read back something else",
    )


def check_disk(settings: Settings) -> Check:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(settings.data_dir).free / 2**30
    return Check(
        "disk",
        free > 2,
        f"{free:.1f} GiB free in {settings.data_dir}" + ("" if free > 2 else "; free some space"),
    )


def check_models(settings: Settings) -> list[Check]:
    from worker.models import bundle

    try:
        models = bundle.load(settings)
    except Exception as exc:
        return [Check("models", False, f"loading failed: {exc}")]
    checks = [Check("models", True, ", ".join(f"{k}={v}" for k, v in models.describe().items()))]
    checks.extend(Check("models", True, note, warn=True) for note in models.notes)
    return checks


CHECKS: tuple[Callable[[Settings], Check | list[Check]], ...] = (
    check_device,
    check_database,
    check_storage,
    check_disk,
    check_models,
)


def run(settings: Settings) -> int:
    failed = 0
    for check in CHECKS:
        results = check(settings)
        for result in results if isinstance(results, list) else [results]:
            print(result.line())
            failed += 0 if result.ok else 1
    return 0 if failed == 0 else 1
