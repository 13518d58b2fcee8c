"""The real daemon (``python -m worker run``) under a fake systemd: a datagram socket this test opens.

It must say READY=1 once it can work, ping the watchdog while idle and while it runs a gallery of
real photos, say what it is doing in STATUS=, serve its metrics, and say STOPPING=1 on SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.test_daemon_process import start_worker, wait_for, worker_env
from tests.conftest import make_gallery
from tests.fake_systemd import FakeSystemd
from worker.queue.database import Queue
from worker.storage.local import LocalStorage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake_systemd():
    manager = FakeSystemd()
    yield manager
    manager.close()


def test_ready_watchdog_status_metrics_and_stopping_under_a_fake_systemd(
    queue: Queue, db_url: str, tmp_path: Path, real_photos, fake_systemd: FakeSystemd
) -> None:
    data_dir = tmp_path / "data"
    storage = LocalStorage(data_dir / "storage" / "photos")
    photos = [(f"{i}-{name}", data) for i in range(2) for name, data in real_photos]
    gallery = make_gallery(queue, storage, photos)

    port = free_port()
    env = worker_env(db_url, data_dir, "worker-notify")
    env.update(
        NOTIFY_SOCKET=fake_systemd.address,
        WATCHDOG_USEC="400000",  # pings at most every 0.1 s
        WORKER_METRICS_PORT=str(port),
        WORKER_LIVENESS_FILE=str(tmp_path / "alive.json"),
    )
    log = tmp_path / "worker.log"
    proc = start_worker(env, log=log)
    try:
        # READY=1 once models are loaded and the database answers, then pings while idle.
        wait_for(lambda: "READY=1" in fake_systemd.lines() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, log.read_text()[-3000:]
        ready = fake_systemd.index(lambda line: line == "READY=1")
        assert fake_systemd.index(lambda line: line.startswith("STATUS=idle"), ready) > ready
        wait_for(lambda: fake_systemd.lines()[ready:].count("WATCHDOG=1") >= 3, timeout=30)

        job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
        wait_for(lambda: (queue.app.get_job(job_id) or {}).get("status") == "completed", timeout=180)
        wait_for(lambda: fake_systemd.index(lambda line: "completed" in line and job_id in line) >= 0, timeout=10)

        lines = fake_systemd.lines()
        started = fake_systemd.index(lambda line: line.startswith("STATUS=") and job_id in line and "starting" in line)
        finished = fake_systemd.index(
            lambda line: line.startswith("STATUS=") and job_id in line and "completed" in line
        )
        assert 0 < ready < started < finished, lines
        working = lines[started:finished]
        assert working.count("WATCHDOG=1") >= 2, working  # pings while working, not only while idle
        # STATUS says the job, the phase, and n of m photos.
        assert any(f"retouch, 0 of {len(photos)} photos" in line for line in working), working
        assert any(f"of {len(photos)} photos" in line and line.startswith(f"STATUS=job {job_id}") for line in working)
        assert any(f"{len(photos)} of {len(photos)} photos" in line for line in working), working

        # Metrics, served by the same process.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
        assert {"apelier_jobs", "apelier_photos_processed", "apelier_phase_seconds"} <= set(families)
        processed = [s.value for s in families["apelier_photos_processed"].samples if s.name.endswith("_total")]
        assert processed == [len(photos)]

        # The liveness file (for containers) is kept fresh by the same pings.
        assert (tmp_path / "alive.json").is_file()

        before_stop = len(fake_systemd.lines())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_for(lambda: "STOPPING=1" in fake_systemd.lines()[before_stop:], timeout=5)
    after = fake_systemd.lines()[before_stop:]
    assert "READY=1" not in after
    assert any(line.startswith("STATUS=stopping (SIGTERM)") for line in after), after


def test_a_watchdog_abort_leaves_every_threads_stack_in_the_log(
    db_url: str, tmp_path: Path, fake_systemd: FakeSystemd
) -> None:
    """systemd's watchdog ends a hung worker with SIGABRT: the journal must then show where it hung."""
    env = worker_env(db_url, tmp_path / "data", "worker-abort")
    env.update(NOTIFY_SOCKET=fake_systemd.address, WATCHDOG_USEC="2000000")
    log = tmp_path / "worker.log"
    proc = start_worker(env, log=log)
    try:
        wait_for(lambda: "READY=1" in fake_systemd.lines() or proc.poll() is not None, timeout=60)
        proc.send_signal(signal.SIGABRT)
        assert proc.wait(timeout=30) == -signal.SIGABRT
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Fatal Python error: Aborted" in text
    assert "Current thread" in text and "worker/service/daemon.py" in text  # the main loop's frame


def test_a_worker_that_cannot_start_says_why_in_its_status(
    empty_db_url: str, tmp_path: Path, fake_systemd: FakeSystemd
) -> None:
    env = worker_env(empty_db_url, tmp_path / "data", "worker-no-schema")
    env.update(NOTIFY_SOCKET=fake_systemd.address, WATCHDOG_USEC="2000000")
    proc = start_worker(env, log=tmp_path / "worker.log")
    assert proc.wait(timeout=60) == 2  # a one-line error; systemd restarts it (Restart=always)
    wait_for(lambda: any(line.startswith("STATUS=failed:") for line in fake_systemd.lines()), timeout=5)
    lines = fake_systemd.lines()
    assert "READY=1" not in lines
    assert any(line.startswith("STATUS=failed:") and "apelier-worker migrate" in line for line in lines), lines
