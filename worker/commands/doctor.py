"""``apelier-worker doctor``: is this box ready? One line per check, with what to do when it is not.

The full run (before a first start, after an upgrade) checks the GPU and driver against torch's
CUDA build, free VRAM, the database (schema, LISTEN, not a transaction pooler), storage (writes,
reads back and deletes a probe), disk, and the models (present / missing / licence, then loads
them). ``--quick`` is what a container's ``HEALTHCHECK`` runs every minute: it loads no model,
starts no CUDA context and writes nothing — driver (``nvidia-smi``), database, disk, model files,
and whether the running worker's main thread is still reporting (the liveness file).

Exit code 0 when nothing FAILed (warnings are fine), 1 otherwise.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg
from PIL import Image

from worker.errors import WorkerError, database_error, first_line
from worker.models import registry
from worker.queue.database import Queue
from worker.queue.listener import Listener
from worker.queue.migrations import MIN_SCHEMA_VERSION, latest_version
from worker.service import embedded
from worker.service.config import Settings, redact_url
from worker.service.notify import read_liveness
from worker.storage.factory import from_settings

# The oldest driver branch that runs each CUDA major version (NVIDIA's CUDA compatibility table).
MIN_DRIVER = {13: "580", 12: "525", 11: "450"}
TRANSACTION_POOLER_PORT = "6543"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warn: bool = False  # not fatal: the worker runs, with less

    def line(self) -> str:
        mark = "ok  " if self.ok and not self.warn else ("warn" if self.ok else "FAIL")
        return f"[{mark}] {self.name:<10} {self.detail}"


# -- GPU and driver ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gpu:
    name: str
    total_mib: int
    used_mib: int


@dataclass(frozen=True)
class DriverInfo:
    """What ``nvidia-smi`` says: the driver, the newest CUDA it runs, the GPUs (all of them)."""

    driver: str | None
    cuda: str | None
    gpus: tuple[Gpu, ...]
    error: str | None = None


def parse_nvidia_smi(query_csv: str, banner: str) -> DriverInfo:
    """``nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader,nounits``
    and the plain ``nvidia-smi`` banner (for "CUDA Version: 13.0")."""
    gpus: list[Gpu] = []
    driver = None
    for row in query_csv.strip().splitlines():
        parts = [p.strip() for p in row.split(",")]
        if len(parts) != 4:
            continue
        name, driver, total, used = parts
        try:
            gpus.append(Gpu(name, int(float(total)), int(float(used))))
        except ValueError:
            gpus.append(Gpu(name, 0, 0))
    match = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", banner)
    return DriverInfo(driver, match.group(1) if match else None, tuple(gpus))


def nvidia_smi(timeout_s: float = 20.0) -> DriverInfo | None:
    """The driver as ``nvidia-smi`` sees it; None when there is no ``nvidia-smi`` (no driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    query = [exe, "--query-gpu=name,driver_version,memory.total,memory.used", "--format=csv,noheader,nounits"]
    try:
        listed = subprocess.run(query, capture_output=True, text=True, timeout=timeout_s, check=False)
        if listed.returncode != 0:
            lines = (listed.stdout + listed.stderr).strip().splitlines()
            return DriverInfo(None, None, (), lines[0] if lines else f"nvidia-smi exited {listed.returncode}")
        banner = subprocess.run([exe], capture_output=True, text=True, timeout=timeout_s, check=False).stdout
    except subprocess.TimeoutExpired:
        return DriverInfo(None, None, (), f"nvidia-smi did not answer in {timeout_s:g} s (a GPU fallen off the bus?)")
    return parse_nvidia_smi(listed.stdout, banner)


def _major_minor(version: str | None) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def judge_driver(info: DriverInfo | None, torch_version: str | None, torch_cuda: str | None, device: str) -> Check:
    """The driver against what torch was built for. ``torch_version`` None: torch not looked at (quick)."""
    if device == "cpu":
        return Check("driver", True, "not needed: WORKER_DEVICE=cpu")
    needed = device == "cuda"
    if info is None:
        return Check(
            "driver",
            not needed,
            "no NVIDIA driver (nvidia-smi not found); install one: `sudo ubuntu-drivers install --gpgpu`, "
            "then reboot (docs/deploy.md)",
            warn=not needed,
        )
    if info.error:
        return Check("driver", False, f"nvidia-smi failed: {info.error}; after a driver install or upgrade, reboot")
    if not info.gpus:
        return Check("driver", False, f"driver {info.driver or '?'} sees no GPU; check `nvidia-smi -L` and dmesg")
    gpus = "; ".join(f"{g.name} {g.total_mib / 1024:.0f} GiB ({g.used_mib / 1024:.1f} used)" for g in info.gpus)
    facts = f"driver {info.driver or '?'} (CUDA {info.cuda or '?'}), {len(info.gpus)} GPU(s): {gpus}"
    if torch_version is None:
        return Check("driver", True, facts)
    if torch_cuda is None:
        return Check(
            "driver",
            False,
            f"{facts}; but torch {torch_version} is a CPU-only build: reinstall it from "
            "https://download.pytorch.org/whl/cu130 (docs/deploy.md)",
        )
    have, need = _major_minor(info.cuda), _major_minor(torch_cuda)
    facts += f"; torch {torch_version} built for CUDA {torch_cuda}"
    if have and need and have[0] < need[0]:
        return Check(
            "driver",
            False,
            f"{facts}: the driver is too old; install driver >= {MIN_DRIVER.get(need[0], '?')} "
            f"(`sudo apt install nvidia-driver-{MIN_DRIVER.get(need[0], 'NNN')}-server`) and reboot, "
            f"or a torch build for CUDA {have[0]}",
        )
    if have and need and have < need:
        return Check(
            "driver",
            True,
            f"{facts}: runs through CUDA minor-version compatibility; upgrade the driver if kernels fail to load",
            warn=True,
        )
    return Check("driver", True, facts)


def check_driver(settings: Settings) -> Check:
    import torch  # noqa: PLC0415 - loads torch (1.5 s): not for `doctor --quick`

    return judge_driver(nvidia_smi(), torch.__version__, torch.version.cuda, settings.device)


def check_driver_quick(settings: Settings) -> Check:
    return judge_driver(nvidia_smi(), None, None, settings.device)


def check_device(settings: Settings) -> Check:
    import torch  # noqa: PLC0415 - loads torch (1.5 s): not for `doctor --quick`

    if not torch.cuda.is_available():
        if settings.device == "cuda":
            return Check("gpu", False, "WORKER_DEVICE=cuda but torch sees no CUDA device; see the driver line")
        return Check(
            "gpu",
            True,
            f"none: running on the CPU (torch {torch.__version__}); fine for tests, slow for galleries",
            warn=True,
        )
    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    detail = (
        f"{props.name} (sm_{props.major}{props.minor}), {total / 2**30:.0f} GiB, {free / 2**30:.1f} GiB free"
        + (f", CUDA_VISIBLE_DEVICES={visible}" if visible else "")
        + (
            f"; {torch.cuda.device_count()} visible: this worker uses the first"
            if torch.cuda.device_count() > 1
            else ""
        )
    )
    if free < 4 * 2**30:
        return Check("gpu", True, f"{detail}: little free memory; `nvidia-smi` shows who holds it", warn=True)
    return Check("gpu", True, detail)


# -- database -----------------------------------------------------------------------------------------
def transaction_pooler_note(url: str) -> str | None:
    """Why a URL is wrong for the worker when it names a transaction pooler (LISTEN may even "work" there)."""
    try:
        port = str(psycopg.conninfo.conninfo_to_dict(url).get("port") or "")
    except psycopg.Error:
        port = ""
    if port != TRANSACTION_POOLER_PORT and "pgbouncer=true" not in url:
        return None
    return (
        "this is a transaction pooler (port 6543): NOTIFY never arrives there and the worker only polls; "
        "use the session pooler (port 5432) or the direct connection"
    )


def check_database(settings: Settings) -> Check:
    try:
        url = embedded.database_url(settings)
        queue = Queue(url, settings.worker_id)
        version = queue.admin.schema_version()
        queue.close()
    except WorkerError as exc:  # the embedded server would not start
        return Check("database", False, exc.message)
    except psycopg.Error as exc:
        typed = database_error(exc, settings.database_url)
        return Check("database", False, typed.message if typed else first_line(exc))
    listener = Listener(url)
    can_listen = listener.start()
    listener.close()
    where = redact_url(url) if settings.database_url else f"embedded ({settings.data_dir / 'pg'})"
    if version is None or version < MIN_SCHEMA_VERSION:
        found = "no schema" if version is None else f"schema {version}"
        return Check(
            "database", False, f"{where}: {found}, need {MIN_SCHEMA_VERSION} or newer; run `apelier-worker migrate`"
        )
    latest = latest_version()
    schema = f"schema {version}"
    if version < latest:
        schema += f" ({latest - version} migration(s) of this release pending: run `apelier-worker migrate`)"
    elif version > latest:
        schema += f" (newer than this release's {latest}: fine while a rolling upgrade reaches this box)"
    pooler = transaction_pooler_note(url)
    if pooler:
        return Check("database", True, f"{where}, {schema}; {pooler}", warn=True)
    note = (
        "LISTEN ok"
        if can_listen
        else "LISTEN unavailable (transaction pooler?): polling only; use the session pooler or a direct connection"
    )
    return Check("database", True, f"{where}, {schema}, {note}", warn=not can_listen or version != latest)


# -- storage and disk -----------------------------------------------------------------------------
def probe_jpeg() -> bytes:
    """A tiny JPEG: the app's bucket takes images only (``allowed_mime_types``), so the probe is one."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buf, "JPEG")
    return buf.getvalue()


def check_storage(settings: Settings) -> Check:
    key = f".apelier-worker/doctor-{settings.worker_id.replace(':', '-').replace('/', '-')}.jpg"
    probe = probe_jpeg()
    storage = None
    try:
        storage = from_settings(settings)
        storage.put(key, probe, "image/jpeg")
        readable = storage.get(key) == probe
    except Exception as exc:
        fix = "check SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, STORAGE_BUCKET"
        return Check("storage", False, f"not writable ({first_line(exc)}); {fix}")
    finally:
        if storage is not None:
            with contextlib.suppress(Exception):  # the probe never stays behind, whatever went wrong
                storage.delete(key)
            getattr(storage, "close", lambda: None)()  # Supabase's HTTP connections
    return Check(
        "storage",
        readable,
        f"{storage.describe()}: read/write ok" if readable else "wrote a probe but read back something else",
    )


def check_disk(settings: Settings) -> Check:
    where = settings.data_dir
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return Check("disk", False, f"cannot create {where} ({exc.strerror}); check WORKER_DATA_DIR and its owner")
    free = shutil.disk_usage(where).free / 2**30
    return Check("disk", free > 2, f"{free:.1f} GiB free in {where}" + ("" if free > 2 else "; free some space"))


# -- models ----------------------------------------------------------------------------------------
def licence_of(model: str | None) -> str | None:
    """The registry's licence for a loaded model (``lama``, ``codeformer``, ``retinaface-r50``,
    ``mtcnn``…), if it lists it."""
    name = (model or "").lower()
    if name in registry.IN_WHEELS:
        return registry.IN_WHEELS[name]
    return next((s.licence for s in registry.MODELS.values() if name and (name in s.name or s.name in name)), None)


def _registry_checks(settings: Settings) -> list[Check]:
    """One line per weight file: present, missing (a failure when the settings cannot start without it)."""
    checks = []
    for entry in registry.status(settings.models_dir):
        spec = entry.spec
        if not entry.present:
            needed = spec.name == "big-lama" and settings.inpainter == "lama"
            detail = f"{spec.name}: missing — `apelier-worker models fetch {spec.name}` ({spec.licence})"
            if needed:
                detail += "; the worker does not start without it while WORKER_INPAINTER=lama"
            checks.append(Check("models", not needed, detail, warn=not needed))
        elif spec.noncommercial and not settings.codeformer_license_accepted:
            detail = f"{spec.name}: present, unused until WORKER_CODEFORMER_LICENSE_ACCEPTED=true ({spec.licence})"
            checks.append(Check("models", True, detail, warn=True))
        else:
            checks.append(Check("models", True, f"{spec.name}: present ({spec.licence})"))
    return checks


def check_models(settings: Settings, *, load: bool = True) -> list[Check]:
    from worker.models import bundle  # noqa: PLC0415 - loads torch (1.5 s): not for `doctor --quick`

    checks = _registry_checks(settings)
    if not load:
        return checks
    try:
        models = bundle.load(settings)
    except Exception as exc:
        return [*checks, Check("models", False, f"loading failed: {first_line(exc)}")]
    slots = []
    for slot, name in models.describe().items():
        licence = licence_of(name) if slot != "device" else None
        slots.append(f"{slot}={name}" + (f" ({licence})" if licence else ""))
    checks.append(Check("models", True, "loaded: " + ", ".join(slots)))
    # A note about weights already listed as missing above ("… weights absent (… models fetch X)") says
    # it twice; the rest (the restorer chosen, a licence not accepted) is news.
    missing = [c.detail.split(":", 1)[0] for c in checks if ": missing" in c.detail]
    checks.extend(Check("models", True, note, warn=True) for note in models.notes if not _repeats(note, missing))
    return checks


def _repeats(note: str, missing: list[str]) -> bool:
    """Whether a model's note only says again that one of the ``missing`` weight files is absent."""
    text = note.lower()
    for name in missing:
        words = [w for w in name.lower().split("-") if len(w) > 3]  # big-lama → lama, retinaface-r50 → retinaface
        if f"models fetch {name}" in text or ("absent" in text and any(w in text for w in words)):
            return True
    return False


