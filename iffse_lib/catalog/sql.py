"""The catalogue's SQL: every statement it runs, by name, read from ``catalog.sql`` beside this
module. ``SQL.photo_path`` is the statement written under ``-- name: photo_path``; a script of
several statements is split at its semicolons by :func:`script`."""

from __future__ import annotations

import functools
import re
from pathlib import Path

_NAME = re.compile(r"^-- name: (\w+)[ \t]*$", re.M)


@functools.cache
def statements() -> dict[str, str]:
    """``{name: statement}`` of ``catalog.sql``; full-line comments left out."""
    parts = _NAME.split(Path(__file__).with_name("catalog.sql").read_text())
    out: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in out:
            raise RuntimeError(f"catalog.sql names two statements {name!r}")
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        out[name] = "\n".join(lines).strip().rstrip(";")
    return out


def script(name: str) -> list[str]:
    """The statements of the script ``name``, in order."""
    return [s.strip() for s in statements()[name].split(";") if s.strip()]


class _Statements:
    def __getattr__(self, name: str) -> str:
        try:
            return statements()[name]
        except KeyError:
            raise AttributeError(f"catalog.sql has no statement {name!r}") from None


#: ``SQL.name``: the statement of that name.
SQL = _Statements()
