"""Acceptance: ``apelier-worker api`` in a subprocess on a free loopback port, called over HTTP as the app
calls ``AI_ENGINE_URL``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.acceptance.test_cli import cli
from worker.queue.database import Queue

KEY = "acceptance-key_0123456789abcdefghijklmnopqrstuvwxyz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_api_command_serves_the_app_s_routes(db_url: str, queue: Queue, tmp_path: Path) -> None:
    photographer = queue.admin.upsert_photographer(str(uuid.uuid4()), "Studio")
    gallery = queue.admin.insert_gallery(photographer, "Wedding")
    queue.admin.insert_photo(
        photographer_id=photographer,
        gallery_id=gallery,
        key=f"{photographer}/{gallery}/originals/1_a.jpg",
        filename="a.jpg",
    )
    port = free_port()
    script = Path(sys.executable).with_name("apelier-worker")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "worker"]
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "WORKER_API_KEY": KEY,
        "WORKER_DATA_DIR": str(tmp_path / "data"),
        "WORKER_LOG_FORMAT": "json",
    }
    log = tmp_path / "api.log"
    with log.open("w") as out:
        server = subprocess.Popen([*command, "api", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # up when /health answers (the command imports no torch: this is quick)
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

        # The app unchanged: AI_ENGINE_URL = base/KEY, JSON in, JSON out.
        r = httpx.post(f"{base}/{KEY}/api/process/gallery", json={"gallery_id": gallery, "style_profile_id": None})
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]
        row = queue.app.get_job(job_id)
        assert row is not None and (row["job_type"], row["status"], str(row["gallery_id"])) == (
            "gallery",
            "queued",
            gallery,
        )
        status = httpx.get(f"{base}/api/process/status/{job_id}", headers={"Authorization": f"Bearer {KEY}"})
        assert status.status_code == 200 and status.json()["status"] == "queued"
        assert httpx.post(f"{base}/api/process/gallery", json={"gallery_id": gallery}).status_code == 401

        # SIGTERM: uvicorn finishes what is in flight, then ends by the signal (systemd counts that clean).
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    output = log.read_text()
    assert '"event": "api_starting"' in output and '"event": "api_request"' in output
    assert KEY not in output
    assert "Traceback" not in output


def test_the_api_command_refuses_to_start_without_a_way_to_authenticate(db_url: str) -> None:
    result = cli("api", env={"DATABASE_URL": db_url, "WORKER_API_KEY": "", "SUPABASE_JWT_SECRET": ""}, timeout=60)
    assert result.returncode == 2
    assert "WORKER_API_KEY" in result.stderr and "SUPABASE_JWT_SECRET" in result.stderr
