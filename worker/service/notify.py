"""Tell the service manager what the daemon is doing: ready, status, watchdog, stopping.

systemd's notify protocol (``sd_notify(3)``): one datagram of newline-separated
``VAR=VALUE`` lines to the ``AF_UNIX`` socket named in ``$NOTIFY_SOCKET`` — a
path, or ``@name`` for a socket in the abstract namespace. Without
``NOTIFY_SOCKET`` every call is a no-op, so the same daemon runs under systemd,
in a container, or in a terminal.

* ``READY=1`` once the models are loaded and the database answers (``Type=notify``
  units start their dependants, and ``systemctl start`` returns, only then).
* ``STATUS=…`` what the worker is doing: ``idle``, or the job, its phase and
  *n of m* photos (``systemctl status`` shows it).
* ``WATCHDOG=1`` while the thread that does the work is alive. ``WATCHDOG_USEC``
  (set by ``WatchdogSec=``) gives the deadline; the pings come at most every
  quarter of it. Pings are only ever sent **from the thread that created the
  notifier** (the daemon's main thread, which runs the GPU phases or hears the phase lanes'
  progress): a call from
  any other thread is ignored, so an upload or heartbeat thread can never keep
  a hung GPU call alive.
* While that thread is blocked on I/O (waiting for a download or an upload) it
  keeps pinging through :meth:`Notifier.waiting`, but only for ``io_budget_s``
  after its last real progress or the last storage request that finished (any
  thread: :func:`transferred`; a large file's resumable upload is many requests):
  a thread pool that hangs forever still ends in a restart.
* ``STOPPING=1`` on SIGTERM, while the job is being released.
* :func:`stalled`: the same signs of life, asked by the job's heartbeat thread, which stops renewing
  the lease once the working thread has been silent for the window — the job moves on to another
  worker even where nothing restarts this one.

The same pings rewrite an optional *liveness file* (``WORKER_LIVENESS_FILE``)
with a deadline; ``apelier-worker doctor --quick`` — a container's
``HEALTHCHECK`` — reads it, since there is no systemd watchdog in a container.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from worker.service import logs

log = logs.get("notify")

# Without a systemd watchdog (containers): how long the liveness file stays valid after a ping.
DEFAULT_WINDOW_S = 300.0
_MAX_STATUS = 200


class Notifier:
    """One daemon's channel to systemd (and to the liveness file). Create it on the working thread."""

    def __init__(
        self,
        address: str | None = None,
        *,
        watchdog_s: float | None = None,
        liveness_file: Path | None = None,
        io_budget_s: float = 1800.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = address or None
        self.watchdog_s = watchdog_s if watchdog_s and watchdog_s > 0 else None
        self.liveness_file = liveness_file
        self.io_budget_s = io_budget_s
        self._clock = clock
        self._owner = threading.get_ident()
        self._sock: socket.socket | None = None
        self._target: str | bytes | None = None
        self._last_ping = -math.inf
        self._last_progress = clock()
        self._last_transfer = -math.inf  # a storage request finished (any thread)
        self._last_sign = self._last_progress  # of life: progress, or a wait on I/O within the budget
        self._status = ""
        self._warned: set[str] = set()
        if self.address:
            self._open()

    @classmethod
    def from_env(
        cls,
        env: MutableMapping[str, str] | None = None,
        *,
        unset: bool = False,
        liveness_file: Path | None = None,
        io_budget_s: float = 1800.0,
    ) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (the service manager's, not settings).

        ``unset`` removes them from ``env`` so child processes (an embedded PostgreSQL) do not
        talk to systemd in the worker's name.
        """
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_s: float | None = None
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if usec and (not pid or pid.strip() == str(os.getpid())):
            try:
                watchdog_s = int(usec) / 1e6
            except ValueError:
                log.warning("watchdog_usec_invalid", value=usec)
        if unset:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                env.pop(name, None)
        return cls(address, watchdog_s=watchdog_s, liveness_file=liveness_file, io_budget_s=io_budget_s)

    # -- transport ----------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def window_s(self) -> float:
        """How long a ping keeps the worker alive: the systemd watchdog's, else ``DEFAULT_WINDOW_S``."""
        return self.watchdog_s or DEFAULT_WINDOW_S

    @property
    def ping_every_s(self) -> float:
        return min(1.0, self.window_s / 4)

    def _open(self) -> None:
        assert self.address
        if self.address.startswith("@"):
            self._target = b"\0" + self.address[1:].encode()
        elif self.address.startswith("/"):
            self._target = self.address
        else:  # e.g. systemd's vsock: addresses (VMs); not for a worker on a GPU box
            log.warning("notify_socket_unsupported", address=self.address)
            return
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)  # a stuck service manager must never block the worker

    def send(self, *assignments: str) -> bool:
        """Send ``VAR=VALUE`` lines as one datagram; False when there is nobody to tell or it failed."""
        if self._sock is None or self._target is None:
            return False
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._target)
        except OSError as exc:
            key = type(exc).__name__
            if key not in self._warned:  # once per kind: a missing socket must not flood the log
                self._warned.add(key)
                log.warning("notify_failed", error=str(exc), address=self.address)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- what the daemon says -----------------------------------------------------------------
    def ready(self, status: str) -> None:
        self._status = _one_line(status)
        self._last_progress = self._last_sign = self._clock()
        self.send("READY=1", f"STATUS={self._status}")
        self._ping(force=True)

    def status(self, text: str) -> None:
        """``STATUS=`` when it changed (cheap to call often)."""
        text = _one_line(text)
        if text != self._status:
            self._status = text
            self.send(f"STATUS={text}")

    def stopping(self, status: str = "stopping") -> None:
        self._status = _one_line(status)
        self.send("STOPPING=1", f"STATUS={self._status}")

    def alive(self) -> None:
        """The working thread made progress (a phase, a photo, a loop turn): ping the watchdog."""
        if not self._on_owner_thread():
            return
        self._last_progress = self._last_sign = self._clock()
        self._ping()

    def waiting(self) -> None:
        """The working thread is blocked on I/O: ping, but only ``io_budget_s`` past the last progress."""
        if not self._on_owner_thread():
            return
        stalled_s = self._clock() - max(self._last_progress, self._last_transfer)
        if stalled_s > self.io_budget_s:
            if "io_budget" not in self._warned:
                self._warned.add("io_budget")
                log.error(
                    "watchdog_pings_stopped",
                    reason="the main thread has waited on I/O, with no storage request finishing, "
                    "longer than one request's timeouts and retries allow",
                    waited_s=round(stalled_s),
                )
            return
        self._last_sign = self._clock()
        self._ping()

    def transferred(self) -> None:
        """A storage request finished (from any thread): the I/O the working thread may wait on moves."""
        self._last_transfer = self._clock()

    def stalled(self) -> bool:
        """The working thread has shown no sign of life for a whole window (any thread may ask)."""
        return self._clock() - self._last_sign > self.window_s

    # -- internals ----------------------------------------------------------------------------
    def _on_owner_thread(self) -> bool:
        return threading.get_ident() == self._owner

    def _ping(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last_ping < self.ping_every_s:
            return
        self._last_ping = now
        if self.watchdog_s:
            self.send("WATCHDOG=1")
        if self.liveness_file is not None:
            self._write_liveness()

    def _write_liveness(self) -> None:
        assert self.liveness_file is not None
        record = {
            "pid": os.getpid(),
            "updated_at": time.time(),
            "deadline": time.time() + self.window_s,
            "status": self._status,
        }
        tmp = self.liveness_file.with_name(f".{self.liveness_file.name}.{os.getpid()}")
        try:
            self.liveness_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(record))
            tmp.replace(self.liveness_file)
        except OSError as exc:
            if "liveness" not in self._warned:
                self._warned.add("liveness")
                log.warning("liveness_file_unwritable", path=str(self.liveness_file), error=str(exc))


