"""Progress where nobody watches a terminal: a line every few seconds in the event log, not a bar redrawn
hundreds of times."""

from __future__ import annotations

import io

import pytest
from structlog.testing import capture_logs
from tqdm import tqdm

from worker.service import progress
from worker.service.progress import LogProgress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_long_task_logs_a_line_every_interval_and_one_at_the_end() -> None:
    clock = Clock()
    with capture_logs() as events:
        bar = LogProgress(total=1000, unit="photo", desc="processing", interval_s=5.0, clock=clock)
        for _ in range(1000):
            clock.now += 0.06  # 60 s in all
            bar.update(1)
        bar.close()
        bar.close()  # closing twice says nothing more
    lines = [e for e in events if e["event"] == "progress"]
    assert 10 <= len(lines) <= 13  # every 5 s of 60, and the end: not 1000
    assert all(e["task"] == "processing" and e["unit"] == "photo" and e["total"] == 1000 for e in lines)
    done = [e["done"] for e in lines]
    assert done == sorted(done) and done[-1] == 1000 and lines[-1]["percent"] == 100.0
    assert "eta_s" in lines[0] and lines[0]["eta_s"] > 0


def test_refreshes_and_descriptions_as_the_demo_and_training_use_them() -> None:
    clock = Clock()
    with capture_logs() as events:
        bar = LogProgress(total=1, unit="step", desc="training", interval_s=5.0, clock=clock)
        for step in range(1, 201):
            clock.now += 0.1
            bar.total, bar.n = 200, step
            bar.set_description("training")
            bar.set_postfix(epoch=f"{step}/200")
            bar.refresh()
        bar.close()
    lines = [e for e in events if e["event"] == "progress"]
    assert 4 <= len(lines) <= 5 and lines[-1]["done"] == 200 and lines[-1]["epoch"] == "200/200"


def test_a_terminal_gets_a_bar_and_a_log_gets_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Terminal())
    on_terminal = progress.bar(total=3, unit="photo", desc="processing")
    assert isinstance(on_terminal, tqdm)
    on_terminal.close()
    monkeypatch.setattr("sys.stderr", io.StringIO())
    in_a_log = progress.bar(total=3, unit="photo", desc="processing", leave=False)
    assert isinstance(in_a_log, LogProgress)
    in_a_log.update(3)
    in_a_log.close()
    assert "\r" not in __import__("sys").stderr.getvalue()
