"""Progress that a person watches: a bar on a terminal, a line every few seconds in a log.

On a terminal, a tqdm bar redraws itself in place. Where stderr is not a terminal (systemd's
journal, a CI log, ``2> file``) a bar cannot redraw: tqdm would append every refresh, hundreds of
times, to one endless line. There :func:`bar` returns a :class:`LogProgress` instead, which logs a
``progress`` event (JSON with ``WORKER_LOG_FORMAT=auto``, like every other event on stderr) at most
every :data:`LOG_INTERVAL_S` seconds and once at the end; stdout keeps the command's own output.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from tqdm import tqdm

from worker.service import logs

log = logs.get("progress")
LOG_INTERVAL_S = 5.0


class LogProgress:
    """The part of tqdm's interface the commands use (``update``, ``n``/``total``, ``set_description``,
    ``set_postfix``, ``refresh``, ``close``), as ``progress`` events at most every ``interval_s``."""

    def __init__(
        self,
        *,
        total: float | None,
        unit: str = "it",
        desc: str = "",
        interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        **_: Any,
    ) -> None:
        self.total = total
        self.n: float = 0
        self.unit = unit
        self.desc = desc
        self.postfix: dict[str, Any] = {}
        self.interval_s = interval_s
        self._clock = clock
        self._started = clock()
        self._logged_at = self._started
        self._logged_n: float | None = None
        self._closed = False

    def update(self, n: float = 1) -> None:
        self.n += n
        self.refresh()

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def set_postfix(self, **fields: Any) -> None:
        self.postfix = fields

    def refresh(self) -> None:
        """Log where things stand if ``interval_s`` has passed since the last line."""
        if not self._closed and self._clock() - self._logged_at >= self.interval_s:
            self._log()

    def close(self) -> None:
        """The last line (unless nothing moved since the one before)."""
        if not self._closed and self._logged_n != self.n:
            self._log()
        self._closed = True

    def _log(self) -> None:
        now = self._clock()
        elapsed = now - self._started
        fields: dict[str, Any] = {"task": self.desc, "done": self.n, "unit": self.unit, "elapsed_s": round(elapsed, 1)}
        if self.total:
            fields["total"] = self.total
            fields["percent"] = round(100.0 * self.n / self.total, 1)
            if 0 < self.n < self.total:
                fields["eta_s"] = round(elapsed * (self.total - self.n) / self.n, 1)
        log.info("progress", **fields, **self.postfix)
        self._logged_at, self._logged_n = now, self.n

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def bar(*, total: float | None, unit: str = "it", desc: str = "", disable: bool = False, **tqdm_args: Any) -> Any:
    """A tqdm bar on a terminal (``tqdm_args`` passed on), else a :class:`LogProgress`; either way
    with ``update``, ``n``, ``total``, ``set_description``, ``set_postfix``, ``refresh`` and ``close``."""
    if disable or sys.stderr.isatty():
        return tqdm(total=total, unit=unit, desc=desc, disable=disable, file=sys.stderr, **tqdm_args)
    return LogProgress(total=total, unit=unit, desc=desc)
