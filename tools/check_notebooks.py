"""Fail when a notebook under notebooks/ is committed with outputs, or is out of step with its
paired py:percent file.

    python tools/check_notebooks.py [NOTEBOOK ...]      (default: notebooks/*.ipynb)

Strip outputs with `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb`, then
`jupytext --sync notebooks/*.ipynb`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def problems(path: Path) -> list[str]:
    import jupytext
    import nbformat

    nb = nbformat.read(path, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            found.append(f"cell {i} has {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            found.append(f"cell {i} has an execution count ({cell.execution_count})")
    if not any("parameters" in c.metadata.get("tags", []) for c in nb.cells):
        found.append("no cell is tagged 'parameters'")
    paired = path.with_suffix(".py")
    if not paired.exists():
        found.append(f"{paired.name} (its py:percent pair) is missing")
    else:
        py = jupytext.read(paired)
        src_nb = [(c.cell_type, c.source.strip()) for c in nb.cells]
        src_py = [(c.cell_type, c.source.strip()) for c in py.cells]
        if src_nb != src_py:
            found.append(f"differs from {paired.name}: run `jupytext --sync {path.relative_to(ROOT)}`")
    return found


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    bad = 0
    for path in paths:
        for p in problems(path):
            print(f"{path}: {p}", file=sys.stderr)
            bad += 1
    if bad:
        print("Clear outputs with `jupyter nbconvert --clear-output --inplace notebooks/*.ipynb` "
              "and pair with `jupytext --sync notebooks/*.ipynb`.", file=sys.stderr)
        return 1
    print(f"{len(paths)} notebooks: no outputs, paired with their .py files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
