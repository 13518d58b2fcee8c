"""The wheel ships every package and the SQL; the Makefile and CI run what the README says."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_package_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "worker").rglob("__init__.py")} | {
        "worker.sql"
    }
    assert found == listed
    assert config["package-dir"]["worker.sql"] == "sql"


def test_every_sql_file_the_migration_runs_exists() -> None:
    from worker.queue import MIGRATION_FILES, sql_dir

    assert sql_dir() == ROOT / "sql"
    for name in MIGRATION_FILES:
        assert (ROOT / "sql" / name).is_file()


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
