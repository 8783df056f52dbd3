"""The README's Layout section matches the tree: every library module is listed where it lives, and
every file or folder listed exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1].strip("\n").splitlines()


def listed_paths() -> set[str]:
    """Paths named in the Layout block, from its indentation: ``a/`` then ``  b.py`` is ``a/b.py``;
    ``c.py, d.py`` names both."""
    paths: set[str] = set()
    parents: list[tuple[int, str]] = []
    for line in _layout_block():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        names = re.match(r"\s*(\S+(?:, \S+)*)(?:\s{2,}|$)", line)
        if names is None or not re.search(r"[./]", names[1]):  # a description's continuation line
            continue
        while parents and parents[-1][0] >= indent:
            parents.pop()
        prefix = "".join(p for _, p in parents)
        for name in names[1].split(", "):
            paths.add(prefix + name)
        if names[1].endswith("/"):
            parents.append((indent, names[1]))
    return paths


def test_every_library_module_is_listed_where_it_lives():
    listed = listed_paths()
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "iffse_lib").rglob("*.py") if p.name != "__init__.py"}
    missing = sorted(m for m in modules if m not in listed)
    assert not missing, f"README's Layout lacks {missing}"


def test_every_listed_path_exists():
    gone = sorted(p for p in listed_paths() if not (ROOT / p.rstrip("/")).exists()
                  and p.rstrip("/") not in ("data", "models"))  # made by `make demo` / `make models`
    assert not gone, f"README's Layout names {gone}, which are not in the tree"
