"""How long Run All takes in each notebook under JupyterLab, as `make lab` runs them.

    python tools/lab_times.py [--data DIR] [--lfw-dir DIR] [--only 01 02 ...]

JupyterLab starts over a temporary copy of the notebooks, with ``IFFSE_DATA`` a temporary copy of
the catalogue (default: the project's data/, which `make demo` fills: notebooks 01 and 03 write to
it) and ``IFFSE_LFW_DIR`` the LFW folder `make demo` uses, as `make lab` sets them. Each notebook
is opened in headless Chromium (tools/lab_browser.py) and Run All is timed from the click to the
last cell's execution count, in a fresh kernel (its start included), which is shut down after:
notebooks 01 and 03 hold the catalogue's writer lock while their kernel lives, so 03 run after 01
waits for 01's kernel. Prints one line per notebook and the load average, since other work on the
same cores slows every notebook.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import lab_browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_LFW = ROOT.parent / "shared" / "data" / "lfw"


def shut_down_kernels(lab) -> None:
    """End every kernel of the running JupyterLab (through its REST API)."""
    with urllib.request.urlopen(f"{lab.url}/api/sessions?token={lab.token}") as reply:
        sessions = json.load(reply)
    for session in sessions:
        url = f"{lab.url}/api/sessions/{session['id']}?token={lab.token}"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE")).read()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data", help="the catalogue (default: %(default)s)")
    ap.add_argument("--lfw-dir", type=Path, default=Path(os.environ.get("IFFSE_LFW_DIR", DEFAULT_LFW)),
                    help="LFW for notebooks 01 and 06 (default: $IFFSE_LFW_DIR, else %(default)s)")
    ap.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers (default: every notebook)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per notebook")
    args = ap.parse_args(argv)
    if not (args.data / "catalog.sqlite").exists():
        print(f"{args.data} holds no catalogue: run `make demo` (or pass --data)", file=sys.stderr)
        return 1
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb") if not args.only or p.name[:2] in args.only)
    print(f"{os.cpu_count()} cores; load average before: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="iffse-times-") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(args.data, data, ignore=shutil.ignore_patterns("*-wal", "*-shm", "figures", "evaluation"))
        work = Path(tmp) / "notebooks"
        work.mkdir()
        for name in names:
            shutil.copy(NOTEBOOKS / f"{name}.ipynb", work)
        env = {"IFFSE_DATA": str(data), "IFFSE_LFW_DIR": str(args.lfw_dir.resolve())}
        try:
            with lab_browser.jupyter_lab(work, Path(tmp) / "lab", env=env) as lab, \
                    lab_browser.chromium() as (page, errors):
                for name in names:
                    lab_browser.open_notebook(page, lab, f"{name}.ipynb")
                    t = time.perf_counter()
                    lab_browser.run_all_cells(page, timeout=args.timeout)
                    print(f"{name:<24} {time.perf_counter() - t:7.1f} s  "
                          f"(load average {os.getloadavg()[0]:.1f})", flush=True)
                    page.goto("about:blank")
                    shut_down_kernels(lab)
                if errors:
                    raise RuntimeError(f"JavaScript errors in the page: {errors}")
        except (lab_browser.BrowserMissing, RuntimeError, TimeoutError) as exc:
            print(f"lab_times: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
