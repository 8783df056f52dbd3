"""Time ``iffse index`` as a user runs it: with no options (every core) against ``--jobs 1``.

    python benchmarks/index_cli.py [--photos ../shared/data/faces] [--repeat 3] [--jobs 1,0,cpu1]

The photos are collected once; each run indexes a fresh copy of that catalogue in a new
``iffse`` process, so the times include everything a user waits for: Python and torch starting,
the models loading, the worker processes starting, detection to embedding, and the index build.
The settings alternate (1, all, 1, all …) so that both see the same conditions, and the load
average is printed before and after each run. ``--jobs 0`` means no option (the default);
``cpu1`` means no option in a process allowed one CPU (as ``taskset -c 0`` would): iffse then
runs one process, and torch and the photo decoding get no second core either, where
``--jobs 1`` still decodes photos and runs torch's two threads on the machine's second core.

It prints each run's seconds, the median per setting and the speed-up of each over the first,
and checks that every setting gives the first one's catalogue: the same photos, boxes and
faces, and vectors within 1e-5.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from iffse_lib.catalog import Catalog  # noqa: E402
from iffse_lib.runners import available_cores  # noqa: E402


def iffse(*args: str, cpus: set[int] | None = None) -> None:
    """Run ``iffse ARGS`` in a new process, allowed only ``cpus`` when given."""
    subprocess.run([sys.executable, "-m", "iffse_lib.cli", "-q", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL,
                   preexec_fn=None if cpus is None else (lambda: os.sched_setaffinity(0, cpus)))


def label(setting: str) -> str:
    return {"0": "no option", "cpu1": "one CPU"}.get(setting, f"--jobs {setting}")


def parse_settings(text: str) -> list[str]:
    """``1,0,cpu1`` -> ["1", "0", "cpu1"] (argparse rejects anything else)."""
    settings = text.split(",")
    if not all(s == "cpu1" or (s.isdigit()) for s in settings):
        raise argparse.ArgumentTypeError(f"{text!r}: give job counts (0: no option) or cpu1, comma-separated")
    return settings


def contents(data: Path) -> tuple[list, dict]:
    """The faces (photo, face index, box) and each face's vector, keyed by photo and face index."""
    with Catalog(data, readonly=True) as cat:
        frame = cat.faces()
        face_ids, vectors = cat.vectors(cat.model_tags()[0])
    rows = frame.set_index("face_id").loc[face_ids]
    keys = list(zip(rows["photo_id"], rows["idx"]))
    faces = sorted(zip(frame["photo_id"], frame["idx"], frame["left"], frame["top"], frame["right"], frame["bottom"]))
    return faces, {k: np.asarray(v) for k, v in zip(keys, vectors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--repeat", type=int, default=3, help="runs per setting (default: %(default)s)")
    ap.add_argument("--jobs", type=parse_settings, default="1,0",
                    help="settings, comma-separated; 0: no option; cpu1: no option on one CPU (default: %(default)s)")
    args = ap.parse_args()
    settings = args.jobs
    with tempfile.TemporaryDirectory(prefix="iffse-bench-") as tmp:
        base = Path(tmp) / "collected"
        iffse("--data", str(base), "collect", "folder", str(args.photos))
        with Catalog(base, readonly=True) as cat:
            n_photos = cat.counts()["photos"]
        print(f"{args.photos} ({n_photos} photos); {available_cores()} of {os.cpu_count()} CPUs available")
        seconds: dict[str, list[float]] = {j: [] for j in settings}
        results: dict[str, tuple] = {}
        first_cpu = min(os.sched_getaffinity(0))
        for run in range(args.repeat):
            for jobs in settings:
                data = Path(tmp) / f"run-{jobs}"
                shutil.rmtree(data, ignore_errors=True)
                shutil.copytree(base, data)
                load = os.getloadavg()[0]
                t = time.perf_counter()
                iffse("--data", str(data), "index", *(["--jobs", jobs] if jobs not in ("0", "cpu1") else []),
                      cpus={first_cpu} if jobs == "cpu1" else None)
                dt = time.perf_counter() - t
                seconds[jobs].append(dt)
                print(f"run {run + 1} {label(jobs):>10}: {dt:6.1f} s  {n_photos / dt:5.2f} photos/s  "
                      f"load {load:.1f}->{os.getloadavg()[0]:.1f}", flush=True)
                if jobs not in results:
                    results[jobs] = contents(data)
        first = settings[0]
        base_median = statistics.median(seconds[first])
        for jobs in settings:
            median = statistics.median(seconds[jobs])
            faces, vectors = results[jobs]
            same = faces == results[first][0] and vectors.keys() == results[first][1].keys()
            diff = max((float(np.abs(vectors[k] - results[first][1][k]).max()) for k in vectors), default=0.0) \
                if same else float("nan")
            print(f"{label(jobs):>10}: median {median:6.1f} s, {n_photos / median:5.2f} photos/s, "
                  f"{base_median / median:4.2f}x; same faces as the first: {same}, largest vector difference {diff:.1e}")


if __name__ == "__main__":
    main()
