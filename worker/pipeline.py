"""Stream a job's photos through the six phases, keeping the device busy and memory bounded.

::

    fetch + decode (I/O threads, ``prefetch`` ahead)
        → analysis → style → retouch → cleanup → composition   (main thread, batches)
        → output encode + deliver (I/O threads)
        → ``on_result`` (main thread: the caller writes the photo row)

The pipeline knows nothing about where bytes come from or go to: each
:class:`PhotoTask` brings a ``fetch`` callable and the caller passes a
``deliver`` callable (upload to storage, or write to a folder). A failure that
belongs to one photo (see :func:`worker.errors.classify`) fails that photo
only; the others go on. A failure of the job (storage down, GPU out of memory)
propagates to the caller, which decides about retrying.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from worker import decode as decoder
from worker import logs
from worker.errors import Failure, PhotoError, WorkerError, classify
from worker.frame import Frame
from worker.phases import PHASES, PhaseContext, analysis, cleanup, composition, output, retouch, style

# The phases that run on the main thread, over batches; "output" runs per photo in the I/O threads.
PhaseFn = Callable[[list[Frame], PhaseContext], None]
BATCH_PHASES: tuple[tuple[str, PhaseFn], ...] = (
    ("analysis", analysis.run),
    ("style", style.run),
    ("retouch", retouch.run),
    ("cleanup", cleanup.run),
    ("composition", composition.run),
)
assert (*tuple(name for name, _ in BATCH_PHASES), "output") == PHASES

# This many photos in a row failing with an unexpected error means the fault is not in the photos.
_CIRCUIT_BREAKER = 5
# While the main thread waits on a download or an upload, it tells the watchers this often.
_WAIT_SLICE_S = 0.5

log = logs.get("pipeline")
_T = TypeVar("_T")


@dataclass(frozen=True)
class PhotoTask:
    photo_id: str
    filename: str
    fetch: Callable[[], bytes]


@dataclass
class PhotoResult:
    """What became of one photo. ``failure`` is set (and ``frame`` may be None) when it failed."""

    task: PhotoTask
    frame: Frame | None
    failure: Failure | None = None
    failed_phase: str | None = None
    delivered: dict[str, Any] = field(default_factory=dict)  # what ``deliver`` returned (e.g. storage keys)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class PipelineStats:
    done: int = 0
    failed: int = 0
    stopped: bool = False
    wall_s: float = 0.0
    phase_s: dict[str, float] = field(default_factory=dict)  # summed over photos

    def add(self, timings: dict[str, float]) -> None:
        for name, seconds in timings.items():
            self.phase_s[name] = self.phase_s.get(name, 0.0) + seconds


Deliver = Callable[[Frame], dict[str, Any]]


class PipelineWatcher:
    """Sees every pipeline's progress (the daemon's systemd notifier and its metrics are watchers).

    Every method is called on the thread that runs the phases — never from an I/O thread — so a
    watcher that pings a watchdog proves that *this* thread is alive: a GPU call that hangs stops
    the calls. The defaults do nothing; a watcher's exception is logged and never fails a job.
    """

    def started(self, photos: int | None) -> None:
        """A run begins with ``photos`` tasks (None when the tasks are a stream of unknown length)."""

    def phase_started(self, phase: str, photos: int) -> None:
        """A batch phase starts on ``photos`` photos."""

    def phase_done(self, phase: str, photos: int, seconds: float) -> None:
        """A batch phase finished on ``photos`` photos in ``seconds``."""

    def photo_done(self, result: PhotoResult) -> None:
        """A photo is finished (delivered and reported, or failed)."""

    def waiting(self, on: str) -> None:
        """The main thread is blocked on I/O (``download`` or ``upload``); called every ~0.5 s."""


# Process-wide: the daemon registers its watchers once at start (see ``watching``).
WATCHERS: list[PipelineWatcher] = []


@contextmanager
def watching(*watchers: PipelineWatcher) -> Iterator[None]:
    """Every pipeline run inside this block reports to ``watchers``."""
    WATCHERS.extend(watchers)
    try:
        yield
    finally:
        for watcher in watchers:
            WATCHERS.remove(watcher)


def _tell(method: str, *args: Any) -> None:
    for watcher in list(WATCHERS):
        try:
            getattr(watcher, method)(*args)
        except Exception as exc:
            log.warning("pipeline_watcher_failed", watcher=type(watcher).__name__, error=repr(exc))


def _wait(fut: Future[_T], on: str) -> _T:
    """``fut.result()``, telling the watchers while this (the main) thread waits on ``on``."""
    while True:
        try:
            return fut.result(timeout=_WAIT_SLICE_S)
        except TimeoutError:
            if fut.done():  # the task itself raised a TimeoutError (a socket timeout): that is its result
                raise
            _tell("waiting", on)


@dataclass
class _Decoded:
    task: PhotoTask
    frame: Frame | None
    failure: Failure | None
    failed_phase: str | None
    timings: dict[str, float]


class Pipeline:
    """Runs photos through the phases. One instance per job (it holds the job's context)."""

    def __init__(
        self,
        ctx: PhaseContext,
        deliver: Deliver,
        *,
        batch_size: int = 1,
        io_threads: int = 4,
        prefetch: int = 8,
        max_pixels: int = 250_000_000,
        on_phase: Callable[[str, int], None] | None = None,
        phases: Sequence[tuple[str, PhaseFn]] = BATCH_PHASES,
    ) -> None:
        self.ctx = ctx
        self.phases = tuple(phases)
        self.on_phase = on_phase
        self.deliver = deliver
        self.batch_size = max(1, batch_size)
        self.io_threads = max(1, io_threads)
        self.prefetch = max(self.batch_size, prefetch)
        self.max_pixels = max_pixels
        self.current_phase = "download"
        self._unexpected_in_a_row = 0
        self._exhausted = False

    # -- public -------------------------------------------------------------------------------
    def run(
        self,
        tasks: Iterable[PhotoTask],
        on_result: Callable[[PhotoResult], None],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> PipelineStats:
        """Process every task; ``on_result`` is called on this thread, once per photo, as each finishes.

        Returns early (``stats.stopped``) when ``should_stop()`` turns true: photos already
        encoded are still delivered and reported; the rest are left untouched.
        """
        stats = PipelineStats()
        start = time.perf_counter()
        _tell("started", len(tasks) if isinstance(tasks, Sized) else None)
        pending_out: deque[Future[PhotoResult]] = deque()
        max_out = 2 * self.batch_size + self.io_threads

        def drain(keep: int) -> None:
            """Report finished photos in order; block while more than ``keep`` are in flight."""
            while pending_out and (len(pending_out) > keep or pending_out[0].done()):
                result = _wait(pending_out.popleft(), "upload")
                stats.add(result.timings)
                if result.ok:
                    stats.done += 1
                else:
                    stats.failed += 1
                on_result(result)
                _tell("photo_done", result)

        with (
            ThreadPoolExecutor(self.io_threads, thread_name_prefix="fetch") as fetch_pool,
            ThreadPoolExecutor(self.io_threads, thread_name_prefix="deliver") as out_pool,
        ):
            decoded_stream = self._decoded(iter(tasks), fetch_pool, should_stop)
            try:
                for batch in _batches(decoded_stream, self.batch_size):
                    if should_stop():
                        stats.stopped = True
                        break
                    ready: list[_Decoded] = []
                    for item in batch:
                        if item.frame is None:
                            pending_out.append(_done_future(self._failed(item)))
                        else:
                            ready.append(item)
                    survivors = self._run_phases(ready, pending_out, should_stop)
                    if survivors is None:
                        stats.stopped = True
                        break
                    for item in survivors:
                        pending_out.append(out_pool.submit(self._output_and_deliver, item))
                    drain(max_out)
                else:
                    stats.stopped = not self._exhausted
            finally:
                decoded_stream.close()
                drain(0)
        stats.wall_s = time.perf_counter() - start
        return stats

    # -- stages -------------------------------------------------------------------------------
    def _decoded(
        self, tasks: Iterator[PhotoTask], pool: ThreadPoolExecutor, should_stop: Callable[[], bool]
    ) -> Generator[_Decoded, None, None]:
        """Fetch and decode ``prefetch`` photos ahead, yielding them in task order."""
        window: deque[Future[_Decoded]] = deque()
        self._exhausted = False
        try:
            for task in tasks:
                window.append(pool.submit(self._fetch_decode, task))
                if len(window) >= self.prefetch:
                    yield _wait(window.popleft(), "download")
                if should_stop():
                    return
            self._exhausted = True
            while window:
                yield _wait(window.popleft(), "download")
        finally:
            for fut in window:
                fut.cancel()

    def _fetch_decode(self, task: PhotoTask) -> _Decoded:
        timings: dict[str, float] = {}
        phase = "download"
        try:
            t0 = time.perf_counter()
            data = task.fetch()
            timings["download"] = time.perf_counter() - t0
            phase = "decode"
            t0 = time.perf_counter()
            frame = decoder.decode(data, photo_id=task.photo_id, filename=task.filename, max_pixels=self.max_pixels)
            timings["decode"] = time.perf_counter() - t0
            frame.timings.update(timings)
            return _Decoded(task, frame, None, None, timings)
        except Exception as exc:
            failure = classify(exc)
            if failure.scope == "job":
                raise
            failed_phase = exc.phase if isinstance(exc, PhotoError) else phase
            return _Decoded(task, None, failure, failed_phase, timings)

    def _run_phases(
        self, items: list[_Decoded], pending_out: deque[Future[PhotoResult]], should_stop: Callable[[], bool]
    ) -> list[_Decoded] | None:
        """Run the batch phases; returns the items that survived, or None when asked to stop."""
        alive = items
        for name, fn in self.phases:
            if not alive:
                break
            if should_stop():
                return None
            self.current_phase = name
            _tell("phase_started", name, len(alive))
            alive = self._phase_over_batch(name, fn, alive, pending_out)
        if alive:
            self._unexpected_in_a_row = 0  # a photo came through every phase: the fault is not everywhere
        return alive

    def _phase_over_batch(
        self,
        name: str,
        fn: PhaseFn,
        items: list[_Decoded],
        pending_out: deque[Future[PhotoResult]],
    ) -> list[_Decoded]:
        frames = [item.frame for item in items if item.frame is not None]
        t0 = time.perf_counter()
        try:
            fn(frames, self.ctx)
        except Exception as exc:
            if classify(exc).scope == "job" and not _is_unexpected(exc):
                raise
            if len(items) == 1:
                self._fail_item(items[0], name, exc, pending_out)
                return []
            # Find the photo(s) at fault by running the phase on each photo alone.
            survivors = []
            for item in items:
                if self._phase_over_batch(name, fn, [item], pending_out):
                    survivors.append(item)
            return survivors
        elapsed = time.perf_counter() - t0
        per_photo = elapsed / max(1, len(frames))
        for item in items:
            item.timings[name] = per_photo
            if item.frame is not None:
                item.frame.timings[name] = per_photo
        if self.on_phase is not None:
            self.on_phase(name, len(frames))
        _tell("phase_done", name, len(frames), elapsed)
        return items

    def _fail_item(self, item: _Decoded, phase: str, exc: Exception, pending_out: deque[Future[PhotoResult]]) -> None:
        failure = classify(exc)
        if _is_unexpected(exc):
            self._unexpected_in_a_row += 1
            if self._unexpected_in_a_row >= _CIRCUIT_BREAKER:
                raise exc
            failure = Failure("photo", False, f"internal error in {phase}: {failure.reason}", failure.kind)
        item.failure, item.failed_phase = failure, phase
        pending_out.append(_done_future(self._failed(item)))

    def _output_and_deliver(self, item: _Decoded) -> PhotoResult:
        frame = item.frame
        assert frame is not None
        try:
            t0 = time.perf_counter()
            output.run([frame], self.ctx)
            item.timings["output"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            delivered = self.deliver(frame)
            item.timings["upload"] = time.perf_counter() - t0
            frame.timings.update(item.timings)
        except Exception as exc:
            failure = classify(exc)
            if failure.scope == "job" and not _is_unexpected(exc):
                raise
            if _is_unexpected(exc):
                failure = Failure("photo", False, f"internal error in output: {failure.reason}", failure.kind)
            return PhotoResult(item.task, frame, failure, "output", timings=item.timings)
        finally:
            frame.outputs = {}  # the bytes are uploaded; do not keep them
        return PhotoResult(item.task, frame, None, None, delivered, item.timings)

    @staticmethod
    def _failed(item: _Decoded) -> PhotoResult:
        return PhotoResult(item.task, item.frame, item.failure, item.failed_phase, timings=item.timings)


def _is_unexpected(exc: BaseException) -> bool:
    """An exception we did not raise on purpose and that is not a known job-level condition."""
    if isinstance(exc, WorkerError):
        return False
    kind = classify(exc).kind
    return kind not in {"DatabaseUnavailable", "OOM", "GpuOOM"}


def _batches(items: Iterator[_Decoded], size: int) -> Iterator[list[_Decoded]]:
    batch: list[_Decoded] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _done_future(result: PhotoResult) -> Future[PhotoResult]:
    fut: Future[PhotoResult] = Future()
    fut.set_result(result)
    return fut
