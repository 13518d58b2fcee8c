"""Prometheus metrics for one worker, served on ``WORKER_METRICS_PORT`` (off when unset).

========================================  =========  ==============================================
family                                    type       what
========================================  =========  ==============================================
``apelier_jobs_total``                    counter    jobs run (a chunk of a split gallery is one), by
                                                     ``job_type`` and ``outcome`` (completed,
                                                     released, canceled, lost, failed, split)
``apelier_job_duration_seconds``          histogram  claim to end of a job run, by ``job_type``
``apelier_job_queue_wait_seconds``        histogram  ``started_at − created_at`` at a job's first claim
``apelier_jobs_in_progress``              gauge      1 while a job runs
``apelier_photos_processed_total``        counter    photos delivered
``apelier_photos_failed_total``           counter    photos that failed, by ``phase``
``apelier_phase_seconds``                 histogram  per photo and ``phase`` (download, decode, the
                                                     five batch phases, output, upload)
``apelier_gpu_memory_allocated_bytes``    gauge      held by tensors (torch's allocator)
``apelier_gpu_memory_reserved_bytes``     gauge      held by torch's caching allocator
``apelier_gpu_memory_used_bytes``         gauge      in use on the device, all processes
``apelier_gpu_memory_total_bytes``        gauge      the device's memory
``apelier_worker_info``                   info       worker id, version, device
========================================  =========  ==============================================

plus the standard ``process_*`` and ``python_*`` families. GPU gauges read 0 on
a CPU worker and before the first CUDA call; they are read at scrape time.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)

from worker.errors import ConfigError
from worker.pipeline.stream import PhotoResult, PipelineWatcher

PHASE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
WAIT_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


class Metrics(PipelineWatcher):
    """The worker's metrics in a registry of their own; fed by daemon events and the pipeline."""

    def __init__(self, *, worker_id: str, version: str, device: str, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        r = self.registry
        self.jobs = Counter(
            "apelier_jobs", "Jobs run by this worker, by how they ended", ["job_type", "outcome"], registry=r
        )
        self.job_duration = Histogram(
            "apelier_job_duration_seconds", "Claim to end of one job run", ["job_type"], buckets=JOB_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "apelier_job_queue_wait_seconds",
            "How long a job waited in the queue before its first claim (started_at - created_at)",
            ["job_type"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.in_progress = Gauge("apelier_jobs_in_progress", "Jobs running on this worker now", registry=r)
        self.photos_processed = Counter("apelier_photos_processed", "Photos edited and delivered", registry=r)
        self.photos_failed = Counter(
            "apelier_photos_failed",
            "Photos that could not be processed, by the phase that failed",
            ["phase"],
            registry=r,
        )
        self.phase_seconds = Histogram(
            "apelier_phase_seconds", "Time per photo in each phase", ["phase"], buckets=PHASE_BUCKETS, registry=r
        )
        info = Info("apelier_worker", "This worker", registry=r)
        info.info({"worker_id": worker_id, "version": version, "device": device})
        for name, helptext, read in (
            ("allocated", "GPU memory held by tensors (torch allocator)", _torch_allocated),
            ("reserved", "GPU memory held by torch's caching allocator", _torch_reserved),
            ("used", "GPU memory in use on the device, by every process", _device_used),
            ("total", "GPU memory of the device", _device_total),
        ):
            Gauge(f"apelier_gpu_memory_{name}_bytes", helptext, registry=r).set_function(read)
        self._job_type = "unknown"
        self._job_started = 0.0
        self._server: Any = None

    # -- serving ------------------------------------------------------------------------------
    def serve(self, port: int, addr: str = "0.0.0.0") -> int:  # noqa: S104 - Prometheus scrapes from another host
        """Serve ``/metrics`` from a background thread; returns the port (``0`` picks a free one)."""
        try:
            self._server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on port {port} ({exc.strerror or exc}); "
                "give each worker on this box its own WORKER_METRICS_PORT"
            ) from None
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- daemon events ------------------------------------------------------------------------
    def on_event(self, name: str, fields: dict[str, Any]) -> None:
        if name == "job_started":
            self._job_type = str(fields.get("job_type") or "unknown")
            self._job_started = time.monotonic()
            self.in_progress.set(1)
            created, started = fields.get("created_at"), fields.get("started_at")
            if fields.get("first_claim") and isinstance(created, datetime) and isinstance(started, datetime):
                # Both on the database's clock: started_at is set by the first claim (a reclaim waited less).
                self.queue_wait.labels(self._job_type).observe(max(0.0, (started - created).total_seconds()))
        elif name == "job_finished":
            job_type = str(fields.get("job_type") or self._job_type)
            self.jobs.labels(job_type, str(fields.get("status") or "unknown")).inc()
            if self._job_started:
                self.job_duration.labels(job_type).observe(time.monotonic() - self._job_started)
            self._job_started = 0.0
            self.in_progress.set(0)

    # -- pipeline -----------------------------------------------------------------------------
    def photo_done(self, result: PhotoResult) -> None:
        if result.ok:
            self.photos_processed.inc()
        else:
            self.photos_failed.labels(result.failed_phase or "unknown").inc()
        for phase, seconds in result.timings.items():
            self.phase_seconds.labels(phase).observe(seconds)


def _cuda() -> Any:
    """torch, when it has already started CUDA in this process (a scrape never starts it)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    return torch


def _torch_allocated() -> float:
    torch = _cuda()
    return float(torch.cuda.memory_allocated()) if torch else 0.0


def _torch_reserved() -> float:
    torch = _cuda()
    return float(torch.cuda.memory_reserved()) if torch else 0.0


def _device_used() -> float:
    torch = _cuda()
    if not torch:
        return 0.0
    free, total = torch.cuda.mem_get_info()
    return float(total - free)


def _device_total() -> float:
    torch = _cuda()
    return float(torch.cuda.mem_get_info()[1]) if torch else 0.0
