"""The wheel ships every package and the SQL; the Makefile and CI run what the README says."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_python_package_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "worker").rglob("__init__.py")} | {
        "worker.sql",
        "worker.sql.migrations",
    }
    assert found == listed
    assert config["package-dir"]["worker.sql"] == "sql"


def test_the_wheel_ships_every_migration_and_the_named_queries() -> None:
    from fnmatch import fnmatch

    from worker.queue.migrations import MIN_SCHEMA_VERSION, migrations
    from worker.queue.sql import sql_dir

    assert sql_dir() == ROOT / "sql"
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = [*data["worker.sql"], *(f"migrations/{pattern}" for pattern in data["worker.sql.migrations"])]
    files = sorted(p.relative_to(ROOT / "sql").as_posix() for p in (ROOT / "sql").rglob("*") if p.is_file())
    assert "queries.sql" in files and "migrations/0001_app_tables.sql" in files
    assert [f for f in files if not any(fnmatch(f, pattern) for pattern in shipped)] == []
    found = migrations()
    assert [m.name for m in found] == sorted(
        f.removeprefix("migrations/") for f in files if f.startswith("migrations/")
    )
    assert [m.version for m in found] == list(range(1, len(found) + 1))  # numbered 1, 2, 3… with no gap
    assert found[-1].version >= MIN_SCHEMA_VERSION


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_environment_variable_the_settings_read_is_documented_in_the_readme() -> None:
    import re

    config = (ROOT / "worker" / "service" / "config.py").read_text()
    names = set(re.findall(r'"((?:WORKER|SUPABASE|DATABASE|STORAGE)_[A-Z_]+)"', config))
    assert "DATABASE_URL" in names and "WORKER_DEVICE" in names
    readme = (ROOT / "README.md").read_text()
    assert sorted(n for n in names if f"`{n}`" not in readme) == []


def test_every_module_is_on_the_code_map() -> None:
    """docs/architecture.md names every module (directly, or as `dir/*.py`, or beside its folder's files)."""
    code_map = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for path in sorted((ROOT / "worker").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if path.name in {"__init__.py", "__main__.py"}:
            continue
        folder_glob = f"`{path.parent.relative_to(ROOT).as_posix()}/*.py`"
        if (
            f"`{rel}`" in code_map
            or folder_glob in code_map
            or f"{path.name}`" in code_map
            or f"{path.name}," in code_map
        ):
            continue
        missing.append(rel)
    assert missing == []


# APIs the worker calls that older releases lack: (the call, its distribution, the first release with it).
NEWER_APIS = (
    ("np.bitwise_count", "numpy", "2.0"),
    ("cv2.IMREAD_COLOR_RGB", "opencv-python-headless", "4.11"),  # not in 4.10.0.84's cv2
)


def test_dependency_floors_allow_no_release_without_the_apis_the_worker_calls() -> None:
    from packaging.requirements import Requirement
    from packaging.version import Version

    source = "\n".join(p.read_text() for p in (ROOT / "worker").rglob("*.py"))
    declared = {
        Requirement(r).name: Requirement(r)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    for api, dist, first in NEWER_APIS:
        assert api in source, f"{api} is no longer used: drop it from NEWER_APIS"
        floors = [Version(s.version) for s in declared[dist].specifier if s.operator in (">=", "==", "~=")]
        assert floors and max(floors) >= Version(first), f"{api} needs {dist}>={first}, not {declared[dist]}"
