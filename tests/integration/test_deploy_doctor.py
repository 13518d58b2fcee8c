"""``apelier-worker doctor``: the driver against torch's CUDA build, the Supabase connection mistakes,
model files and licences, and the container's ``--quick`` health check on the liveness file."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.test_cli import cli
from worker.commands import doctor
from worker.commands.doctor import DriverInfo, Gpu, judge_driver, parse_nvidia_smi
from worker.errors import database_error
from worker.models import registry
from worker.service.config import Settings
from worker.service.notify import Notifier

A10G_QUERY = "NVIDIA A10G, 580.82.07, 23028, 1\n"
A10G_BANNER = """
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.82.07              Driver Version: 580.82.07      CUDA Version: 13.0     |
|-----------------------------------------+------------------------+----------------------+
"""


def test_nvidia_smi_output_is_read() -> None:
    info = parse_nvidia_smi(A10G_QUERY + "NVIDIA A10G, 580.82.07, 23028, 20480\n", A10G_BANNER)
    assert info.driver == "580.82.07" and info.cuda == "13.0"
    assert info.gpus == (Gpu("NVIDIA A10G", 23028, 1), Gpu("NVIDIA A10G", 23028, 20480))


def test_the_driver_is_judged_against_torchs_cuda_build() -> None:
    new = parse_nvidia_smi(A10G_QUERY, A10G_BANNER)
    ok = judge_driver(new, "2.14.1+cu130", "13.0", "auto")
    assert ok.ok and not ok.warn and "NVIDIA A10G" in ok.detail and "CUDA 13.0" in ok.detail

    old = DriverInfo("550.54.15", "12.4", (Gpu("NVIDIA A10G", 23028, 1),))
    too_old = judge_driver(old, "2.14.1+cu130", "13.0", "cuda")
    assert not too_old.ok and ">= 580" in too_old.detail and "reboot" in too_old.detail

    minor = judge_driver(DriverInfo("580.1", "13.0", new.gpus), "2.15+cu131", "13.1", "cuda")
    assert minor.ok and minor.warn and "minor-version" in minor.detail

    cpu_build = judge_driver(new, "2.14.1+cpu", None, "auto")
    assert not cpu_build.ok and "CPU-only" in cpu_build.detail and "cu130" in cpu_build.detail

    broken = judge_driver(
        DriverInfo(None, None, (), "NVIDIA-SMI has failed because it couldn't communicate"), "", "", "auto"
    )
    assert not broken.ok and "reboot" in broken.detail

    assert not judge_driver(None, "2.14.1", "13.0", "cuda").ok  # a GPU is required and there is no driver
    no_driver = judge_driver(None, "2.14.1", "13.0", "auto")
    assert no_driver.ok and no_driver.warn and "ubuntu-drivers" in no_driver.detail
    assert judge_driver(None, None, None, "cpu").ok
    assert judge_driver(new, None, None, "cuda").ok  # --quick: the driver alone


def test_supabase_connection_mistakes_get_a_fix() -> None:
    pooler = "postgresql://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres"
    note = doctor.transaction_pooler_note(pooler)
    assert note is not None and "session pooler (port 5432)" in note
    assert doctor.transaction_pooler_note(pooler.replace(":6543", ":5432")) is None
    direct = "postgresql://postgres:pw@db.abcd.supabase.co:5432/postgres"
    error = 'connection to server at "db.abcd.supabase.co" (2a05:d014::1), port 5432 failed: Network is unreachable'
    unreachable = database_error(psycopg.OperationalError(error), direct)
    assert unreachable is not None and "IPv6-only" in unreachable.message and "pw" not in unreachable.message
    refused = database_error(psycopg.OperationalError("FATAL: password authentication failed"), pooler)
    assert refused is not None and "postgres.<project-ref>" in refused.message


def test_models_are_listed_with_presence_and_licence(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "big-lama.pt").write_bytes(b"x")
    (models / "codeformer.pth").write_bytes(b"x")
    settings = Settings(data_dir=tmp_path, models_dir=models, device="cpu")
    lines = [c.line() for c in doctor.check_models(settings, load=False)]
    assert lines == [
        "[warn] models     retinaface-r50: missing — `apelier-worker models fetch retinaface-r50` "
        f"({registry.spec('retinaface-r50').licence})",
        "[warn] models     parsenet: missing — `apelier-worker models fetch parsenet` "
        f"({registry.spec('parsenet').licence})",
        "[warn] models     codeformer: present, unused until WORKER_CODEFORMER_LICENSE_ACCEPTED=true "
        f"({registry.spec('codeformer').licence})",
        f"[ok  ] models     big-lama: present ({registry.spec('big-lama').licence})",
    ]
    # Loading (the full doctor) names what runs and its licence.
    full = doctor.check_models(settings)
    assert [c.line() for c in full[: len(lines)]] == lines
    loaded, *notes = full[len(lines) :]
    assert loaded.ok and loaded.detail.startswith("loaded: device=cpu")
    assert all(note.ok and note.warn for note in notes)  # what is off and why, never a failure
    assert doctor.licence_of("lama") == registry.spec("big-lama").licence
    assert doctor.licence_of("opencv-telea") is None
    assert doctor.licence_of("mtcnn") == registry.IN_WHEELS["mtcnn"]
    if "face_detector=mtcnn" in loaded.detail:  # facenet-pytorch's wheel is installed (make install)
        assert f"face_detector=mtcnn ({registry.IN_WHEELS['mtcnn']})" in loaded.detail


def test_a_missing_weight_file_is_named_once(tmp_path: Path) -> None:
    """The registry's "missing" line says it; the loaded models' notes ("… weights absent") must not say it again."""
    settings = Settings(
        data_dir=tmp_path, models_dir=tmp_path / "models", device="cpu",
        face_restorer="codeformer", codeformer_license_accepted=True,
    )  # fmt: skip
    lines = [c.detail for c in doctor.check_models(settings)]
    for name, word in (("retinaface-r50", "retinaface"), ("codeformer", "codeformer"), ("big-lama", "lama")):
        said = [line for line in lines if word in line.lower() and ("absent" in line or "missing" in line)]
        assert said == [line for line in lines if line.startswith(f"{name}: missing")], said
    assert any(line.startswith("loaded:") for line in lines)


def test_quick_doctor_fails_when_the_settings_need_a_missing_model(tmp_path: Path) -> None:
    """`doctor --quick` is the container's HEALTHCHECK: it must fail where the worker would not start."""
    settings = Settings(data_dir=tmp_path, models_dir=tmp_path / "models", device="cpu", inpainter="lama")
    lama = [c for c in doctor.check_models_quick(settings) if "big-lama" in c.detail]
    assert len(lama) == 1 and not lama[0].ok and "WORKER_INPAINTER=lama" in lama[0].detail
    auto = replace(settings, inpainter="auto")
    assert all(c.ok for c in doctor.check_models_quick(auto))


