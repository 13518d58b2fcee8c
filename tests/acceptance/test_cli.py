"""Acceptance: the real ``apelier-worker`` command in a subprocess."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_gallery
from worker.queue.database import Queue
from worker.queue.migrations import latest_version


def image_size(path: Path | str) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("apelier-worker")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "worker"]
    full_env = {**os.environ, "WORKER_LOG_FORMAT": "json", **(env or {})}
    return subprocess.run([*command, *args], env=full_env, capture_output=True, text=True, timeout=timeout, check=False)


def test_process_writes_outputs_and_a_report_and_names_the_bad_file(tmp_path: Path, real_photos) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, data in real_photos:
        (inputs / name).write_bytes(data)
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = tmp_path / "out"
    result = cli("process", str(inputs), "--out", str(out), "--device", "cpu", "--no-progress")
    assert result.returncode == 3, result.stderr
    assert f"{len(real_photos)} of {len(real_photos) + 1} photos processed" in result.stdout
    assert "broken.jpg" in result.stdout

    report = json.loads((out / "report.json").read_text())["photos"]
    assert len(report) == len(real_photos) + 1
    by_name = {Path(e["file"]).name: e for e in report}
    assert by_name["broken.jpg"]["error"]["reason"]
    for name, _ in real_photos:
        entry = by_name[name]
        assert entry["error"] is None
        assert {"decode", "analysis", "style", "retouch", "cleanup", "composition", "output"} <= set(entry["timings_s"])
        assert isinstance(entry["analysis"]["faces"], list)
        assert 0 <= entry["analysis"]["quality"]["score"] <= 100
        assert isinstance(entry["cleanup"]["regions"], list)
        assert isinstance(entry["composition"]["rotation_deg"], float)
        for variant, limit in (("edited", None), ("web", 2048), ("thumb", 400)):
            path = Path(entry["output"][variant])
            assert path.is_file()
            size = image_size(path)
            assert limit is None or max(size) <= limit
        assert image_size(entry["output"]["edited"]) == (entry["width"], entry["height"])


def test_process_searches_sub_folders_and_names_everything_it_did_not_process(tmp_path: Path, real_photos) -> None:
    """A shoot folder as photographers have them: a second card in a sub-folder, a teaser GIF, a note, a dead link."""
    from tests import photo_files as pf

    photos = dict(real_photos)
    shoot = tmp_path / "shoot"
    (shoot / "card2").mkdir(parents=True)
    (shoot / "coffee.jpg").write_bytes(photos["coffee.jpg"])
    (shoot / "card2" / "coffee.jpg").write_bytes(photos["rocket.jpg"])  # the same name on the second card
    small = np.asarray(Image.open(io.BytesIO(photos["astronaut.jpg"])).convert("RGB").resize((128, 128)))
    frames = [Image.fromarray(np.roll(small, 30 * i, axis=1)).quantize(64) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    (shoot / "teaser.gif").write_bytes(buf.getvalue())
    cutout = np.dstack([small, np.full(small.shape[:2], 255, np.uint8)])
    cutout[:40, :40, 3] = 0
    (shoot / "cutout.png").write_bytes(pf.encode(cutout, "PNG"))
    (shoot / "odd.jpg").write_bytes(pf.jpeg(small, exif=pf.exif_with(orientation=99)))
    (shoot / "empty.jpg").write_bytes(b"")
    (shoot / "notes.txt").write_text("ceremony 14:00\n")
    os.symlink(tmp_path / "moved-away.jpg", shoot / "dead.jpg")
    out = tmp_path / "out"

    result = cli("process", str(shoot), "--out", str(out), "--device", "cpu", "--no-progress")
    assert result.returncode == 3, result.stderr  # empty.jpg failed
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"5 of 6 photos processed, 2 skipped → {out}")
    assert f"  skipped: {shoot / 'notes.txt'}: not a photo file type (.txt)" in lines
    assert (
        f"  skipped: {shoot / 'dead.jpg'}: a broken link (to {tmp_path / 'moved-away.jpg'}, which does not exist)"
        in lines
    )
    failed = [line for line in lines if line.startswith("  failed:")]
    assert len(failed) == 1 and "empty.jpg" in failed[0] and "upload" not in failed[0]
    notes = "\n".join(line for line in lines if line.startswith("  note:"))
    assert "cutout.png: transparent areas were flattened onto white" in notes
    assert "odd.jpg: EXIF orientation 99 is not a valid value" in notes
    assert "teaser.gif: an animated GIF of 3 frames: only the first is edited" in notes

    for variant in ("edited", "web", "thumbs"):  # the second card's folder is mirrored: no name collides
        assert (out / variant / "card2" / "coffee.jpg").is_file() and (out / variant / "coffee.jpg").is_file()
    assert image_size(out / "edited" / "card2" / "coffee.jpg") == Image.open(io.BytesIO(photos["rocket.jpg"])).size
    report = json.loads((out / "report.json").read_text())
    assert {Path(s["file"]).name: s["reason"] for s in report["skipped"]} == {
        "notes.txt": "not a photo file type (.txt)",
        "dead.jpg": f"a broken link (to {tmp_path / 'moved-away.jpg'}, which does not exist)",
    }
    by_name = {str(Path(e["file"]).relative_to(shoot)): e for e in report["photos"]}
    assert set(by_name) == {"coffee.jpg", "card2/coffee.jpg", "teaser.gif", "cutout.png", "odd.jpg", "empty.jpg"}
    assert by_name["cutout.png"]["notes"] == by_name["cutout.png"]["analysis"]["source"]["notes"]
    assert by_name["coffee.jpg"]["notes"] == []


def test_process_in_a_log_keeps_the_summary_on_stdout_and_only_events_on_stderr(tmp_path: Path, real_photos) -> None:
    """stderr is not a terminal here (a journal, a CI log): no progress bar redrawn into it, only JSON events."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, data in real_photos[:3]:
        (inputs / name).write_bytes(data)
    result = cli("process", str(inputs), "--out", str(tmp_path / "out"), "--device", "cpu")  # progress on
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]  # every line is an event
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == 3 and progress[-1]["total"] == 3
    assert result.stdout.startswith("3 of 3 photos processed") and "{" not in result.stdout


