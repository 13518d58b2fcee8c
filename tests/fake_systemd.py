"""The service manager's end of sd_notify, for tests and benchmarks: an abstract AF_UNIX datagram
socket like systemd's, recording (arrival time, line) for every ``VAR=VALUE`` line it receives."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time

_ids = itertools.count()


class FakeSystemd:
    """Receives sd_notify datagrams on an abstract AF_UNIX socket, as systemd's manager does."""

    def __init__(self) -> None:
        self.name = f"apelier-test-notify-{os.getpid()}-{next(_ids)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name.encode())
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []  # (arrival, one VAR=VALUE line)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return "@" + self.name

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            now = time.monotonic()
            with self._lock:
                self.messages.extend((now, line) for line in data.decode().split("\n"))

    def lines(self) -> list[str]:
        with self._lock:
            return [line for _, line in self.messages]

    def arrivals(self, line: str) -> list[float]:
        """When each message equal to ``line`` arrived (monotonic)."""
        with self._lock:
            return [t for t, got in self.messages if got == line]

    def first(self, text: str, after: float = 0.0) -> float | None:
        """When the first line starting with ``text`` arrived at or after ``after`` (monotonic), if it did."""
        with self._lock:
            return next((t for t, line in self.messages if line.startswith(text) and t >= after), None)

    def index(self, predicate, start: int = 0) -> int:
        for i, line in enumerate(self.lines()[start:], start):
            if predicate(line):
                return i
        return -1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