def check_models_quick(settings: Settings) -> list[Check]:
    return check_models(settings, load=False)


# -- the running worker ------------------------------------------------------------------------------
def check_liveness(settings: Settings, *, required: bool = False) -> list[Check]:
    """The running worker's liveness file (containers): its main thread rewrites it as it works."""
    path = settings.liveness_file
    if path is None:
        return []
    record = read_liveness(path)
    if record is None:
        detail = f"no liveness record at {path}: the worker is not running here (or still loading)"
        return [Check("worker", not required, detail, warn=not required)]
    pid, status = record.get("pid"), record.get("status") or "?"
    if isinstance(pid, int) and not _pid_alive(pid):
        return [Check("worker", False, f"the worker (pid {pid}) is gone; last status: {status}")]
    late = time.time() - float(record.get("deadline") or 0)
    if late > 0:
        since = time.time() - float(record.get("updated_at") or 0)
        return [
            Check(
                "worker",
                False,
                f"pid {pid} has not reported for {since:.0f} s (a hung GPU call?); last status: {status}; restart it",
            )
        ]
    return [Check("worker", True, f"pid {pid} alive: {status}")]


def check_liveness_quick(settings: Settings) -> list[Check]:
    return check_liveness(settings, required=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


CheckFn = Callable[[Settings], Check | list[Check]]
CHECKS: tuple[CheckFn, ...] = (
    check_device,
    check_driver,
    check_database,
    check_storage,
    check_disk,
    check_models,
    check_liveness,
)
QUICK_CHECKS: tuple[CheckFn, ...] = (
    check_driver_quick,
    check_database,
    check_disk,
    check_models_quick,
    check_liveness_quick,
)


def run(settings: Settings, *, quick: bool = False, checks: Sequence[CheckFn] | None = None) -> int:
    failed = 0
    for check in checks or (QUICK_CHECKS if quick else CHECKS):
        try:
            results = check(settings)
        except Exception as exc:  # one broken check must not hide the others
            results = Check(check.__name__.removeprefix("check_").split("_")[0], False, first_line(exc))
        for result in results if isinstance(results, list) else [results]:
            print(result.line(), flush=True)
            failed += 0 if result.ok else 1
    return 0 if failed == 0 else 1