def test_errors_are_one_line_with_what_to_do(tmp_path: Path) -> None:
    result = cli("process", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr
    result = cli("run", "--drain", env={"WORKER_LEASE_S": "1", "WORKER_HEARTBEAT_INTERVAL_S": "5"})
    assert result.returncode == 2 and "WORKER_LEASE_S" in result.stderr


def said(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What a command told its user on stderr: its lines less the JSON event log."""
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]


def test_an_unreachable_database_is_one_line_before_any_model_loads(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket closes
    url = f"postgresql://worker:pw-secret@127.0.0.1:{port}/apelier"
    env = {"DATABASE_URL": url, "WORKER_DATA_DIR": str(tmp_path / "data"), "WORKER_DEVICE": "cpu"}
    for command in (["status"], ["migrate"], ["run", "--drain"], ["enqueue", "--gallery", "g"], ["cancel", "j"]):
        result = cli(*command, env=env, timeout=60)
        assert result.returncode == 2, (command, result.stderr)
        assert said(result) == [
            f"apelier-worker: cannot reach the database at postgresql://worker:***@127.0.0.1:{port}/apelier "
            "(connection refused): check DATABASE_URL, that PostgreSQL is running and that this box may reach it "
            "(firewall)"
        ], command
        assert "Traceback" not in result.stderr and "pw-secret" not in result.stderr + result.stdout
        assert "face_restorer" not in result.stderr  # `run` gave up before loading a model
    malformed = cli("status", env={**env, "DATABASE_URL": "worker:pw-secret@db.example.com/apelier"})
    assert malformed.returncode == 2 and len(said(malformed)) == 1
    assert said(malformed)[0].startswith("apelier-worker: DATABASE_URL is not a PostgreSQL connection string")
    assert "pw-secret" not in malformed.stderr


def test_commands_on_a_database_never_migrated_say_to_migrate(empty_db_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": empty_db_url, "WORKER_DATA_DIR": str(tmp_path / "data"), "WORKER_DEVICE": "cpu"}
    for command in (["status"], ["run", "--drain"]):
        result = cli(*command, env=env, timeout=60)
        assert result.returncode == 2, result.stderr
        (line,) = said(result)
        assert "has no worker schema: run `apelier-worker migrate`" in line, line
        assert "face_restorer" not in result.stderr
    assert cli("migrate", env=env).returncode == 0
    assert cli("status", env=env).returncode == 0


def test_run_checks_storage_before_loading_models(db_url: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "DATABASE_URL": db_url,
        "WORKER_DATA_DIR": str(tmp_path / "data"),
        "WORKER_DEVICE": "cpu",
        "SUPABASE_URL": f"http://127.0.0.1:{port}",
        "SUPABASE_SERVICE_ROLE_KEY": "service-role-secret",
    }
    result = cli("run", "--drain", env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    (line,) = said(result)
    assert line.startswith(f"apelier-worker: cannot use Supabase Storage http://127.0.0.1:{port} bucket photos")
    assert "SUPABASE_SERVICE_ROLE_KEY" in line and "service-role-secret" not in result.stderr
    assert "face_restorer" not in result.stderr


def test_operator_commands_against_a_database(db_url: str, tmp_path: Path, storage, real_photos) -> None:
    env = {"DATABASE_URL": db_url, "WORKER_DATA_DIR": str(tmp_path / "data")}
    latest = latest_version()
    assert cli("migrate", env=env).stdout.strip() == f"schema: version {latest} → version {latest}"
    queue = Queue(db_url, "t")
    gallery = make_gallery(queue, storage, real_photos[:1])
    result = cli("enqueue", "--gallery", gallery.gallery_id, env=env)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    job = queue.app.get_job(job_id)
    assert job is not None and job["status"] == "queued" and job["total_images"] == 1

    status = cli("status", "--json", env=env)
    assert status.returncode == 0
    depth = json.loads(status.stdout)["queue"]
    assert [(r["status"], r["jobs"]) for r in depth] == [("queued", 1)]
    assert "queued" in cli("status", env=env).stdout

    assert cli("cancel", job_id, env=env).returncode == 0
    again = cli("cancel", job_id, env=env)
    assert again.returncode == 2 and "not queued or running" in again.stderr
    queue.close()


def test_doctor_reports_each_check_on_one_line(db_url: str, tmp_path: Path) -> None:
    result = cli("doctor", env={"DATABASE_URL": db_url, "WORKER_DATA_DIR": str(tmp_path / "data")})
    lines = result.stdout.strip().splitlines()
    names = {line[7:].split()[0] for line in lines}
    assert {"gpu", "database", "storage", "disk", "models"} <= names
    assert any(line.startswith("[ok  ] database") and "LISTEN ok" in line for line in lines)
    assert result.returncode == 0, result.stdout


@pytest.mark.slow
def test_demo_runs_end_to_end_on_the_embedded_defaults(tmp_path: Path) -> None:
    env = {"WORKER_DATA_DIR": str(tmp_path / "demo")}
    for name in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"):
        env[name] = ""
    result = cli("demo", env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "completed — 7/7 photos" in result.stdout
    assert "style 'Demo look (warm film)': ready, learned from 6 pairs" in result.stdout
    assert "before/after contact sheet" in result.stdout
    for phase in ("decode", "analysis", "style", "output"):
        assert f"\n{phase} " in result.stdout
    sheets = list((tmp_path / "demo" / "demo").glob("contact_sheet_*.png"))
    assert len(sheets) == 1 and image_size(sheets[0])[1] > 7 * 150  # seven before|after rows
    edited = list((tmp_path / "demo" / "storage" / "photos").rglob("edited/*.jpg"))
    assert len(edited) == 7
