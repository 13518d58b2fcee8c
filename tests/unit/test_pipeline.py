"""The pipeline: batches, per-photo isolation of failures, the circuit breaker, stopping early —
with the batch phases on the calling thread (``lanes=1``) and in lanes that overlap (``lanes=3``)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from tests.conftest import jpeg_bytes
from worker.frame import Face, Frame, SourceInfo
from worker.imaging.decode import decode
from worker.models.bundle import ModelBundle
from worker.phases import PHASES, PhaseContext
from worker.pipeline.stream import (
    BATCH_PHASES,
    PhotoResult,
    PhotoTask,
    Pipeline,
    PipelineWatcher,
    effective_photo_threads,
    watching,
)
from worker.service.config import Settings


def tasks(astronaut, n: int) -> list[PhotoTask]:
    data = jpeg_bytes(astronaut)
    return [PhotoTask(f"id{i}", f"p{i}.jpg", lambda: data) for i in range(n)]


def run(pipeline: Pipeline, items: list[PhotoTask], **kw) -> tuple[list[PhotoResult], object]:
    results: list[PhotoResult] = []
    stats = pipeline.run(items, results.append, **kw)
    return results, stats


def decode_once(astronaut):
    """The pixels the pipeline decodes from the tasks' JPEG."""
    return decode(jpeg_bytes(astronaut), photo_id="x", filename="x.jpg", max_pixels=10**9).image


def with_phase(name: str, fn) -> list:
    return [(n, fn if n == name else f) for n, f in BATCH_PHASES]


LANES = pytest.mark.parametrize("lanes", [1, 3])


@LANES
def test_batches_flow_in_order_and_every_phase_reports(astronaut, lanes: int) -> None:
    seen_batches: list[int] = []
    counted: dict[str, int] = {}

    def style(frames: list[Frame], ctx: PhaseContext) -> None:
        seen_batches.append(len(frames))
        for f in frames:
            f.report["style"] = {"applied": False}

    pipeline = Pipeline(
        PhaseContext(),
        lambda frame: {"edited": f"{frame.photo_id}.jpg"},
        batch_size=3,
        phases=with_phase("style", style),
        on_phase=lambda name, n: counted.__setitem__(name, counted.get(name, 0) + n),
        lanes=lanes,
    )
    results, stats = run(pipeline, tasks(astronaut, 7))
    assert [r.task.photo_id for r in results] == [f"id{i}" for i in range(7)]
    assert all(r.ok and r.delivered["edited"] == f"{r.task.photo_id}.jpg" for r in results)
    assert seen_batches == [3, 3, 1]
    assert counted == {name: 7 for name, _ in BATCH_PHASES}
    assert stats.done == 7 and not stats.stopped  # type: ignore[attr-defined]
    assert set(results[0].timings) >= {"download", "decode", "analysis", "output", "upload"}


@LANES
def test_a_phase_crashing_on_one_photo_fails_only_that_photo(astronaut, lanes: int) -> None:
    def retouch(frames: list[Frame], ctx: PhaseContext) -> None:
        if any(f.photo_id == "id5" for f in frames):  # in the middle of its batch: still reported in photo order
            raise ValueError("cannot retouch this one")

    pipeline = Pipeline(PhaseContext(), lambda f: {}, batch_size=4, phases=with_phase("retouch", retouch), lanes=lanes)
    results, stats = run(pipeline, tasks(astronaut, 8))
    assert [r.task.photo_id for r in results] == [f"id{i}" for i in range(8)]
    failed = [r for r in results if not r.ok]
    assert [r.task.photo_id for r in failed] == ["id5"]
    assert failed[0].failed_phase == "retouch" and "internal error in retouch" in failed[0].failure.reason  # type: ignore[union-attr]
    assert stats.done == 7  # type: ignore[attr-defined]


