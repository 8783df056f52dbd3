"""Index the LFW subset end to end and print where the time goes.

    python benchmarks/pipeline.py [--lfw-dir DIR] [--embedder dlib|torch] [--limit N] [--data DIR]

Prints photos/s overall, seconds and median milliseconds per stage (load, detect, landmarks,
align, embed per face, index build) and peak memory, for a fresh catalogue in a temporary folder
(or --data). The machine's load average is printed too: other work on the CPUs skews the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from iffse_lib import pipeline
from iffse_lib.catalog import Catalog
from iffse_lib.embed import get_embedder
from iffse_lib.sources.lfw import LFWSource

ROOT = Path(__file__).resolve().parents[1]


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw-dir", type=Path, default=os.environ.get("IFFSE_LFW_DIR") or ROOT.parent / "shared" / "data" / "lfw")
    ap.add_argument("--embedder", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--data", type=Path, default=None, help="catalogue folder (default: a temporary one)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None,
                    help="run the stages on a local Dask cluster of N worker processes (one thread each)")
    ap.add_argument("--scheduler", default=None, help="run the stages on this Dask cluster (tcp://HOST:PORT)")
    args = ap.parse_args()

    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.mkdtemp(prefix="iffse-bench-")
        data = Path(tmp) / "data"
    embedder = get_embedder(args.embedder)
    try:
        with Catalog(data) as cat:
            source = LFWSource(args.lfw_dir, limit=args.limit)
            t0 = time.perf_counter()
            collected = pipeline.collect(cat, source, progress=False)
            cpu0 = _cpu_seconds()
            indexed = pipeline.index_photos(cat, embedder, batch_size=args.batch, progress=False,
                                            scheduler=args.scheduler, workers=args.workers)
            client_cpu = _cpu_seconds() - cpu0
            _, built = pipeline.build_index(cat, embedder.model_tag, progress=False)
            total = time.perf_counter() - t0
            counts = cat.counts()
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"LFW subset: {len(source)} photos from {args.lfw_dir}; embedder {type(embedder).__name__} "
              f"({embedder.model_tag}); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"faces {counts['faces']}, photos without a face {counts['photos_without_faces']}")
        print(f"{'stage':<12}{'seconds':>10}{'median ms':>12}")
        print(f"{'collect':<12}{collected['seconds']:>10.2f}{'':>12}")
        for stage, v in indexed["stages"].items():
            unit = " /face" if stage == "embed" else ""
            med = f"{v['median_ms']:>12.2f}" if v["median_ms"] is not None else f"{'':>12}"
            print(f"{stage:<12}{v['seconds']:>10.2f}{med}{unit}")
        print(f"{'index build':<12}{built['seconds']:>10.2f}")
        if "workers" in indexed:  # on Dask: stage seconds add up over the workers
            print(f"Dask workers: {indexed['workers']} (one thread each); load average now "
                  f"{os.getloadavg()[0]:.1f}; this process (client, scheduler, nannies, commits) used "
                  f"{client_cpu:.1f} CPU s in {indexed['seconds']:.1f} s")
        print(f"detect+embed: {indexed['photos_per_s']:.2f} photos/s; end to end: {len(source) / total:.1f} photos/s "
              f"({total:.1f} s); peak RSS {peak_mb:.0f} MB")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