def test_the_liveness_check_sees_fresh_stale_and_dead_workers(tmp_path: Path) -> None:
    path = tmp_path / "alive.json"
    settings = Settings(data_dir=tmp_path, liveness_file=path)
    (missing,) = doctor.check_liveness(settings, required=True)
    assert not missing.ok and "not running" in missing.detail

    notifier = Notifier(None, liveness_file=path)
    notifier.ready("idle, waiting for jobs")
    (fresh,) = doctor.check_liveness(settings, required=True)
    assert fresh.ok and "idle, waiting for jobs" in fresh.detail

    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "deadline": time.time() - 5, "updated_at": time.time() - 305}))
    (stale,) = doctor.check_liveness(settings, required=True)
    assert not stale.ok and "has not reported for 305 s" in stale.detail

    gone = subprocess.Popen(["true"])
    gone.wait()
    path.write_text(json.dumps({**record, "pid": gone.pid}))
    (dead,) = doctor.check_liveness(settings, required=True)
    assert not dead.ok and "is gone" in dead.detail
    assert doctor.check_liveness(Settings(data_dir=tmp_path)) == []  # not configured: not checked


def test_a_check_that_crashes_is_reported_and_the_others_still_run(tmp_path: Path, capsys) -> None:
    def boom(settings: Settings) -> doctor.Check:
        raise RuntimeError("sensor on fire")

    code = doctor.run(Settings(data_dir=tmp_path), checks=[boom, doctor.check_disk])
    out = capsys.readouterr().out.splitlines()
    assert code == 1 and out[0] == "[FAIL] boom       sensor on fire" and out[1].startswith("[ok  ] disk")


def test_the_storage_probe_is_an_image_the_apps_bucket_takes_and_never_stays_behind(tmp_path: Path) -> None:
    """The app's bucket allows images only (text/plain is refused); the probe is deleted even when its read fails."""
    from tests.fake_supabase import FakeSupabase

    with FakeSupabase(allowed_mime_types=["image/jpeg", "image/png", "image/webp", "image/heic"]) as fake:
        settings = Settings(
            data_dir=tmp_path,
            supabase_url=fake.url,
            supabase_service_role_key=fake.key,
            storage_bucket=fake.bucket,
            storage_retries=0,
            worker_id="box:1",
        )
        check = doctor.check_storage(settings)
        assert check.ok and check.detail == f"Supabase Storage {fake.url} bucket photos: read/write ok", check.detail
        assert [m for m, _ in fake.state.requests] == ["POST", "GET", "DELETE"] and fake.state.objects == {}

        fake.state.faults = [None, "404"]  # written, but the read fails
        failed = doctor.check_storage(settings)
        assert not failed.ok and "STORAGE_BUCKET" in failed.detail
        assert fake.state.requests[-1][0] == "DELETE" and fake.state.objects == {}


