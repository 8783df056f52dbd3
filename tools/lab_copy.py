"""The working copy of the notebooks that `make lab` opens: lab/ (ignored by git).

    python tools/lab_copy.py [SRC [DEST]]        (default: notebooks lab)

JupyterLab autosaves outputs into the notebooks it has open, and jupytext rewrites their .py
twins; working on a copy keeps both out of the committed notebooks/ (which `make check-notebooks`
keeps without outputs). A file missing from the copy is copied. A file of notebooks/ newer than
its copy (a pull, a checkout) replaces it; the copy, with the outputs you saved, is kept beside it
as NAME.YYYYmmdd-HHMMSS.bak. Files only in the copy are left alone.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".ipynb", ".py", ".toml"}


def sync(src: Path, dest: Path) -> list[str]:
    """Bring ``dest`` up to date with ``src``; returns what was done, one line per file."""
    done = []
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if not f.is_file() or f.suffix not in SUFFIXES:
            continue
        copy = dest / f.name
        if not copy.exists():
            shutil.copy2(f, copy)
            done.append(f"{copy}: copied from {f}")
        elif f.stat().st_mtime > copy.stat().st_mtime and f.read_bytes() != copy.read_bytes():
            kept = copy.with_name(f"{copy.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
            copy.replace(kept)
            shutil.copy2(f, copy)
            done.append(f"{copy}: replaced by the newer {f} (your copy is {kept.name})")
    return done


def main(argv: list[str]) -> int:
    src = Path(argv[0]) if argv else ROOT / "notebooks"
    dest = Path(argv[1]) if len(argv) > 1 else ROOT / "lab"
    for line in sync(src, dest):
        print(line)
    print(f"JupyterLab opens {dest}: a working copy of {src} (outputs saved there are never committed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
