"""Stream a job's photos through the six phases, keeping the device busy and memory bounded.

::

    fetch + decode (I/O threads, ``prefetch`` ahead)
        → analysis → style → retouch → cleanup → composition   (batches: main thread, or ``lanes``)
        → output encode + deliver (I/O threads)
        → ``on_result`` (main thread: the caller writes the photo row)

With ``lanes`` > 1, that many batches are in the batch phases at once, each in its own thread,
and a phase runs on one batch at a time (a lock per phase), so the phases of successive batches
overlap like stations of an assembly line: while one batch is retouched on the GPU the next one
is analysed on the CPU. A model is never called from two threads at once, and the device holds
one batch per phase at most. Inside a phase, the photos of a batch may share ``photo_threads``
for their CPU work (:meth:`PhaseContext.each`). Everything that reaches the caller — ``on_phase``, the watchers,
``on_result`` — still happens on the calling thread, in photo order.

The pipeline knows nothing about where bytes come from or go to: each
:class:`PhotoTask` brings a ``fetch`` callable and the caller passes a
``deliver`` callable (upload to storage, or write to a folder). A failure that
belongs to one photo (see :func:`worker.errors.classify`) fails that photo
only; the others go on. A failure of the job (storage down, GPU out of memory)
propagates to the caller, which decides about retrying.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from worker.errors import Failure, PhotoError, WorkerError, classify
from worker.frame import Frame
from worker.imaging import decode as decoder
from worker.imaging import device as device_codec
from worker.phases import PhaseContext, analysis, cleanup, composition, output, retouch, style
from worker.service import logs
from worker.service.config import Settings

# The phases that run over batches (on the calling thread, or in lanes); "output" runs per photo in the I/O threads.
PhaseFn = Callable[[list[Frame], PhaseContext], None]
BATCH_PHASES: tuple[tuple[str, PhaseFn], ...] = (
    ("analysis", analysis.run),
    ("style", style.run),
    ("retouch", retouch.run),
    ("cleanup", cleanup.run),
    ("composition", composition.run),
)

# This many photos in a row failing with an unexpected error means the fault is not in the photos.
_CIRCUIT_BREAKER = 5
# While the main thread waits on a download, an upload or the lanes, it tells the watchers this often.
_WAIT_SLICE_S = 0.5
# What ``PipelineWatcher.waiting`` is told while the main thread waits on the lanes (not on I/O).
WAITING_ON_PHASES = "phases"

log = logs.get("pipeline")
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Before:
    """What a batch phase may change on a frame, as it was before the phase ran.

    Phases replace ``frame.image`` (and assign ``faces``, ``tilt`` and their ``report`` entry), never
    write into the arrays they were given, so keeping the references is enough to undo a batch.
    """

    frame: Frame
    image: Any
    faces: list[Any]
    tilt: dict[str, Any] | None
    report: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, frame: Frame) -> _Before:
        return cls(frame, frame.image, list(frame.faces), frame.tilt, dict(frame.report))

    def restore(self) -> None:
        self.frame.image = self.image
        self.frame.faces = list(self.faces)
        self.frame.tilt = self.tilt
        self.frame.report.clear()
        self.frame.report.update(self.report)


@dataclass(frozen=True)
class PhotoTask:
    photo_id: str
    filename: str
    fetch: Callable[[], bytes]
    # Called once the bytes are fetched, before decoding (an I/O thread): the photo's processing
    # starts. The gallery job writes down that the photo is in flight before any of it can run the
    # box out of memory.
    started: Callable[[], None] | None = None


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

    Every method is called on the thread that called :meth:`Pipeline.run` — never from an I/O thread
    or a lane — so a watcher that pings a watchdog proves that *this* thread is alive; the lanes'
    progress reaches it as events, so a GPU call that hangs, here or in a lane, stops the calls.
    The defaults do nothing; a watcher's exception is logged and never fails a job.
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
        """The main thread is blocked (``download``, ``upload``, or :data:`WAITING_ON_PHASES`: on the
        lanes, whose own events show whether they progress); called every ~0.5 s."""


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


Emit = Callable[[tuple[str, tuple[Any, ...]]], None]


@dataclass
class _Decoded:
    task: PhotoTask
    frame: Frame | None
    failure: Failure | None
    failed_phase: str | None
    timings: dict[str, float]


@dataclass
class _Outcome:
    """A batch after the batch phases: the photos that went through (None: stopped part-way), the failed."""

    survivors: list[_Decoded] | None
    failed: list[PhotoResult]


_Batch = tuple[list[PhotoTask], list[PhotoResult], Future[_Outcome]]


@dataclass
class _Run:
    """One call of :meth:`Pipeline.run`: the batches in the batch phases and the photos being
    encoded and delivered, each in photo order, and what was reported so far."""

    pipeline: Pipeline
    on_result: Callable[[PhotoResult], None]
    should_stop: Callable[[], bool]
    max_out: int  # photos in encoding/delivery before the next batch waits for them
    stats: PipelineStats = field(default_factory=PipelineStats)
    pending_out: deque[Future[PhotoResult]] = field(default_factory=deque)
    # Batches in the batch phases, oldest first: their photos in order, those that failed before them.
    in_phases: deque[_Batch] = field(default_factory=deque)

    def drain(self, keep: int) -> None:
        """Report finished photos in order; block while more than ``keep`` are in flight."""
        pending_out, stats = self.pending_out, self.stats
        while pending_out and (len(pending_out) > keep or pending_out[0].done()):
            result = _wait(pending_out.popleft(), "upload")
            stats.add(result.timings)
            if result.ok:
                stats.done += 1
            else:
                stats.failed += 1
            self.on_result(result)
            _tell("photo_done", result)

    def collect(self, out_pool: ThreadPoolExecutor) -> bool:
        """Hand the oldest batch on to encoding, in photo order; False when it was stopped part-way."""
        order, failed_before, fut = self.in_phases.popleft()
        outcome = self.pipeline._wait_for_lane(fut, self.should_stop)
        results = {id(result.task): _done_future(result) for result in (*failed_before, *outcome.failed)}
        for item in outcome.survivors or ():
            results[id(item.task)] = logs.submit(out_pool, self.pipeline._output_and_deliver, item)
        self.pending_out.extend(results[id(task)] for task in order if id(task) in results)
        if outcome.survivors is None:
            return False
        self.drain(self.max_out)
        return True


def effective_batch_size(settings: Settings, device: str) -> int:
    """``WORKER_BATCH_SIZE``, or when it is 0: 8 photos a batch on a GPU, 1 on the CPU."""
    if settings.batch_size > 0:
        return settings.batch_size
    return 8 if device == "cuda" else 1


def effective_photo_threads(settings: Settings) -> int:
    """``WORKER_PHOTO_THREADS``, or one per core (at most 8, a batch's photos) when it is 0."""
    if settings.photo_threads > 0:
        return settings.photo_threads
    return max(1, min(8, len(os.sched_getaffinity(0))))  # the cores this process may use


class Pipeline:
    """Runs photos through the phases. One instance per job (it holds the job's context)."""

    @classmethod
    def from_settings(
        cls,
        ctx: PhaseContext,
        deliver: Deliver,
        settings: Settings,
        *,
        on_phase: Callable[[str, int], None] | None = None,
        io_threads: int | None = None,
        origin: decoder.Origin = "upload",
    ) -> Pipeline:
        """The pipeline the operator configured (batch size, lanes, threads, prefetch, pixel limit) on
        ``ctx.models.device``; ``io_threads`` overrides ``WORKER_IO_THREADS``; ``origin``: where the
        photos come from (``file``: local files, for ``process``)."""
        return cls(
            ctx,
            deliver,
            batch_size=effective_batch_size(settings, ctx.models.device),
            io_threads=settings.io_threads if io_threads is None else io_threads,
            prefetch=settings.prefetch_photos,
            max_pixels=settings.max_image_pixels,
            on_phase=on_phase,
            lanes=settings.phase_lanes,
            photo_threads=effective_photo_threads(settings),
            origin=origin,
        )

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
        lanes: int = 1,
        photo_threads: int = 1,
        origin: decoder.Origin = "upload",
    ) -> None:
        self.ctx = ctx
        self.origin = origin  # where the photos come from: words the decoder's advice ("upload it again")
        self.phases = tuple(phases)
        self.on_phase = on_phase
        self.deliver = deliver
        self.batch_size = max(1, batch_size)
        self.io_threads = max(1, io_threads)
        self.prefetch = max(self.batch_size, prefetch)
        self.max_pixels = max_pixels
        self.lanes = max(1, min(lanes, len(self.phases)))  # more lanes than phases could only wait
        # Threads the batch phases share for their per-photo CPU work (PhaseContext.each); none when
        # a batch is one photo.
        self.photo_threads = max(1, photo_threads) if self.batch_size > 1 else 1
        self._unexpected_in_a_row = 0
        self._exhausted = False
        self._breaker_lock = threading.Lock()
        self._phase_locks = {name: threading.Lock() for name, _ in self.phases}
        # Lanes report here; the calling thread passes each event on (``_dispatch``).
        self._events: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
        self._stop_lanes = threading.Event()
        self._phase_ctx = ctx  # with the photo threads while ``run`` runs

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
        start = time.perf_counter()
        _tell("started", len(tasks) if isinstance(tasks, Sized) else None)
        run = _Run(self, on_result, should_stop, max_out=2 * self.batch_size + self.io_threads)
        stats, in_phases = run.stats, run.in_phases
        self._stop_lanes.clear()

        lane_pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="phases") if self.lanes > 1 else None
        photo_pool = (
            ThreadPoolExecutor(self.photo_threads, thread_name_prefix="photo") if self.photo_threads > 1 else None
        )
        self._phase_ctx = replace(self.ctx, photo_pool=photo_pool)
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
                    failed_before = [self._failed(item) for item in batch if item.frame is None]
                    ready = [item for item in batch if item.frame is not None]
                    if lane_pool is None:  # on this thread, as it comes
                        outcome = self._run_phases(ready, should_stop, self._dispatch)
                        in_phases.append(([item.task for item in batch], failed_before, _done_future(outcome)))
                    else:
                        fut = logs.submit(lane_pool, self._run_phases, ready, self._stop_lanes.is_set, self._events.put)
                        # Wakes the wait below once the result is set (a put at the lane's end could come first).
                        fut.add_done_callback(lambda _: self._events.put(("lane_done", ())))
                        in_phases.append(([item.task for item in batch], failed_before, fut))
                    while len(in_phases) >= self.lanes and not stats.stopped:
                        stats.stopped = not run.collect(out_pool)
                    if stats.stopped:
                        break
                else:
                    while in_phases and not stats.stopped:
                        stats.stopped = not run.collect(out_pool)
                    stats.stopped = stats.stopped or not self._exhausted
            finally:
                self._stop_lanes.set()  # lanes still running stop at their next phase; their photos stay untouched
                if lane_pool is not None:
                    lane_pool.shutdown(wait=True)
                if photo_pool is not None:
                    photo_pool.shutdown(wait=True)
                self._pump(lambda event: None)  # events of batches that are left untouched
                decoded_stream.close()
                run.drain(0)
        stats.wall_s = time.perf_counter() - start
        return stats

    # -- lanes --------------------------------------------------------------------------------
    def _wait_for_lane(self, fut: Future[_Outcome], should_stop: Callable[[], bool]) -> _Outcome:
        """``fut.result()``, passing the lanes' events on meanwhile (on this, the calling thread)."""
        while not fut.done():
            if should_stop():
                self._stop_lanes.set()
            try:
                self._dispatch(self._events.get(timeout=_WAIT_SLICE_S))
            except queue.Empty:
                _tell("waiting", WAITING_ON_PHASES)
        self._pump()
        return fut.result()

    def _pump(self, handle: Callable[[tuple[str, tuple[Any, ...]]], None] | None = None) -> None:
        """Pass on (``handle``: ``_dispatch`` by default) every event the lanes have reported so far."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            (handle or self._dispatch)(event)

    def _dispatch(self, event: tuple[str, tuple[Any, ...]]) -> None:
        kind, args = event
        if kind == "phase_started":
            name, photos = args
            _tell("phase_started", name, photos)
        elif kind == "phase_done":
            name, photos, seconds = args
            if self.on_phase is not None:
                self.on_phase(name, photos)
            _tell("phase_done", name, photos, seconds)

    # -- stages -------------------------------------------------------------------------------
    def _decoded(
        self, tasks: Iterator[PhotoTask], pool: ThreadPoolExecutor, should_stop: Callable[[], bool]
    ) -> Generator[_Decoded, None, None]:
        """Fetch and decode ``prefetch`` photos ahead, yielding them in task order."""
        window: deque[Future[_Decoded]] = deque()
        self._exhausted = False
        try:
            for task in tasks:
                window.append(logs.submit(pool, self._fetch_decode, task))
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
            if task.started is not None:
                task.started()
            phase = "decode"
            t0 = time.perf_counter()
            codec = self.ctx.models.codec_device  # torch (nvJPEG on a GPU) for plain sRGB JPEGs, else the CPU path
            if codec is None:
                frame = decoder.decode(
                    data, photo_id=task.photo_id, filename=task.filename, max_pixels=self.max_pixels, origin=self.origin
                )
            else:
                frame = device_codec.decode_one(
                    data,
                    photo_id=task.photo_id,
                    filename=task.filename,
                    device=codec,
                    max_pixels=self.max_pixels,
                    origin=self.origin,
                )
            timings["decode"] = time.perf_counter() - t0
            frame.timings.update(timings)
            return _Decoded(task, frame, None, None, timings)
        except Exception as exc:
            failure = classify(exc)
            if failure.scope == "job":
                raise
            failed_phase = exc.phase if isinstance(exc, PhotoError) else phase
            return _Decoded(task, None, failure, failed_phase, timings)

    def _run_phases(self, items: list[_Decoded], should_stop: Callable[[], bool], emit: Emit) -> _Outcome:
        """Run the batch phases; the photos that survived (None when asked to stop) and those that failed.

        ``emit`` receives the progress events (``_dispatch`` on the calling thread, a queue in a lane).
        """
        outcome = _Outcome(items, [])
        for name, fn in self.phases:
            if not outcome.survivors:
                break
            with self._phase_locks[name]:  # one batch per phase at a time, whatever the lanes
                if should_stop():
                    outcome.survivors = None
                    return outcome
                emit(("phase_started", (name, len(outcome.survivors))))
                outcome.survivors = self._phase_over_batch(name, fn, outcome.survivors, outcome.failed, emit)
        if outcome.survivors:
            with self._breaker_lock:
                self._unexpected_in_a_row = 0  # a photo came through every phase: the fault is not everywhere
        return outcome

    def _phase_over_batch(
        self, name: str, fn: PhaseFn, items: list[_Decoded], failed: list[PhotoResult], emit: Emit
    ) -> list[_Decoded]:
        frames = [item.frame for item in items if item.frame is not None]
        before = [_Before.of(frame) for frame in frames] if len(items) > 1 else []
        t0 = time.perf_counter()
        try:
            fn(frames, self._phase_ctx)
        except Exception as exc:
            if classify(exc).scope == "job" and not _is_unexpected(exc):
                raise
            if len(items) == 1:
                failed.append(self._fail_item(items[0], name, exc))
                return []
            # Find the photo(s) at fault by running the phase on each photo alone, from the frames as
            # they were: the phase may have edited some before it failed (styled, levelled them…).
            for state in before:
                state.restore()
            survivors = []
            for item in items:
                if self._phase_over_batch(name, fn, [item], failed, emit):
                    survivors.append(item)
            return survivors
        elapsed = time.perf_counter() - t0
        per_photo = elapsed / max(1, len(frames))
        for item in items:
            item.timings[name] = per_photo
            if item.frame is not None:
                item.frame.timings[name] = per_photo
        emit(("phase_done", (name, len(frames), elapsed)))
        return items

    def _fail_item(self, item: _Decoded, phase: str, exc: Exception) -> PhotoResult:
        failure = classify(exc)
        if _is_unexpected(exc):
            with self._breaker_lock:
                self._unexpected_in_a_row += 1
                tripped = self._unexpected_in_a_row >= _CIRCUIT_BREAKER
            if tripped:
                raise exc
            failure = Failure("photo", False, f"internal error in {phase}: {failure.reason}", failure.kind)
        item.failure, item.failed_phase = failure, phase
        return self._failed(item)

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


def _done_future(result: _T) -> Future[_T]:
    fut: Future[_T] = Future()
    fut.set_result(result)
    return fut