@pytest.mark.parametrize("fresh", [True, False], ids=["alive", "hung"])
def test_doctor_quick_is_the_containers_health_check(db_url: str, tmp_path: Path, fresh: bool) -> None:
    liveness = tmp_path / "alive.json"
    now = time.time()
    deadline = now + 300 if fresh else now - 1
    liveness.write_text(json.dumps({"pid": os.getpid(), "updated_at": now, "deadline": deadline, "status": "idle"}))
    env = {
        "DATABASE_URL": db_url,
        "WORKER_DATA_DIR": str(tmp_path / "data"),
        "WORKER_LIVENESS_FILE": str(liveness),
        "WORKER_DEVICE": "auto",
    }
    result = cli("doctor", "--quick", env=env, timeout=120)
    lines = result.stdout.strip().splitlines()
    names = list(dict.fromkeys(line[7:].split()[0] for line in lines))  # in order, one per check
    assert names == ["driver", "database", "disk", "models", "worker"], result.stdout + result.stderr
    assert "storage" not in names and "loaded:" not in result.stdout  # nothing written, no model loaded
    assert result.returncode == (0 if fresh else 1), result.stdout


def test_status_shows_the_fleet_and_flags_a_job_whose_worker_went_silent(queue, db_url, storage, real_photos, capsys):
    from tests.conftest import make_gallery
    from worker.commands.status import print_status
    from worker.queue.database import Queue

    gallery = make_gallery(queue, storage, real_photos[:2])
    quiet = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    busy = queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    queue.admin.enqueue(photographer_id=gallery.photographer_id, gallery_id=gallery.gallery_id)
    workers = {}
    for name, job_id in (("box-a-gpu0", quiet), ("box-b-gpu1", busy)):
        worker = Queue(db_url, name)
        claimed = worker.jobs.claim()
        assert claimed is not None and claimed.id == job_id
        worker.jobs.update_progress(job_id, phase="retouch", processed=1, total=2, progress={}, phase_timings={})
        worker.jobs.worker_seen(
            hostname=name[:5], pid=1, version="t", device="cuda", state="busy", job_id=job_id, info={}
        )
        workers[name] = worker
    queue.conn.execute("UPDATE processing_jobs SET heartbeat_at = now() - interval '5 minutes' WHERE id = %s", (quiet,))
    for worker in workers.values():
        worker.close()

    assert print_status(db_url, Settings(lease_s=60)) == 0
    out = capsys.readouterr().out
    in_flight = out.split("in flight:")[1].split("workers seen")[0].strip().splitlines()
    lines = {line.split()[0]: line for line in in_flight}
    assert set(lines) == {quiet, busy}
    assert "retouch" in lines[busy] and "1/2" in lines[busy] and "worker box-b-gpu1" in lines[busy]
    assert "STALE" in lines[quiet] and "heartbeat 5m ago" in lines[quiet] and "STALE" not in lines[busy]
    assert "queued" in out.split("queue:")[1].split("in flight:")[0]
    assert "box-a-gpu0" in out and "box-b-gpu1" in out


def test_doctor_judges_the_schema_against_the_range_this_release_runs_on(queue, db_url: str, tmp_path: Path) -> None:
    from worker.queue.migrations import MIN_SCHEMA_VERSION, latest_version

    settings = Settings(data_dir=tmp_path, database_url=db_url)
    check = doctor.check_database(settings)
    assert check.ok and f"schema {latest_version()}," in check.detail

    newer = latest_version() + 1  # a box of the next release migrated first: fine, but say so
    queue.conn.execute("INSERT INTO apelier.migrations VALUES (%s, 'next.sql', 'x')", (newer,))
    check = doctor.check_database(settings)
    assert check.ok and check.warn and f"schema {newer} (newer than this release's {latest_version()}" in check.detail

    queue.conn.execute("DROP TABLE apelier.migrations")  # as a worker before versioned migrations left it
    check = doctor.check_database(settings)
    assert (
        not check.ok and f"schema 3, need {MIN_SCHEMA_VERSION} or newer; run `apelier-worker migrate`" in check.detail
    )
