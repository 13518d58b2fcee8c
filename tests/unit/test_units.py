"""Small pieces: settings from the environment, edit settings, retry decisions, progress throttling."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from worker.errors import (
    ConfigError,
    DecodeError,
    Failure,
    JobInputError,
    RetryStrategy,
    StorageError,
    TransientStorageError,
    classify,
)
from worker.jobs.progress import ProgressTracker
from worker.profile import EditSettings
from worker.service.config import Settings, redact_url


def test_settings_from_env_reads_every_kind_and_validates() -> None:
    env = {
        "DATABASE_URL": "postgresql://worker:s3cret@db.example.com:5432/postgres",
        "SUPABASE_URL": "https://x.supabase.co",
        "SUPABASE_SERVICE_ROLE_KEY": "eyJsecret",
        "WORKER_DEVICE": "CUDA",
        "WORKER_DATA_DIR": "/srv/apelier",
        "WORKER_BATCH_SIZE": "16",
        "WORKER_PHASE_LANES": "4",
        "WORKER_LEASE_S": "90",
        "WORKER_CODEFORMER_LICENSE_ACCEPTED": "yes",
    }
    s = Settings.from_env(env)
    assert (s.device, s.batch_size, s.lease_s, s.codeformer_license_accepted) == ("cuda", 16, 90.0, True)
    assert s.phase_lanes == 4 and Settings.from_env({}).phase_lanes == 3
    assert s.data_dir == Path("/srv/apelier") and s.models_dir == Path("/srv/apelier/models")
    safe = repr(s.redacted())
    assert "s3cret" not in safe and "eyJsecret" not in safe and "***" in safe
    assert "eyJsecret" not in repr(s)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORKER_BATCH_SIZE": "many"}, "WORKER_BATCH_SIZE"),
        ({"WORKER_PHASE_LANES": "0"}, "WORKER_PHASE_LANES"),
        ({"WORKER_DEVICE": "tpu"}, "WORKER_DEVICE"),
        ({"SUPABASE_URL": "https://x.supabase.co"}, "SUPABASE_SERVICE_ROLE_KEY"),
        ({"WORKER_LEASE_S": "5", "WORKER_HEARTBEAT_INTERVAL_S": "10"}, "WORKER_LEASE_S"),
        # The app's queue view fails a job whose row has not moved for 5 minutes (docs/app.md).
        ({"WORKER_LEASE_S": "600", "WORKER_HEARTBEAT_INTERVAL_S": "120"}, "at most 60"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"WORKER_CODEFORMER_LICENSE_ACCEPTED": "maybe"}, "boolean"),
    ],
)
def test_bad_settings_say_which_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert redact_url("host=h password='a b' dbname=x") == "host=h password=*** dbname=x"


def test_edit_settings_merge_profile_then_override_and_ignore_bad_values() -> None:
    edit = EditSettings.resolve(
        {"retouch_intensity": "heavy", "cleanup_level": "moderate", "crop_aspect": "4:5", "unknown": 1},
        {"retouch_intensity": "off", "jpeg_quality": 500, "auto_crop": "yes"},
    )
    assert edit.retouch_intensity == "off" and edit.cleanup_level == "moderate"
    assert edit.crop_ratio == pytest.approx(0.8)
    assert edit.jpeg_quality == 92 and not edit.auto_crop
    assert set(edit.ignored) == {"jpeg_quality=500", "auto_crop='yes'"}
    assert EditSettings.resolve(None, None) == EditSettings()
    assert EditSettings(skin_smoothing=40).smoothing_strength == pytest.approx(0.4)


def test_retry_strategy_backs_off_exponentially_and_never_retries_a_permanent_failure() -> None:
    strategy = RetryStrategy(base_delay_s=10, max_delay_s=25)
    transient = classify(TransientStorageError("x"))
    assert [strategy.decide(transient, a).delay_s for a in (1, 2, 3)] == [10, 20, 25]
    assert all(strategy.decide(transient, a).retry for a in (1, 4, 9))  # attempts left: the database decides
    permanent = Failure("job", False, "bad", "JobInputError")
    assert not strategy.decide(permanent, 1).retry


def test_classify_scopes() -> None:
    assert classify(DecodeError("x")).scope == "photo"
    assert classify(TransientStorageError("x")).retryable
    # Causes outside the job give the attempt back; the job's own do not.
    assert classify(TransientStorageError("x")).outside
    assert classify(psycopg.OperationalError("server closed the connection")).outside
    assert not classify(ZeroDivisionError("boom")).outside and not classify(MemoryError()).outside
    assert not classify(StorageError("403")).outside and not classify(JobInputError("bad")).outside
    unknown = classify(ZeroDivisionError("boom"))
    assert unknown.scope == "job" and "ZeroDivisionError" in unknown.reason


def test_progress_writes_are_throttled_and_the_final_one_forced() -> None:
    now = [0.0]
    writes: list[dict] = []

    def write(t: ProgressTracker) -> str:
        writes.append(t.as_json())
        return "processing"

    tracker = ProgressTracker(total=100, interval_s=0.5, write=write, clock=lambda: now[0])
    for _ in range(100):
        now[0] += 0.01  # 100 photos per second
        tracker.photo_done({"style": 0.002})
    assert len(writes) == 2  # at t=0.01 and t=0.51: never more than 2 per second
    tracker.maybe_write(force=True)
    assert writes[-1]["processed"] == 100 and writes[-1]["phases"]["output"]["done"] == 100
    assert writes[-1]["eta_s"] == 0
    assert tracker.timings_json()["style"]["mean_ms"] == pytest.approx(2.0)