def read_liveness(path: Path) -> dict[str, Any] | None:
    """The liveness record a running worker keeps at ``path``, or None when there is none."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_STATUS else flat[: _MAX_STATUS - 1] + "…"


# -- the process's notifier, for code that is not handed one (a long training loop) -------------
_installed: Notifier | None = None


def install(notifier: Notifier | None) -> None:
    global _installed  # noqa: PLW0603 - one notifier per process, set by the daemon at start
    _installed = notifier


def stalled() -> bool:
    """True when the daemon's working thread has been silent for its watchdog window (a hung GPU call).

    The job's heartbeat thread asks this, and stops renewing the lease: the job then goes to another
    worker even where no watchdog restarts this one (a container). False outside the daemon.
    """
    return _installed is not None and _installed.stalled()


def transferred() -> None:
    """A storage request finished (any thread; a no-op outside the daemon): see :meth:`Notifier.waiting`."""
    if _installed is not None:
        _installed.transferred()


def waiting() -> None:
    """The working thread waits on I/O it started (downloads in a pool): see :meth:`Notifier.waiting`.

    A sign of life for as long as storage requests keep finishing (the I/O budget); a no-op outside
    the daemon, and from any thread but the daemon's main thread.
    """
    if _installed is not None:
        _installed.waiting()


def alive() -> None:
    """Ping the watchdog from a long loop on the working thread (e.g. once per training epoch).

    A no-op outside the daemon, and from any thread but the daemon's main thread.
    """
    if _installed is not None:
        _installed.alive()
