"""Which restorer runs: CodeFormer only with weights AND the licence acknowledged; one line says why."""

from __future__ import annotations

import hashlib
import json

import pytest
from structlog.testing import capture_logs

from worker.faces import restorer as face_restorer
from worker.faces.skin import ClassicRestorer
from worker.models import bundle, codeformer, mtcnn, registry
from worker.service.config import Settings


def _settings(tmp_path, **kw) -> Settings:
    return Settings(models_dir=tmp_path, data_dir=tmp_path, device="cpu", **kw)


class _TinyModel:
    """Stands in for the 94M-parameter network: the gating, not the forward pass, is under test."""


@pytest.fixture
def fake_codeformer(monkeypatch, tmp_path):
    """A codeformer.pth that passes its check, and a loader that does not build the real network."""
    (tmp_path / "codeformer.pth").write_bytes(b"weights")
    monkeypatch.setattr(codeformer, "load", lambda path, device="cpu": _TinyModel())
    return tmp_path / "codeformer.pth"


def test_codeformer_without_licence_acknowledgement_runs_classic(tmp_path, fake_codeformer):
    settings = _settings(tmp_path, face_restorer="codeformer", codeformer_license_accepted=False)
    with capture_logs() as logs:
        restorer, parser, note = face_restorer.load_restorer(settings, "cpu")
    assert isinstance(restorer, ClassicRestorer) and parser is None
    assert "non-commercial" in note and "WORKER_CODEFORMER_LICENSE_ACCEPTED" in note
    assert len(logs) == 1 and logs[0]["log_level"] == "warning"
    assert "WORKER_CODEFORMER_LICENSE_ACCEPTED" in logs[0]["reason"]


def test_codeformer_accepted_but_weights_absent_runs_classic(tmp_path):
    settings = _settings(tmp_path, face_restorer="codeformer", codeformer_license_accepted=True)
    with capture_logs() as logs:
        restorer, _, note = face_restorer.load_restorer(settings, "cpu")
    assert isinstance(restorer, ClassicRestorer)
    assert "weights absent" in note and "models fetch codeformer" in note
    assert len(logs) == 1


def test_codeformer_accepted_and_present_runs_codeformer(tmp_path, fake_codeformer):
    settings = _settings(tmp_path, face_restorer="codeformer", codeformer_license_accepted=True)
    with capture_logs() as logs:
        restorer, parser, note = face_restorer.load_restorer(settings, "cpu")
    assert isinstance(restorer, codeformer.CodeFormerRestorer)
    assert parser is None and "feathered oval" in note  # ParseNet weights absent
    chosen = [e for e in logs if e["event"].startswith("face_restorer")]
    assert len(chosen) == 1 and chosen[0]["restorer"] == "codeformer"
    assert any(e["event"] == "model_hash_recorded" for e in logs)
    # Its hash was recorded on first load; a changed file is refused next time, falling back.
    locked = registry.read_lock(tmp_path)["codeformer.pth"]["sha256"]
    assert locked == hashlib.sha256(b"weights").hexdigest()
    fake_codeformer.write_bytes(b"tampered")
    restorer, _, note = face_restorer.load_restorer(settings, "cpu")
    assert isinstance(restorer, ClassicRestorer) and "CodeFormer unusable" in note


def test_corrupt_codeformer_file_falls_back_with_the_reason(tmp_path):
    (tmp_path / "codeformer.pth").write_bytes(b"<html>404</html>")
    settings = _settings(tmp_path, face_restorer="codeformer", codeformer_license_accepted=True)
    restorer, _, note = face_restorer.load_restorer(settings, "cpu")
    assert isinstance(restorer, ClassicRestorer)
    assert "CodeFormer unusable" in note and "plain-weights" in note


def test_restorer_off_and_classic(tmp_path):
    restorer, parser, note = face_restorer.load_restorer(_settings(tmp_path, face_restorer="off"), "cpu")
    assert restorer is None and parser is None and "WORKER_FACE_RESTORER=off" in note
    restorer, _, note = face_restorer.load_restorer(_settings(tmp_path, face_restorer="classic"), "cpu")
    assert isinstance(restorer, ClassicRestorer) and "licence-clean" in note


def test_bundle_load_fills_the_face_slots_and_notes(tmp_path):
    if mtcnn.weights_dir() is None:
        pytest.skip("facenet-pytorch (MTCNN weights) not installed; run make install")
    env = {
        "WORKER_MODELS_DIR": str(tmp_path),
        "WORKER_FACE_RESTORER": "codeformer",
        "WORKER_DEVICE": "cpu",
    }
    models = bundle.load(Settings.from_env(env))
    assert models.describe()["face_detector"] == "mtcnn"
    assert models.describe()["face_restorer"] == "classic"
    assert models.face_parser is None
    assert any("RetinaFace weights absent" in n for n in models.notes)
    assert any("non-commercial" in n for n in models.notes)
    json.dumps(models.notes)
