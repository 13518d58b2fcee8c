"""SQL loading: where ``sql/`` is, and the named statements of ``sql/queries.sql``."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """``sql/`` beside the package (a source checkout) or installed inside it (a wheel)."""
    beside = Path(__file__).resolve().parents[2] / "sql"
    if beside.is_dir():
        return beside
    return Path(str(resources.files("worker") / "sql"))


@cache
def queries() -> dict[str, str]:
    """Every ``-- name: x`` block of ``sql/queries.sql``, by name."""
    text = (sql_dir() / "queries.sql").read_text()
    parts = _NAME.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in found:
            raise ValueError(f"sql/queries.sql defines {name!r} twice")
        found[name] = body.strip()
    return found


def q(name: str) -> str:
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries.sql") from None
