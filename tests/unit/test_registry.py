"""Model registry: verified, atomic downloads from a real (local) HTTP server, and the lock file."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import torch

from worker.errors import ModelFileError
from worker.models import registry
from worker.models.registry import ModelSpec

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
OTHER = b"not the same file" * 1000


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/good":
            self._send(200, PAYLOAD)
        elif self.path == "/other":
            self._send(200, OTHER)
        elif self.path == "/truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/error":
            self._send(503, b"busy")
        else:
            self._send(404, b"no")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _tiny(monkeypatch, **hashes: str) -> ModelSpec:
    spec = ModelSpec(
        name="tiny",
        file_name="tiny.pth",
        url="https://example.invalid/tiny.pth",
        licence="MIT",
        approx_mb=1.0,
        used_for="tests",
        **hashes,  # type: ignore[arg-type]
    )
    monkeypatch.setitem(registry.MODELS, "tiny", spec)
    return spec


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_good_published_sha256_lands_atomically_and_is_locked(monkeypatch, tmp_path, server):
    _tiny(monkeypatch, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    path = registry.fetch("tiny", tmp_path, url=f"{server}/good", progress=False)
    assert path == tmp_path / "tiny.pth"
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == []
    lock = json.loads((tmp_path / registry.LOCK_FILE).read_text())
    assert lock["files"]["tiny.pth"]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert registry.verify("tiny", tmp_path) == path


def test_published_md5_is_checked_too(monkeypatch, tmp_path, server):
    _tiny(monkeypatch, md5=hashlib.md5(PAYLOAD).hexdigest())
    assert registry.fetch("tiny", tmp_path, url=f"{server}/good", progress=False).is_file()
    _tiny(monkeypatch, md5="0" * 32)
    with pytest.raises(ModelFileError, match="md5"):
        registry.verify("tiny", tmp_path)


def test_wrong_hash_is_deleted_and_reported(monkeypatch, tmp_path, server):
    _tiny(monkeypatch, sha256=hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(ModelFileError, match="does not match") as exc:
        registry.fetch("tiny", tmp_path, url=f"{server}/good", progress=False)
    assert "deleted" in exc.value.message and "\n" not in exc.value.message
    assert not (tmp_path / "tiny.pth").exists()
    assert _leftovers(tmp_path) == []


def test_truncated_transfer_leaves_nothing(monkeypatch, tmp_path, server):
    _tiny(monkeypatch)
    with pytest.raises(ModelFileError, match="tiny"):
        registry.fetch("tiny", tmp_path, url=f"{server}/truncated", progress=False)
    assert not (tmp_path / "tiny.pth").exists()
    assert _leftovers(tmp_path) == []
    assert registry.read_lock(tmp_path) == {}


def test_server_error_is_one_line_with_the_status(monkeypatch, tmp_path, server):
    _tiny(monkeypatch)
    with pytest.raises(ModelFileError, match="HTTP 503"):
        registry.fetch("tiny", tmp_path, url=f"{server}/error", progress=False)
    assert not (tmp_path / "tiny.pth").exists()
    assert _leftovers(tmp_path) == []


def test_unreachable_host_is_reported(monkeypatch, tmp_path):
    _tiny(monkeypatch)
    with pytest.raises(ModelFileError, match="check the connection"):
        registry.fetch("tiny", tmp_path, url="http://127.0.0.1:9/nothing", progress=False, timeout_s=2)


def test_no_published_hash_records_the_first_download_and_holds_later_ones_to_it(monkeypatch, tmp_path, server):
    _tiny(monkeypatch)
    path = registry.fetch("tiny", tmp_path, url=f"{server}/good", progress=False)
    assert registry.read_lock(tmp_path)["tiny.pth"]["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    # Upstream now serves something else: a forced re-download is refused, the good file stays.
    with pytest.raises(ModelFileError, match=registry.LOCK_FILE):
        registry.fetch("tiny", tmp_path, url=f"{server}/other", progress=False, force=True)
    assert path.read_bytes() == PAYLOAD
    # The file on disk is tampered with: the next load refuses it.
    path.write_bytes(PAYLOAD[:-1] + b"\x00")
    with pytest.raises(ModelFileError, match="failed its check"):
        registry.verify("tiny", tmp_path)


def test_a_file_put_in_place_by_hand_is_recorded_on_first_load(monkeypatch, tmp_path):
    _tiny(monkeypatch)
    (tmp_path / "tiny.pth").write_bytes(OTHER)
    registry.verify("tiny", tmp_path)
    assert registry.read_lock(tmp_path)["tiny.pth"]["sha256"] == hashlib.sha256(OTHER).hexdigest()


def test_missing_file_says_how_to_fetch_it(tmp_path):
    with pytest.raises(ModelFileError, match="models fetch codeformer"):
        registry.verify("codeformer", tmp_path)


def test_loading_is_weights_only(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"params_ema": {"w": torch.ones(2)}}, good)
    assert torch.equal(registry.torch_load(good)["params_ema"]["w"], torch.ones(2))
    evil = tmp_path / "evil.pth"
    torch.save({"payload": _Pickled()}, evil)  # an arbitrary object: needs code to unpickle
    with pytest.raises(ModelFileError, match="plain-weights"):
        registry.torch_load(evil)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(ModelFileError):
        registry.torch_load(garbage)
    short = tmp_path / "short.pth"
    short.write_bytes(b"junk")  # torch's unpickler raises struct.error here
    with pytest.raises(ModelFileError, match="plain-weights"):
        registry.torch_load(short)


def test_mtcnn_weights_that_do_not_fit_say_to_reinstall_the_wheel(tmp_path):
    import shutil

    from worker.models import mtcnn

    source = mtcnn.weights_dir()
    if source is None:
        pytest.skip("facenet-pytorch (MTCNN weights) not installed")
    for name in ("pnet", "rnet", "onet"):
        shutil.copy(source / f"{name}.pt", tmp_path / f"{name}.pt")
    assert not mtcnn.mtcnn(folder=tmp_path).training
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "rnet.pt")
    with pytest.raises(ModelFileError, match=r"rnet\.pt does not match the RNet architecture.*facenet-pytorch"):
        mtcnn.mtcnn(folder=tmp_path)


class _Pickled:
    pass


def test_the_table_names_every_model_with_licence_and_official_url():
    assert set(registry.MODELS) == {"retinaface-r50", "parsenet", "codeformer", "big-lama"}
    lama = registry.MODELS["big-lama"]
    assert lama.file_name == "big-lama.pt"
    assert lama.md5 == "e3aa4aaa15225a33ec84f9f4bc47e500"
    assert registry.MODELS["codeformer"].file_name == "codeformer.pth"
    for spec in registry.MODELS.values():
        assert spec.url.startswith("https://github.com/") and spec.url.endswith(spec.file_name)
        assert spec.licence
    assert {s.name for s in registry.MODELS.values() if s.noncommercial} == {"codeformer", "parsenet"}
    assert "codeformer" not in registry.default_selection(licence_accepted=False)
    assert "codeformer" in registry.default_selection(licence_accepted=True)


@pytest.fixture
def cli():
    """``main`` as the console script runs it; logging put back afterwards (main binds it to
    the captured stderr, which pytest closes after the test)."""
    from worker.commands.cli import main

    yield main
    structlog.reset_defaults()


def test_models_list_command(monkeypatch, tmp_path, capsys, cli):
    monkeypatch.setenv("WORKER_MODELS_DIR", str(tmp_path))
    (tmp_path / "big-lama.pt").write_bytes(b"wrong bytes")
    assert cli(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "codeformer" in out and "missing" in out and "S-Lab" in out
    assert cli(["models", "list", "--verify", "--json"]) == 1  # big-lama fails its md5
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["big-lama"]["verified"] is False and "md5" in rows["big-lama"]["problem"]
    assert rows["codeformer"]["present"] is False


def test_models_fetch_command_reports_failures_in_one_line(monkeypatch, tmp_path, capsys, server, cli):
    monkeypatch.setenv("WORKER_MODELS_DIR", str(tmp_path))
    spec = _tiny(monkeypatch, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    monkeypatch.setitem(registry.MODELS, "tiny", dataclasses.replace(spec, url=f"{server}/error"))
    assert cli(["models", "fetch", "tiny", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "HTTP 503" in captured.out
    assert "1 of 1 downloads failed" in captured.err
    assert cli(["models", "fetch", "nonsense"]) == 2
    assert "no model named 'nonsense'" in capsys.readouterr().err


def test_ready_loads_strictly_and_names_the_file_on_a_mismatch():
    import torch

    model = registry.ready(torch.nn.Linear(3, 2), torch.nn.Linear(3, 2).state_dict(), "tiny.pth", "cpu")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with pytest.raises(
        ModelFileError, match=r"tiny\.pth does not match the Linear architecture \(size mismatch"
    ) as exc:
        registry.ready(torch.nn.Linear(3, 2), torch.nn.Linear(4, 2).state_dict(), "tiny.pth", "cpu")
    assert "\n" not in exc.value.message
