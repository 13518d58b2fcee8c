"""The pipeline: batches, per-photo isolation of failures, the circuit breaker, stopping early."""

from __future__ import annotations

import pytest

from worker.frame import Frame
from worker.phases import PhaseContext
from worker.pipeline import BATCH_PHASES, PhotoResult, PhotoTask, Pipeline

from .conftest import jpeg_bytes


def tasks(astronaut, n: int) -> list[PhotoTask]:
    data = jpeg_bytes(astronaut)
    return [PhotoTask(f"id{i}", f"p{i}.jpg", lambda: data) for i in range(n)]


def run(pipeline: Pipeline, items: list[PhotoTask], **kw) -> tuple[list[PhotoResult], object]:
    results: list[PhotoResult] = []
    stats = pipeline.run(items, results.append, **kw)
    return results, stats


def with_phase(name: str, fn) -> list:
    return [(n, fn if n == name else f) for n, f in BATCH_PHASES]


def test_batches_flow_in_order_and_every_phase_reports(astronaut) -> None:
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
    )
    results, stats = run(pipeline, tasks(astronaut, 7))
    assert [r.task.photo_id for r in results] == [f"id{i}" for i in range(7)]
    assert all(r.ok and r.delivered["edited"] == f"{r.task.photo_id}.jpg" for r in results)
    assert seen_batches == [3, 3, 1]
    assert counted == {name: 7 for name, _ in BATCH_PHASES}
    assert stats.done == 7 and not stats.stopped  # type: ignore[attr-defined]
    assert set(results[0].timings) >= {"download", "decode", "analysis", "output", "upload"}


def test_a_phase_crashing_on_one_photo_fails_only_that_photo(astronaut) -> None:
    def retouch(frames: list[Frame], ctx: PhaseContext) -> None:
        if any(f.photo_id == "id4" for f in frames):
            raise ValueError("cannot retouch this one")

    pipeline = Pipeline(PhaseContext(), lambda f: {}, batch_size=4, phases=with_phase("retouch", retouch))
    results, stats = run(pipeline, tasks(astronaut, 8))
    failed = [r for r in results if not r.ok]
    assert [r.task.photo_id for r in failed] == ["id4"]
    assert failed[0].failed_phase == "retouch" and "internal error in retouch" in failed[0].failure.reason  # type: ignore[union-attr]
    assert stats.done == 7  # type: ignore[attr-defined]


def test_a_fault_in_every_photo_trips_the_breaker_and_fails_the_job(astronaut) -> None:
    def cleanup(frames: list[Frame], ctx: PhaseContext) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    pipeline = Pipeline(PhaseContext(), lambda f: {}, phases=with_phase("cleanup", cleanup))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        run(pipeline, tasks(astronaut, 10))


def test_stop_leaves_the_rest_untouched(astronaut) -> None:
    done: list[str] = []

    def on_result(r: PhotoResult) -> None:
        done.append(r.task.photo_id)

    pipeline = Pipeline(PhaseContext(), lambda f: {}, batch_size=1, prefetch=1, io_threads=1)
    stats = pipeline.run(tasks(astronaut, 20), on_result, should_stop=lambda: len(done) >= 3)
    assert stats.stopped
    assert 3 <= len(done) < 20
