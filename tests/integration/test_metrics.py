"""Prometheus metrics on a port: the expected families, with the right values after a real job."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_gallery
from tests.integration.test_daemon import make_daemon
from worker.errors import ConfigError
from worker.pipeline.stream import watching
from worker.service.metrics import Metrics


def scrape(port: int) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Family name → {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    return out


def test_metrics_after_a_gallery_job(queue, db_url, storage, settings, real_photos) -> None:
    files = [*real_photos, ("notes.jpg", b"a text file named .jpg")]
    gallery = make_gallery(queue, storage, files)
    job_id = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)

    metrics = Metrics(worker_id="test-worker", version="9.9", device="cpu")
    port = metrics.serve(0, addr="127.0.0.1")
    try:
        before = scrape(port)
        assert before["apelier_photos_processed"] == {("apelier_photos_processed_total", ()): 0.0}
        daemon = make_daemon(db_url, storage, settings, drain=True, on_event=metrics.on_event)
        with watching(metrics):
            assert daemon.run() == 0
        after = scrape(port)
    finally:
        metrics.close()

    n = len(real_photos)
    assert after["apelier_jobs"][("apelier_jobs_total", (("job_type", "gallery"), ("outcome", "completed")))] == 1
    assert after["apelier_photos_processed"][("apelier_photos_processed_total", ())] == n
    assert (
        after["apelier_photos_failed"][("apelier_photos_failed_total", (("phase", "analysis"),))] == 1
    )  # decoding is phase 0
    phases = after["apelier_phase_seconds"]
    for phase in ("download", "decode", "analysis", "style", "retouch", "cleanup", "composition", "output", "upload"):
        expected = n + 1 if phase == "download" else n  # the text file was downloaded, then failed to decode
        assert phases[("apelier_phase_seconds_count", (("phase", phase),))] == expected, phase
        assert phases[("apelier_phase_seconds_sum", (("phase", phase),))] > 0
    wait = after["apelier_job_queue_wait_seconds"]
    assert wait[("apelier_job_queue_wait_seconds_count", (("job_type", "gallery"),))] == 1
    assert 0 <= wait[("apelier_job_queue_wait_seconds_sum", (("job_type", "gallery"),))] < 60
    job = queue.app.get_job(job_id) or {}
    waited = (job["started_at"] - job["created_at"]).total_seconds()  # both on the database's clock
    assert wait[("apelier_job_queue_wait_seconds_sum", (("job_type", "gallery"),))] == pytest.approx(waited, abs=1e-3)
    duration = after["apelier_job_duration_seconds"]
    assert duration[("apelier_job_duration_seconds_count", (("job_type", "gallery"),))] == 1
    assert after["apelier_jobs_in_progress"] == {("apelier_jobs_in_progress", ()): 0.0}
    for name in ("allocated", "reserved", "used", "total"):
        assert after[f"apelier_gpu_memory_{name}_bytes"] == {(f"apelier_gpu_memory_{name}_bytes", ()): 0.0}
    info = after["apelier_worker_info"]
    assert (
        "apelier_worker_info",
        (("device", "cpu"), ("version", "9.9"), ("worker_id", "test-worker")),
    ) in info
    assert "process_resident_memory_bytes" in after and "python_info" in after


def test_a_busy_port_is_a_one_line_config_error() -> None:
    first = Metrics(worker_id="a", version="1", device="cpu")
    port = first.serve(0, addr="127.0.0.1")
    try:
        with pytest.raises(ConfigError, match="WORKER_METRICS_PORT"):
            Metrics(worker_id="b", version="1", device="cpu").serve(port, addr="127.0.0.1")
    finally:
        first.close()


def test_a_port_out_of_range_is_a_one_line_config_error() -> None:
    """The per-GPU template sets 947<gpu>: GPU 10 would ask for port 94710."""
    from worker.service.config import Settings

    with pytest.raises(ConfigError, match=r"WORKER_METRICS_PORT=94710 is above 65535"):
        Settings.from_env({"WORKER_METRICS_PORT": "94710"})
    assert Settings.from_env({"WORKER_METRICS_PORT": "9479"}).metrics_port == 9479


def test_gpu_memory_is_read_at_scrape_time_once_cuda_is_up(monkeypatch) -> None:
    """No GPU here: a stand-in for torch.cuda shows that the gauges read the allocator and the device."""
    import sys
    from types import SimpleNamespace

    cuda = SimpleNamespace(
        is_initialized=lambda: True,
        memory_allocated=lambda: 3 * 2**30,
        memory_reserved=lambda: 4 * 2**30,
        mem_get_info=lambda: (18 * 2**30, 24 * 2**30),
    )
    metrics = Metrics(worker_id="gpu-box", version="1", device="cuda")
    port = metrics.serve(0, addr="127.0.0.1")
    try:
        monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
        families = scrape(port)
        monkeypatch.setattr(cuda, "is_initialized", lambda: False)
        before_cuda = scrape(port)
    finally:
        metrics.close()
    gib = 2**30
    expected = {"allocated": 3 * gib, "reserved": 4 * gib, "used": 6 * gib, "total": 24 * gib}
    for name, value in expected.items():
        assert families[f"apelier_gpu_memory_{name}_bytes"] == {(f"apelier_gpu_memory_{name}_bytes", ()): value}
        assert before_cuda[f"apelier_gpu_memory_{name}_bytes"] == {(f"apelier_gpu_memory_{name}_bytes", ()): 0.0}