@LANES
def test_photos_edited_before_a_batch_failed_are_edited_once_not_twice(astronaut, lanes: int) -> None:
    """The phase fails part-way through a batch; the rerun photo by photo starts from the frames as they were."""
    seen: dict[str, tuple[float, int, int]] = {}

    def composition(frames: list[Frame], ctx: PhaseContext) -> None:
        for f in frames:  # edits each photo in turn, as the real phases do, then meets the bad one
            if f.photo_id == "id5":
                raise ValueError("cannot level this one")
            f.image = f.image // 2
            f.faces = [*f.faces, Face((0.0, 0.0, 9.0, 9.0), ((1.0, 1.0),) * 5, 0.99)]
            f.report["composition"] = {"passes": f.report.get("composition", {}).get("passes", 0) + 1}

    def deliver(frame: Frame) -> dict[str, str]:
        seen[frame.photo_id] = (float(frame.image.mean()), len(frame.faces), frame.report["composition"]["passes"])
        return {}

    phases = with_phase("composition", composition)
    pipeline = Pipeline(PhaseContext(), deliver, batch_size=8, phases=phases, lanes=lanes)
    results, _ = run(pipeline, tasks(astronaut, 8))
    assert [r.task.photo_id for r in results if not r.ok] == ["id5"]
    halved = float((decode_once(astronaut) // 2).mean())
    assert sorted(seen) == [f"id{i}" for i in range(8) if i != 5]
    for photo_id, (mean, faces, passes) in seen.items():
        assert (mean, faces, passes) == (pytest.approx(halved), 1, 1), photo_id


@pytest.mark.parametrize("photo_threads", [1, 4])
def test_a_phase_on_photo_threads_fails_only_the_photo_at_fault_and_edits_the_rest_once(
    astronaut, photo_threads: int
) -> None:
    """``ctx.each`` runs a batch's photos on the pipeline's photo threads; a failure waits for the
    others, then the batch is rerun photo by photo from the frames as they were."""
    calls: list[tuple[str, str]] = []
    seen: dict[str, float] = {}

    def style(frames: list[Frame], ctx: PhaseContext) -> None:
        def one(frame: Frame) -> str:
            calls.append((frame.photo_id, threading.current_thread().name))
            if frame.photo_id == "id5":
                raise ValueError("this one cannot be styled")
            frame.image = frame.image // 2
            return frame.photo_id

        assert ctx.each(one, frames) == [f.photo_id for f in frames]  # in photo order

    def deliver(frame: Frame) -> dict[str, str]:
        seen[frame.photo_id] = float(frame.image.mean())
        return {}

    phases = with_phase("style", style)
    pipeline = Pipeline(PhaseContext(), deliver, batch_size=8, phases=phases, photo_threads=photo_threads)
    results, _ = run(pipeline, tasks(astronaut, 8))
    assert [r.task.photo_id for r in results if not r.ok] == ["id5"]
    assert sorted(seen) == [f"id{i}" for i in range(8) if i != 5]
    halved = float((decode_once(astronaut) // 2).mean())
    assert all(mean == pytest.approx(halved) for mean in seen.values())  # once, not twice
    on_photo_threads = [name.startswith("photo") for _, name in calls]
    if photo_threads > 1:  # the whole batch ran on the photo threads before the failure was raised…
        assert len(calls) == 8 + 8 and on_photo_threads == [True] * 8 + [False] * 8  # …a batch of one does not
    else:  # one after another on the phase's own thread, stopping at the photo at fault
        assert len(calls) == 6 + 8 and not any(on_photo_threads)


def test_each_keeps_photo_order_the_log_fields_and_the_first_failure(astronaut) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import structlog

    from worker.service import logs

    frames = [Frame(f"id{i}", f"p{i}.jpg", astronaut[:8, :8], SourceInfo("JPEG", 8, 8)) for i in range(6)]

    def slow_first(frame: Frame) -> tuple[str, object]:
        time.sleep(0.05 if frame.photo_id == "id0" else 0.0)  # finishes last, still comes first
        if frame.photo_id in ("id3", "id4"):
            raise ValueError(frame.photo_id)
        return frame.photo_id, structlog.contextvars.get_contextvars().get("job_id")

    with ThreadPoolExecutor(3) as pool, logs.bind(job_id="job-7"):
        ctx = PhaseContext(photo_pool=pool)
        assert ctx.each(slow_first, frames[:3]) == [("id0", "job-7"), ("id1", "job-7"), ("id2", "job-7")]
        with pytest.raises(ValueError, match="id3"):
            ctx.each(slow_first, frames)


@LANES
def test_a_fault_in_every_photo_trips_the_breaker_and_fails_the_job(astronaut, lanes: int) -> None:
    def cleanup(frames: list[Frame], ctx: PhaseContext) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    pipeline = Pipeline(PhaseContext(), lambda f: {}, phases=with_phase("cleanup", cleanup), lanes=lanes)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        run(pipeline, tasks(astronaut, 10))


@LANES
def test_stop_leaves_the_rest_untouched(astronaut, lanes: int) -> None:
    done: list[str] = []

    def on_result(r: PhotoResult) -> None:
        done.append(r.task.photo_id)

    pipeline = Pipeline(PhaseContext(), lambda f: {}, batch_size=1, prefetch=1, io_threads=1, lanes=lanes)
    stats = pipeline.run(tasks(astronaut, 20), on_result, should_stop=lambda: len(done) >= 3)
    assert stats.stopped
    assert 3 <= len(done) < 20
    assert done == [f"id{i}" for i in range(len(done))]  # in order, none skipped


class _Recorder(PipelineWatcher):
    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.events: list[tuple[str, str]] = []

    def phase_started(self, phase: str, photos: int) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(("started", phase))

    def phase_done(self, phase: str, photos: int, seconds: float) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(("done", phase))

    def photo_done(self, result: PhotoResult) -> None:
        self.threads.add(threading.get_ident())


def test_lanes_overlap_batches_but_never_run_a_phase_twice_at_once(astronaut) -> None:
    """Phases of successive batches run at the same time; each phase on one batch at a time; the
    caller hears every event on its own thread and gets the photos in order."""
    intervals: dict[str, list[tuple[float, float, tuple[str, ...]]]] = {}
    lock = threading.Lock()

    def timed(name: str) -> Any:
        def fn(frames: list[Frame], ctx: PhaseContext) -> None:
            t0 = time.perf_counter()
            time.sleep(0.05)  # a GPU call: the thread waits, the GIL is free
            with lock:
                intervals.setdefault(name, []).append((t0, time.perf_counter(), tuple(f.photo_id for f in frames)))

        return fn

    on_phase_threads: set[int] = set()
    recorder = _Recorder()
    pipeline = Pipeline(
        PhaseContext(),
        lambda f: {},
        batch_size=2,
        phases=[(name, timed(name)) for name, _ in BATCH_PHASES],
        on_phase=lambda name, n: on_phase_threads.add(threading.get_ident()),
        lanes=3,
    )
    with watching(recorder):
        results, _ = run(pipeline, tasks(astronaut, 12))
    assert [r.task.photo_id for r in results] == [f"id{i}" for i in range(12)] and all(r.ok for r in results)
    caller = threading.get_ident()
    assert on_phase_threads == {caller} and recorder.threads == {caller}
    assert recorder.events.count(("done", "retouch")) == 6
    for name, spans in intervals.items():
        spans.sort()
        assert len(spans) == 6
        # One batch at a time in each phase: no two intervals of the same phase overlap.
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), name
    # …but different phases did run at once (batches overlapped), which one thread never does.
    every = sorted((t0, t1, name) for name, spans in intervals.items() for t0, t1, _ in spans)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(every))


def test_a_job_error_in_a_lane_reaches_the_caller_and_stops_the_other_lanes(astronaut) -> None:
    ran_after: list[str] = []

    def retouch(frames: list[Frame], ctx: PhaseContext) -> None:
        if any(f.photo_id == "id2" for f in frames):
            raise MemoryError("out of host memory")  # job-level: not the photo's fault
        time.sleep(0.02)

    def composition(frames: list[Frame], ctx: PhaseContext) -> None:
        ran_after.extend(f.photo_id for f in frames)

    phases = [(n, retouch if n == "retouch" else composition if n == "composition" else f) for n, f in BATCH_PHASES]
    pipeline = Pipeline(PhaseContext(), lambda f: {}, batch_size=1, phases=phases, lanes=3)
    results: list[PhotoResult] = []
    with pytest.raises(MemoryError):
        pipeline.run(tasks(astronaut, 30), results.append)
    assert [r.task.photo_id for r in results] == ["id0", "id1"]
    assert len(ran_after) < 10  # the lanes stopped soon after, they did not run the job to its end


@LANES
def test_every_thread_logs_with_the_fields_bound_to_the_job(astronaut, lanes: int) -> None:
    """Phases in lanes, downloads and uploads in pools: each log line still names its job."""
    import structlog

    from worker.service import logs

    seen: list[tuple[str, object]] = []

    def fetch() -> bytes:
        seen.append(("download", structlog.contextvars.get_contextvars().get("job_id")))
        return jpeg_bytes(astronaut[::4, ::4])

    def cleanup(frames: list[Frame], ctx: PhaseContext) -> None:
        seen.append(("cleanup", structlog.contextvars.get_contextvars().get("job_id")))

    def deliver(frame: Frame) -> dict:
        seen.append(("upload", structlog.contextvars.get_contextvars().get("job_id")))
        return {}

    pipeline = Pipeline(PhaseContext(), deliver, phases=with_phase("cleanup", cleanup), lanes=lanes)
    with logs.bind(job_id="job-42"):
        run(pipeline, [PhotoTask(f"id{i}", f"p{i}.jpg", fetch) for i in range(6)])
    assert len(seen) == 18 and {job for _, job in seen} == {"job-42"}


@pytest.mark.slow  # several seconds on two cores: `make test-fast` skips it
def test_lanes_and_photo_threads_change_no_pixel_and_no_decision(tmp_path, real_photos, monkeypatch) -> None:
    """Every phase for real (faces, classical retouch, cleanup, straightening, outputs) with one lane,
    with three, and with three and photo threads: the same bytes in every file and the same report
    for every photo."""
    from dataclasses import replace

    from worker.commands.process import process_files
    from worker.models import bundle
    from worker.phases import analysis
    from worker.service.config import Settings

    threads: list[str] = []
    analyse = analysis.analyse

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return analyse(*args, **kwargs)

    monkeypatch.setattr(analysis, "analyse", spy)

    files = []
    for i in range(3):  # 12 photos, batches of 2: the lanes really overlap
        for name, data in real_photos:
            path = tmp_path / "in" / f"{i}-{name}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            files.append(path)
    base = Settings(data_dir=tmp_path / "data", device="cpu", batch_size=2)
    models = bundle.load(base)
    runs = {}
    for lanes, photo_threads in ((1, 1), (3, 1), (3, 2)):
        config = replace(base, phase_lanes=lanes, photo_threads=photo_threads)
        out = tmp_path / f"out{lanes}-{photo_threads}"
        threads.clear()
        entries = process_files(files, out, config, models, progress=False)
        on_photo_threads = {name.startswith("photo") for name in threads}
        assert on_photo_threads == ({True} if photo_threads > 1 else {False}), (lanes, photo_threads)
        written = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.jpg"))}
        reports = [{k: v for k, v in e.items() if k not in ("timings_s", "output")} for e in entries]
        for report in reports:
            report["cleanup"].pop("detect_ms")  # times, the only fields that may differ
            report["cleanup"].pop("inpaint_ms", None)
        runs[(lanes, photo_threads)] = (written, reports)
    first, *others = runs.values()
    assert len(first[0]) >= 3 * len(files) and all(e["error"] is None for e in first[1])
    for other in others:
        assert other[0] == first[0]
        assert other[1] == first[1]


def test_the_batch_phases_are_the_phases_in_order_and_output_runs_per_photo_after_them() -> None:
    assert (*(name for name, _ in BATCH_PHASES), "output") == PHASES


def test_from_settings_builds_the_pipeline_the_operator_configured() -> None:
    """Batch size 0 means 8 on a GPU and 1 on the CPU (where a batch of one has no photo threads);
    the daemon's gallery job and the ``process`` command both build their pipeline this way."""
    settings = Settings(
        batch_size=0, phase_lanes=2, io_threads=6, prefetch_photos=3, photo_threads=4, max_image_pixels=99
    )
    cpu = Pipeline.from_settings(PhaseContext(models=ModelBundle(device="cpu")), lambda f: {}, settings)
    gpu = Pipeline.from_settings(PhaseContext(models=ModelBundle(device="cuda")), lambda f: {}, settings, io_threads=2)
    assert (cpu.batch_size, cpu.photo_threads, cpu.prefetch) == (1, 1, 3)
    assert (gpu.batch_size, gpu.photo_threads, gpu.prefetch) == (8, 4, 8)  # prefetch: at least a batch
    assert (cpu.io_threads, gpu.io_threads) == (6, 2)
    assert cpu.lanes == gpu.lanes == 2 and cpu.max_pixels == gpu.max_pixels == 99
    sized = Pipeline.from_settings(PhaseContext(), lambda f: {}, Settings(batch_size=3, photo_threads=0))
    assert sized.batch_size == 3 and sized.photo_threads == effective_photo_threads(Settings()) >= 1
