"""The systemd notify protocol, the watchdog rules, and the pipeline's pings from its main thread only."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_daemon_process import wait_for
from tests.conftest import jpeg_bytes
from tests.fake_systemd import FakeSystemd
from worker.frame import Frame
from worker.jobs.runtime import JobOutcome
from worker.phases import PhaseContext
from worker.pipeline.stream import BATCH_PHASES, PhotoTask, Pipeline, PipelineStats, PipelineWatcher, watching
from worker.service import notify
from worker.service.instrument import StatusReporter, io_budget_s
from worker.service.notify import Notifier, read_liveness


class Receiver:
    """A datagram socket like systemd's: a filesystem path, or an abstract name (``@…``)."""

    def __init__(self, abstract: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"apelier-test-{os.getpid()}-{id(self)}"
            self.sock.bind(b"\0" + name.encode())
            self.address = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="sdn")  # short: AF_UNIX paths are limited to 107 bytes
            self.address = os.path.join(self._dir, "notify")
            self.sock.bind(self.address)
        self.sock.setblocking(False)

    def datagrams(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            os.unlink(self.address)
            os.rmdir(self._dir)


@pytest.fixture(params=[False, True], ids=["path", "abstract"])
def receiver(request) -> Iterator[Receiver]:
    r = Receiver(abstract=request.param)
    yield r
    r.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_status_watchdog_and_stopping_arrive_as_systemd_expects(receiver: Receiver) -> None:
    clock = Clock()
    n = Notifier(receiver.address, watchdog_s=8.0, clock=clock)
    assert n.enabled and n.ping_every_s == 1.0
    n.ready("idle")
    n.status("job 1: analysis")
    n.status("job 1: analysis")  # unchanged: not sent again
    n.status("two\nlines   and\ttabs")
    n.alive()  # within a second of the last ping: not sent
    clock.now += 1.5
    n.alive()
    n.stopping("stopping (SIGTERM)")
    assert receiver.datagrams() == [
        "READY=1\nSTATUS=idle",
        "WATCHDOG=1",
        "STATUS=job 1: analysis",
        "STATUS=two lines and tabs",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping (SIGTERM)",
    ]
    n.status("x" * 500)
    (long_status,) = receiver.datagrams()
    assert len(long_status) == len("STATUS=") + 200
    n.close()


def test_without_notify_socket_everything_is_a_no_op(tmp_path: Path) -> None:
    n = Notifier.from_env({})
    assert not n.enabled and n.watchdog_s is None
    n.ready("idle")
    n.alive()
    n.waiting()
    n.stopping()
    assert not n.send("READY=1")


def test_from_env_reads_the_watchdog_and_hides_the_socket_from_children(receiver: Receiver) -> None:
    env = {"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    n = Notifier.from_env(env, unset=True)
    assert n.enabled and n.watchdog_s == 30.0 and n.ping_every_s == 1.0
    assert env == {}
    # A watchdog meant for another process (WATCHDOG_PID) is not ours to feed.
    other = Notifier.from_env({"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None
    other.alive()
    assert receiver.datagrams() == []
    n.close()
    other.close()


def test_a_vanished_socket_never_raises(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "gone"), watchdog_s=1.0)
    assert not n.send("READY=1")
    n.ready("idle")
    n.alive()
    n.close()


def test_only_the_working_thread_can_feed_the_watchdog(receiver: Receiver) -> None:
    clock = Clock()
    n = Notifier(receiver.address, watchdog_s=2.0, clock=clock)
    notify.install(n)
    try:
        clock.now += 10

        def from_a_side_thread() -> None:
            n.alive()
            n.waiting()
            notify.alive()

        side = threading.Thread(target=from_a_side_thread)
        side.start()
        side.join()
        assert receiver.datagrams() == []
        notify.alive()
        assert receiver.datagrams() == ["WATCHDOG=1"]
    finally:
        notify.install(None)
        n.close()


def test_waiting_on_io_pings_only_within_the_budget_since_the_last_progress(receiver: Receiver) -> None:
    clock = Clock()
    n = Notifier(receiver.address, watchdog_s=4.0, io_budget_s=60.0, clock=clock)
    n.alive()
    pings = 0
    for _ in range(100):  # 100 s blocked on an upload, asking every second
        clock.now += 1.0
        n.waiting()
        pings += receiver.datagrams().count("WATCHDOG=1")
    assert 55 <= pings <= 61  # then it stops, so the watchdog ends a hang of the I/O threads
    n.alive()  # progress again: pings resume
    assert receiver.datagrams() == ["WATCHDOG=1"]
    n.close()


def test_storage_requests_finishing_on_other_threads_keep_the_wait_within_budget(receiver: Receiver) -> None:
    """A resumable upload is many requests: each one that finishes, on an I/O thread, restarts the budget."""
    clock = Clock()
    n = Notifier(receiver.address, watchdog_s=4.0, io_budget_s=60.0, clock=clock)
    n.alive()
    pings = 0
    for second in range(1, 201):  # 200 s on one big upload; a chunk finishes every 50 s
        clock.now += 1.0
        if second % 50 == 0:
            mover = threading.Thread(target=n.transferred)
            mover.start()
            mover.join()
        n.waiting()
        pings += receiver.datagrams().count("WATCHDOG=1")
    assert pings >= 190  # never silent for a whole budget
    clock.now += 61.0  # then no request finishes for longer than one request may take
    n.waiting()
    assert receiver.datagrams() == []
    n.close()


def test_the_liveness_file_carries_a_deadline(tmp_path: Path) -> None:
    path = tmp_path / "run" / "alive.json"
    n = Notifier(None, liveness_file=path)
    assert not n.enabled  # no systemd; the file alone
    n.ready("idle, waiting for jobs")
    record = read_liveness(path)
    assert record is not None and record["pid"] == os.getpid() and record["status"] == "idle, waiting for jobs"
    assert record["deadline"] - time.time() == pytest.approx(notify.DEFAULT_WINDOW_S, abs=5)
    assert read_liveness(tmp_path / "missing.json") is None


def test_the_io_budget_covers_every_storage_retry() -> None:
    from worker.service.config import Settings

    settings = Settings(storage_timeout_s=60, storage_retries=5)
    # One request, every attempt timing out (a resumable chunk's attempt: HEAD, then PATCH), max backoff.
    assert io_budget_s(settings) > 6 * 2 * 60 + 5 * 30


class _WatchedRun:
    """A pipeline run under a fake systemd, the daemon's StatusReporter watching it."""

    def __init__(self) -> None:
        self.manager = FakeSystemd()
        self.notifier = Notifier(self.manager.address, watchdog_s=0.2)  # a ping at most every 50 ms
        self._marker = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def mark(self, text: str) -> None:
        """Queued in order with the notifier's datagrams: reading late cannot blur the window."""
        self._marker.sendto(text.encode(), b"\0" + self.manager.name.encode())

    def run(self, pipeline: Pipeline, tasks: list[PhotoTask]) -> tuple[PipelineStats, list[str]]:
        notify.install(self.notifier)
        try:
            with watching(StatusReporter(self.notifier)):
                stats = pipeline.run(tasks, lambda r: None)
            last = f"STATUS=composition, {len(tasks)} of {len(tasks)} photos"
            wait_for(lambda: last in self.manager.lines(), timeout=5)  # every datagram has been read
            return stats, self.manager.lines()
        finally:
            notify.install(None)
            self.manager.close()
            self._marker.close()
            self.notifier.close()


def test_the_pipeline_pings_from_its_main_thread_and_goes_silent_while_a_phase_hangs(astronaut) -> None:
    """A slow phase on the main thread stops the pings even though uploads go on beside it."""
    watched = _WatchedRun()
    data = jpeg_bytes(astronaut[::4, ::4])

    def slow_download() -> bytes:
        time.sleep(2.0)
        return data

    def composition(frames: list[Frame], ctx: PhaseContext) -> None:
        if any(f.photo_id == "p3" for f in frames):  # this batch "hangs" in a GPU call for 1.5 s
            watched.mark("HANG-START")
            time.sleep(1.5)
            watched.mark("HANG-END")

    def deliver(frame: Frame) -> dict:
        time.sleep(0.3)  # uploads of earlier photos run while the phase hangs ...
        notify.alive()  # ... and an upload thread trying to feed the watchdog is ignored
        return {}

    tasks = [PhotoTask(f"p{i}", f"p{i}.jpg", slow_download if i == 5 else (lambda: data)) for i in range(8)]
    phases = [(name, composition if name == "composition" else fn) for name, fn in BATCH_PHASES]
    pipeline = Pipeline(PhaseContext(), deliver, batch_size=1, io_threads=4, prefetch=1, phases=phases)
    stats, lines = watched.run(pipeline, tasks)
    assert stats.done == 8
    start, end = lines.index("HANG-START"), lines.index("HANG-END")
    assert "WATCHDOG=1" not in lines[start:end], "pings arrived while the main thread was stuck in a phase"
    assert lines.count("WATCHDOG=1") >= 5
    # systemctl status shows what it was doing when it went silent.
    before_hang = [line for line in lines[:start] if line.startswith("STATUS=")]
    assert before_hang[-1].startswith("STATUS=composition, ") and before_hang[-1].endswith(" of 8 photos")
    # The main thread waited on p5's download, and kept pinging meanwhile (from the main thread).
    waiting = watched.manager.index(lambda line: line.endswith("(waiting on download)"))
    resumed = watched.manager.index(lambda line: line.startswith("STATUS=") and "waiting" not in line, waiting)
    assert 0 < waiting < resumed and "WATCHDOG=1" in lines[waiting:resumed]


def test_with_lanes_a_hung_phase_starves_the_watchdog_once_the_other_lanes_are_blocked(astronaut) -> None:
    """In lanes, the other lane's phase events are signs of life; once it waits for the hung phase,
    the main thread (waiting on the lanes, not on I/O) must not keep the watchdog fed."""
    watched = _WatchedRun()
    data = jpeg_bytes(astronaut[::4, ::4])

    def composition(frames: list[Frame], ctx: PhaseContext) -> None:
        if any(f.photo_id == "p3" for f in frames):
            watched.mark("HANG-START")
            time.sleep(0.4)  # the other lane reaches composition and waits for it
            watched.mark("HANG-QUIET")
            time.sleep(1.5)
            watched.mark("HANG-END")

    tasks = [PhotoTask(f"p{i}", f"p{i}.jpg", lambda: data) for i in range(8)]
    phases = [(name, composition if name == "composition" else fn) for name, fn in BATCH_PHASES]
    pipeline = Pipeline(PhaseContext(), lambda f: {}, batch_size=1, io_threads=2, phases=phases, lanes=2)
    stats, lines = watched.run(pipeline, tasks)
    assert stats.done == 8
    start, quiet, end = lines.index("HANG-START"), lines.index("HANG-QUIET"), lines.index("HANG-END")
    assert "WATCHDOG=1" not in lines[quiet:end], "pings arrived while every lane was stuck"
    assert any(line.endswith("(waiting on phases)") for line in lines[start:end])  # it says what it waits on
    assert "WATCHDOG=1" in lines[:start] and "WATCHDOG=1" in lines[end:]  # fed before, and again after


@pytest.mark.timeout(30)
def test_a_download_that_raises_timeouterror_is_its_result_not_a_reason_to_keep_waiting(astronaut) -> None:
    """``Future.result(timeout)`` raises TimeoutError both when time is up and when the task raised one."""
    data = jpeg_bytes(astronaut[::4, ::4])

    def times_out() -> bytes:
        time.sleep(0.7)  # long enough for the main thread to be waiting on it
        raise TimeoutError("read timed out")

    tasks = [PhotoTask("p0", "p0.jpg", lambda: data), PhotoTask("p1", "p1.jpg", times_out)]
    pipeline = Pipeline(PhaseContext(), lambda frame: {}, batch_size=1, io_threads=2, prefetch=1)
    waits: list[str] = []

    class Recorder(PipelineWatcher):
        def waiting(self, on: str) -> None:
            waits.append(on)

    with watching(Recorder()), pytest.raises(TimeoutError, match="read timed out"):
        pipeline.run(tasks, lambda r: None)
    assert waits == ["download"]  # it waited once while the download ran, then saw its error


def test_stalled_means_no_sign_of_life_from_the_working_thread_for_a_window() -> None:
    clock = Clock()
    n = Notifier(None, watchdog_s=10.0, io_budget_s=30.0, clock=clock)
    assert not notify.stalled()  # nothing installed: never stalled
    notify.install(n)
    try:
        clock.now += 9
        assert not n.stalled()
        clock.now += 2
        assert n.stalled() and notify.stalled()
        n.alive()
        assert not n.stalled()
        for _ in range(25):  # waiting on I/O counts as alive, within the I/O budget
            clock.now += 1
            n.waiting()
        assert not n.stalled()
        for _ in range(20):  # past the budget, waiting no longer counts
            clock.now += 1
            n.waiting()
        assert n.stalled()
    finally:
        notify.install(None)


def test_a_hung_main_thread_stops_renewing_its_lease_so_another_worker_takes_the_job(
    queue, db_url, storage, settings, real_photos
) -> None:
    """No watchdog restarts a worker in a container: its heartbeat thread must not keep a hung job."""
    from tests.conftest import make_gallery
    from tests.integration.test_daemon import make_daemon
    from worker.queue.database import Queue

    gallery = make_gallery(queue, storage, real_photos[:1])
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    hang = threading.Event()
    outcome: list[int] = []

    def hung_gpu_call(job, q, runtime, control) -> JobOutcome:
        hang.wait(30)  # the main thread never comes back (until the test lets go)
        return JobOutcome("completed")

    def main_thread() -> None:
        notify.install(Notifier(None, watchdog_s=1.0))  # created on, and owned by, this thread
        try:
            daemon = make_daemon(db_url, storage, settings, drain=True, runners={"gallery": hung_gpu_call})
            outcome.append(daemon.run())
        finally:
            notify.install(None)

    worker = threading.Thread(target=main_thread)
    worker.start()
    other = Queue(db_url, "other-worker")
    try:
        wait_for(lambda: (queue.app.get_job(job_id) or {}).get("status") == "processing", timeout=30)
        # Silent for the window (1 s), then the lease (2 s) lapses: any worker requeues the job.
        wait_for(
            lambda: any(str(r["job_id"]) == job_id for r in other.jobs.requeue_stale(settings.lease_s)), timeout=30
        )
        assert (queue.app.get_job(job_id) or {})["status"] == "queued"
    finally:
        hang.set()
        worker.join(timeout=30)
        other.close()
    assert outcome == [0]
