"""Settings: one frozen object read from the environment, once, at start.

Every knob the operator can turn is a field here, with its environment variable
and default. Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from worker.errors import ConfigError

Device = Literal["auto", "cpu", "cuda"]
FaceRestorerChoice = Literal["codeformer", "classic", "off"]
InpainterChoice = Literal["auto", "lama", "opencv"]
ImageCodecChoice = Literal["auto", "cpu", "torch"]
LogFormat = Literal["auto", "json", "console"]

# The heartbeat moves processing_jobs.heartbeat_at, which the app's queue view reads (docs/app.md)
# to tell a healthy job from a stalled one: at least once a minute.
MAX_HEARTBEAT_INTERVAL_S = 60.0

_TRUE = {"1", "true", "yes", "on"}
_SECRETS = {"supabase_service_role_key", "api_key", "supabase_jwt_secret"}
_API_KEY = re.compile(r"[A-Za-z0-9_-]{32,}")
_FALSE = {"0", "false", "no", "off", ""}


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "apelier-worker"


@dataclass(frozen=True)
class Settings:
    """Everything the worker is configured with. Build it with :meth:`from_env`."""

    # Where jobs come from. Unset: an embedded PostgreSQL in ``data_dir/pg``.
    database_url: str | None = None
    # Where photos live. Unset: a local directory ``data_dir/storage``.
    supabase_url: str | None = None
    supabase_service_role_key: str | None = field(default=None, repr=False)
    storage_bucket: str = "photos"
    storage_timeout_s: float = 60.0
    storage_retries: int = 5

    device: Device = "auto"
    # JPEG decode/resize/encode: auto = torch (nvJPEG) on a GPU, else OpenCV/Pillow; torch = torch on the
    # models' device even on the CPU (tests, comparisons); cpu = OpenCV/Pillow (worker/imaging/device.py).
    image_codec: ImageCodecChoice = "auto"
    models_dir: Path = field(default_factory=lambda: _default_data_dir() / "models")
    data_dir: Path = field(default_factory=_default_data_dir)

    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # Queue timing.
    poll_interval_s: float = 5.0
    heartbeat_interval_s: float = 10.0
    lease_s: float = 60.0
    progress_interval_s: float = 0.5
    retry_base_delay_s: float = 10.0
    retry_max_delay_s: float = 600.0
    # Throughput.
    batch_size: int = 0  # 0: 8 on a GPU, 1 on the CPU
    phase_lanes: int = 3  # batches in the batch phases at once, at most one per phase (worker/pipeline/stream.py)
    io_threads: int = 8
    photo_threads: int = 0  # per-photo CPU work inside a batch phase; 0: one per core, at most 8
    prefetch_photos: int = 16
    # A gallery/restyle job with more photos than this to edit is split into chunks of this many, which
    # any idle worker claims (sql/migrations/0008_job_chunks.sql); 0: never split.
    chunk_photos: int = 48
    max_image_pixels: int = 250_000_000

    face_restorer: FaceRestorerChoice = "classic"
    # Phase 3 inpainting: auto = LaMa (big-lama.pt in models_dir) on a GPU, else OpenCV.
    inpainter: InpainterChoice = "auto"
    codeformer_license_accepted: bool = False

    log_level: str = "info"
    log_format: LogFormat = "auto"
    metrics_port: int | None = None
    # Rewritten by the daemon's main thread while it is alive; `doctor --quick` reads it (containers).
    liveness_file: Path | None = None

    # `apelier-worker api` (worker/api/): where it listens and whom it lets in (docs/app.md).
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_key: str | None = field(default=None, repr=False)
    supabase_jwt_secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(  # noqa: PLR0915 - one statement per variable: the table of them reads best in one place
        cls, env: Mapping[str, str] | None = None, **overrides: object
    ) -> Settings:
        """Read ``APELIER``-style variables (names below) from ``env`` (default: ``os.environ``).

        Raises :class:`ConfigError` naming the variable and what it accepts.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {}

        def text(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() != "" else None

        def number(
            name: str, kind: type[int] | type[float], minimum: float = 0, maximum: float | None = None
        ) -> int | float | None:
            raw = text(name)
            if raw is None:
                return None
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {kind(10)}") from None
            if value < minimum:
                raise ConfigError(f"{name}={raw} is below {minimum}; use a value >= {minimum}")
            if maximum is not None and value > maximum:
                raise ConfigError(f"{name}={raw} is above {maximum}; use a value <= {maximum}")
            return value

        def flag(name: str) -> bool | None:
            raw = text(name)
            if raw is None:
                return None
            if raw.lower() in _TRUE:
                return True
            if raw.lower() in _FALSE:
                return False
            raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")

        def choice(name: str, allowed: tuple[str, ...]) -> str | None:
            raw = text(name)
            if raw is None:
                return None
            if raw.lower() not in allowed:
                raise ConfigError(f"{name}={raw!r} is not one of {', '.join(allowed)}")
            return raw.lower()

        values["database_url"] = text("DATABASE_URL")
        values["supabase_url"] = text("SUPABASE_URL")
        values["supabase_service_role_key"] = text("SUPABASE_SERVICE_ROLE_KEY")
        values["storage_bucket"] = text("STORAGE_BUCKET")
        values["storage_timeout_s"] = number("WORKER_STORAGE_TIMEOUT_S", float, 1)
        values["storage_retries"] = number("WORKER_STORAGE_RETRIES", int, 0)
        values["device"] = choice("WORKER_DEVICE", ("auto", "cpu", "cuda"))
        values["image_codec"] = choice("WORKER_IMAGE_CODEC", ("auto", "cpu", "torch"))
        data_dir = text("WORKER_DATA_DIR")
        values["data_dir"] = Path(data_dir).expanduser() if data_dir else None
        models_dir = text("WORKER_MODELS_DIR")
        if models_dir:
            values["models_dir"] = Path(models_dir).expanduser()
        elif data_dir:
            values["models_dir"] = Path(data_dir).expanduser() / "models"
        values["worker_id"] = text("WORKER_ID")
        values["poll_interval_s"] = number("WORKER_POLL_INTERVAL_S", float, 0.05)
        values["heartbeat_interval_s"] = number("WORKER_HEARTBEAT_INTERVAL_S", float, 0.05)
        values["lease_s"] = number("WORKER_LEASE_S", float, 1)
        values["progress_interval_s"] = number("WORKER_PROGRESS_INTERVAL_S", float, 0)
        values["retry_base_delay_s"] = number("WORKER_RETRY_BASE_DELAY_S", float, 0)
        values["retry_max_delay_s"] = number("WORKER_RETRY_MAX_DELAY_S", float, 0)
        values["batch_size"] = number("WORKER_BATCH_SIZE", int, 0)
        values["phase_lanes"] = number("WORKER_PHASE_LANES", int, 1, 5)
        values["io_threads"] = number("WORKER_IO_THREADS", int, 1)
        values["photo_threads"] = number("WORKER_PHOTO_THREADS", int, 0)
        values["prefetch_photos"] = number("WORKER_PREFETCH_PHOTOS", int, 1)
        values["chunk_photos"] = number("WORKER_CHUNK_PHOTOS", int, 0)
        values["max_image_pixels"] = number("WORKER_MAX_IMAGE_PIXELS", int, 1)
        values["face_restorer"] = choice("WORKER_FACE_RESTORER", ("codeformer", "classic", "off"))
        values["codeformer_license_accepted"] = flag("WORKER_CODEFORMER_LICENSE_ACCEPTED")
        values["inpainter"] = choice("WORKER_INPAINTER", ("auto", "lama", "opencv"))
        values["log_level"] = choice("WORKER_LOG_LEVEL", ("debug", "info", "warning", "error"))
        values["log_format"] = choice("WORKER_LOG_FORMAT", ("auto", "json", "console"))
        values["metrics_port"] = number("WORKER_METRICS_PORT", int, 1, 65535)
        liveness_file = text("WORKER_LIVENESS_FILE")
        values["liveness_file"] = Path(liveness_file).expanduser() if liveness_file else None
        values["api_host"] = text("WORKER_API_HOST")
        values["api_port"] = number("WORKER_API_PORT", int, 1, 65535)
        values["api_key"] = text("WORKER_API_KEY")
        values["supabase_jwt_secret"] = text("SUPABASE_JWT_SECRET")

        values = {k: v for k, v in values.items() if v is not None}
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject combinations that cannot work, with one line that says what to change."""
        if self.supabase_url and not self.supabase_service_role_key:
            raise ConfigError("SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY is not; set both, or neither")
        if self.supabase_url and not self.supabase_url.startswith(("http://", "https://")):
            raise ConfigError(f"SUPABASE_URL={self.supabase_url!r} must start with https://")
        if (
            self.database_url
            and "://" in self.database_url
            and not self.database_url.startswith(("postgres://", "postgresql://"))
        ):
            raise ConfigError("DATABASE_URL must be a postgresql:// URL (or a libpq key=value string)")
        if self.heartbeat_interval_s > MAX_HEARTBEAT_INTERVAL_S:
            raise ConfigError(
                f"WORKER_HEARTBEAT_INTERVAL_S={self.heartbeat_interval_s:g} must be at most "
                f"{MAX_HEARTBEAT_INTERVAL_S:g}: the app's queue view takes a job whose row has not moved "
                "for 5 minutes for stalled (docs/app.md)"
            )
        if self.heartbeat_interval_s * 2 > self.lease_s:
            raise ConfigError(
                f"WORKER_LEASE_S={self.lease_s:g} must be at least twice "
                f"WORKER_HEARTBEAT_INTERVAL_S={self.heartbeat_interval_s:g}"
            )
        if self.api_key is not None and not _API_KEY.fullmatch(self.api_key):
            raise ConfigError(
                "WORKER_API_KEY must be at least 32 characters of A-Z a-z 0-9 - _ (it may sit in a URL path); "
                "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if self.supabase_jwt_secret is not None and len(self.supabase_jwt_secret) < 32:
            raise ConfigError(
                "SUPABASE_JWT_SECRET is shorter than 32 characters; copy the project's JWT secret "
                "(Supabase dashboard: Settings → API → JWT Settings)"
            )

    def redacted(self) -> dict[str, object]:
        """The settings as a dict that is safe to log: secrets and passwords replaced."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRETS:
                value = "***" if value else None
            elif f.name == "database_url" and value:
                value = redact_url(value)
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out


def redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` → ``postgresql://user:***@host/db`` (``password=…`` too, in
    key=value strings and URL queries); a string that is neither is not shown at all (it may be
    ``user:secret@host`` with the scheme forgotten)."""
    shown = re.sub(r"(password\s*=\s*)('[^']*'|[^&\s]+)", r"\1***", url)
    if "://" not in shown:
        return shown if "=" in shown else "(not shown: not a connection string)"
    scheme, _, rest = shown.partition("://")
    if "@" not in rest:
        return shown
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
