"""Model weights: the one table of every file the worker can use, and how each is fetched and checked.

Every neural network weight file goes through here; nothing else downloads or
opens one. The rules:

* **Download** (``apelier-worker models fetch``) streams to a temporary file in the
  models folder with a progress bar, checks the byte count, verifies the published
  hash (sha256, or md5 where that is all the publisher gives), then renames the file
  into place atomically. A failed or mismatching download is deleted and reported;
  a half-written file never carries the real name.
* **Lock file.** Where no hash is published, the sha256 of the first download (or
  of the first file found in place) is recorded in ``models.lock.json`` in the
  models folder, and every later load and download is verified against it. To
  accept a new upstream file on purpose, delete its entry.
* **Loading** uses ``torch.load(weights_only=True)``: a checkpoint can hold tensors
  and plain containers, never code.
* **Licences** are part of the table. Files marked ``noncommercial`` (CodeFormer,
  ParseNet) load only when the operator has acknowledged that
  (``WORKER_CODEFORMER_LICENSE_ACCEPTED=true``; see ``docs/models.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.errors import ModelFileError, first_line
from worker.service import logs

LOCK_FILE = "models.lock.json"
_CHUNK = 1 << 20

log = logs.get("models")


@dataclass(frozen=True)
class ModelSpec:
    """One weight file: where it comes from, how to check it, what its licence allows."""

    name: str
    file_name: str
    url: str
    licence: str
    approx_mb: float  # as published; for display (the hash, not the size, decides)
    used_for: str
    noncommercial: bool = False
    sha256: str | None = None  # published hash, when the publisher gives one
    md5: str | None = None
    homepage: str = ""


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="retinaface-r50",
            file_name="detection_Resnet50_Final.pth",
            url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
            licence="MIT (biubug6/Pytorch_Retinaface, via facexlib); trained on WIDER FACE",
            approx_mb=109.5,
            used_for="face detection: boxes + 5 landmarks (phase 0)",
            homepage="https://github.com/xinntao/facexlib",
        ),
        ModelSpec(
            name="parsenet",
            file_name="parsing_parsenet.pth",
            url="https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth",
            licence="CC BY-NC-SA 4.0 (PSFR-GAN ParseNet, Chen et al.) — non-commercial",
            approx_mb=85.3,
            used_for="face parsing mask for the CodeFormer paste-back (phase 2)",
            noncommercial=True,
            homepage="https://github.com/chaofengc/PSFRGAN",
        ),
        ModelSpec(
            name="codeformer",
            file_name="codeformer.pth",
            url="https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",
            licence="S-Lab License 1.0 — non-commercial",
            approx_mb=376.6,
            used_for="face restoration (phase 2)",
            noncommercial=True,
            homepage="https://github.com/sczhou/CodeFormer",
        ),
        ModelSpec(
            name="big-lama",
            file_name="big-lama.pt",
            url="https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt",
            licence="Apache-2.0 (LaMa, Suvorov et al.; TorchScript export by Sanster)",
            approx_mb=205.7,
            used_for="inpainting power lines and EXIT signs (phase 3)",
            md5="e3aa4aaa15225a33ec84f9f4bc47e500",
            homepage="https://github.com/advimman/lama",
        ),
    )
}

# Weights that come inside an installed wheel instead of a download: model name → licence.
IN_WHEELS: dict[str, str] = {
    "mtcnn": "MIT (MTCNN weights in the facenet-pytorch wheel, converted from Zhang et al.'s release)",
}


def spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelFileError(f"no model named {name!r}; known: {', '.join(MODELS)}") from None


def path_for(name: str, models_dir: Path) -> Path:
    return Path(models_dir) / spec(name).file_name


def is_present(name: str, models_dir: Path) -> bool:
    return path_for(name, models_dir).is_file()


# --------------------------------------------------------------------------- hashes and the lock


@dataclass(frozen=True)
class Digests:
    sha256: str
    md5: str
    size: int


def digests(path: Path) -> Digests:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return Digests(sha.hexdigest(), md5.hexdigest(), size)


def read_lock(models_dir: Path) -> dict[str, dict[str, Any]]:
    """``{file name: {model, sha256, bytes, url, recorded}}`` from the lock file ({} if none)."""
    path = Path(models_dir) / LOCK_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if not isinstance(files, dict):
            raise TypeError("files")
        return files
    except (ValueError, KeyError, TypeError):
        raise ModelFileError(f"{path} is not a valid lock file; fix it or delete it to record fresh hashes") from None


def _write_lock(models_dir: Path, files: Mapping[str, Mapping[str, Any]]) -> None:
    path = Path(models_dir) / LOCK_FILE
    text = json.dumps({"version": 1, "files": dict(sorted(files.items()))}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{LOCK_FILE}.", dir=models_dir)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _record(s: ModelSpec, models_dir: Path, d: Digests) -> None:
    files = read_lock(models_dir)
    files[s.file_name] = {
        "model": s.name,
        "sha256": d.sha256,
        "bytes": d.size,
        "url": s.url,
        "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_lock(models_dir, files)


def check(s: ModelSpec, d: Digests, models_dir: Path) -> str | None:
    """Why a file with digests ``d`` is not ``s`` (one line), or None when it matches."""
    if s.sha256 and d.sha256 != s.sha256:
        return f"sha256 {d.sha256[:12]}… differs from the published {s.sha256[:12]}…"
    if s.md5 and d.md5 != s.md5:
        return f"md5 {d.md5} differs from the published {s.md5}"
    locked = read_lock(models_dir).get(s.file_name)
    if locked and locked.get("sha256") != d.sha256:
        return (
            f"sha256 {d.sha256[:12]}… differs from {str(locked.get('sha256'))[:12]}… recorded in "
            f"{LOCK_FILE} on first download (delete that entry to accept a new file on purpose)"
        )
    return None


def verify(name: str, models_dir: Path) -> Path:
    """The path of ``name``'s file after checking its hash; raises :class:`ModelFileError`.

    A file with no published hash and no lock entry yet is accepted and its sha256
    recorded, so every later load is held to it.
    """
    s = spec(name)
    path = Path(models_dir) / s.file_name
    if not path.is_file():
        raise ModelFileError(f"{s.name} weights not found at {path}; run `apelier-worker models fetch {s.name}`")
    d = digests(path)
    problem = check(s, d, models_dir)
    if problem:
        raise ModelFileError(
            f"{path} failed its check: {problem}; delete it and run `apelier-worker models fetch {s.name}`"
        )
    if s.file_name not in read_lock(models_dir):
        _record(s, models_dir, d)
        log.info("model_hash_recorded", model=s.name, sha256=d.sha256, lock=str(Path(models_dir) / LOCK_FILE))
    return path


def torch_load(path: Path, advice: str = "fetch it again from its official URL") -> Any:
    """Open a checkpoint with ``weights_only=True`` (tensors and containers only, no code)."""
    import torch  # noqa: PLC0415 - torch (1.4 s), only to open a checkpoint: `models list` and the CLI stay light

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling raises anything from UnpicklingError to struct.error on a foreign file
        first = first_line(exc, 160)
        raise ModelFileError(f"{path} is not a plain-weights checkpoint ({first}); {advice}") from None


def ready(
    model: Any, state_dict: Mapping[str, Any] | None, weights: str, device: str, advice: str = "fetch it again"
) -> Any:
    """``model`` with ``state_dict`` loaded strictly (when given), in eval mode, frozen, on ``device``.

    ``weights`` names the file in the error a mismatch raises (``"codeformer.pth"``, ...), ``advice``
    says what to do about it.
    """
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            # torch's message: a header line, then one line per problem ("Missing key(s) …", "size mismatch …").
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            first = (lines[1] if len(lines) > 1 else first_line(exc))[:200]
            raise ModelFileError(
                f"{weights} does not match the {type(model).__name__} architecture ({first}); {advice}"
            ) from None
    return model.eval().requires_grad_(False).to(device)


# --------------------------------------------------------------------------- download


def fetch(
    name: str,
    models_dir: Path,
    *,
    progress: bool = True,
    timeout_s: float = 60.0,
    url: str | None = None,
    force: bool = False,
) -> Path:
    """Download ``name`` into ``models_dir`` (skipped when a verified copy is there), atomically.

    ``url`` overrides the table's URL (a mirror; tests use a local server).
    Raises :class:`ModelFileError` with one line saying what failed and what to do.
    """
    import httpx  # noqa: PLC0415 - only `models fetch` downloads

    s = spec(name)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    dest = models_dir / s.file_name
    if dest.is_file() and not force:
        return verify(name, models_dir)
    source = url or s.url
    fd, tmp_name = tempfile.mkstemp(prefix=f".{s.file_name}.", suffix=".part", dir=models_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            with httpx.stream("GET", source, follow_redirects=True, timeout=timeout_s) as response:
                if response.status_code != 200:
                    raise ModelFileError(
                        f"downloading {s.name} failed: {source} answered HTTP {response.status_code}; "
                        f"try again later, or put the file at {dest} by hand"
                    )
                announced = response.headers.get("content-length")
                expected = int(announced) if announced and announced.isdigit() else None
                d = _stream_to(response.iter_bytes(_CHUNK), tmp, expected, s.file_name, progress)
        except httpx.HTTPError as exc:
            raise ModelFileError(
                f"downloading {s.name} from {source} failed ({type(exc).__name__}: {first_line(exc, 200)}); "
                "check the connection and run the fetch again"
            ) from None
        if expected is not None and d.size != expected:
            raise ModelFileError(
                f"downloading {s.name} was cut short ({d.size} of {expected} bytes); run the fetch again"
            )
        problem = check(s, d, models_dir)
        if problem:
            raise ModelFileError(
                f"downloaded {s.name} does not match ({problem}); deleted — run the fetch again, "
                "and report it if it persists"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    if s.file_name not in read_lock(models_dir):
        _record(s, models_dir, d)
    log.info("model_fetched", model=s.name, path=str(dest), bytes=d.size, sha256=d.sha256)
    return dest


def _stream_to(chunks: Iterable[bytes], path: Path, expected: int | None, label: str, progress: bool) -> Digests:
    from worker.service import progress as progress_bar  # noqa: PLC0415 - only `models fetch` shows a bar

    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    bar = progress_bar.bar(
        total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress, leave=False,
    )  # fmt: skip
    with bar, path.open("wb") as f:
        for chunk in chunks:
            f.write(chunk)
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
            bar.update(len(chunk))
        f.flush()
        os.fsync(f.fileno())
    return Digests(sha.hexdigest(), md5.hexdigest(), size)


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class Status:
    spec: ModelSpec
    path: Path
    present: bool
    size: int | None
    verified: bool | None  # None: not checked
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "file": str(self.path),
            "present": self.present,
            "bytes": self.size,
            "verified": self.verified,
            "problem": self.problem,
            "licence": self.spec.licence,
            "noncommercial": self.spec.noncommercial,
            "approx_mb": self.spec.approx_mb,
            "url": self.spec.url,
        }


def status(models_dir: Path, *, verify_hashes: bool = False) -> list[Status]:
    """Every model in the table: present or missing, and (``verify_hashes``) whether it checks out."""
    out = []
    for s in MODELS.values():
        path = Path(models_dir) / s.file_name
        if not path.is_file():
            out.append(Status(s, path, False, None, None))
            continue
        size = path.stat().st_size
        if not verify_hashes:
            out.append(Status(s, path, True, size, None))
            continue
        problem = check(s, digests(path), models_dir)
        out.append(Status(s, path, True, size, problem is None, problem))
    return out


def default_selection(licence_accepted: bool) -> list[str]:
    """What ``models fetch`` with no names downloads: non-commercial files only once acknowledged."""
    return [s.name for s in MODELS.values() if licence_accepted or not s.noncommercial]
