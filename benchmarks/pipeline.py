"""Index photos end to end at 1, 2 … N processes and print where the time goes.

    python benchmarks/pipeline.py [--lfw-dir DIR] [--embedder dlib|torch] [--limit N] [--data DIR]
    python benchmarks/pipeline.py --photos ../shared/data/faces             # any folder of photos
    python benchmarks/pipeline.py --photos /tmp/feed --jobs 1,2             # chosen process counts
    python benchmarks/pipeline.py --detector cnn --upsample 0          # dlib's CNN detector in torch
    python benchmarks/pipeline.py --detector cnn --upsample 0 --device cuda [--precision bfloat16]

The photos (the LFW subset, or every photo under ``--photos``) are collected once; then each
process count indexes a fresh copy of that catalogue, one after the other in the same run, so the
figures share the machine's conditions. For each it prints photos/s (detect to embed, and end to
end with the index build), the scaling over one process, the mean and median milliseconds per
photo of each stage (load, detect, landmarks, align; embed per face), and the peak memory of the
whole process tree (this process and its workers, sampled every 50 ms), and the CPU time the
stages took per photo (less sensitive to other work on the machine than wall time). ``--jobs`` defaults to
every count from 1 to the cores this process may use (powers of two on larger machines). The
load average is printed before and after each run: other work on the CPUs skews the figures.

With ``--device cuda`` the CNN detector, the alignment (grid_sample) and the embedder run on the
GPU; decoding and the 68 landmarks stay on the CPU (``--loaders`` threads decode). Detection is
timed per batch, so its median is the batch's time divided by its photos. ``--warmup N`` first
runs N photos through the same stages, untimed, so that model loading and cuDNN's autotuning
are not counted. ``--workers``/``--scheduler`` run one Dask measurement instead.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

from iffse_lib import catalog_index, config, pipeline, stages
from iffse_lib.catalog import Catalog
from iffse_lib.embedders import get_embedder
from iffse_lib.faces import FaceDetector
from iffse_lib.runners import available_cores
from iffse_lib.sources.folder import FolderSource
from iffse_lib.sources.lfw import LFWSource

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("load", "detect", "landmarks", "align", "embed")


class PeakMemory:
    """The largest resident memory of this process and all its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.05):
        import psutil

        self._me = psutil.Process()
        self._every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = self._me.memory_info().rss
        for child in self._me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self._every)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def job_counts(text: str | None) -> list[int]:
    if text:
        return [int(n) for n in text.split(",")]
    cores = available_cores()
    counts = list(range(1, cores + 1)) if cores <= 4 else sorted({1, 2, 4, 8, 16, 32, cores} & set(range(1, cores + 1)))
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw-dir", type=Path, default=os.environ.get("IFFSE_LFW_DIR") or ROOT.parent / "shared" / "data" / "lfw")
    ap.add_argument("--photos", type=Path, default=None, help="index every photo under this folder instead of LFW")
    ap.add_argument("--jobs", default=None, help="process counts to measure, e.g. 1,2 (default: 1 … the cores)")
    ap.add_argument("--embedder", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--data", type=Path, default=None, help="folder for the catalogues (default: a temporary one)")
    ap.add_argument("--batch", type=int, default=config.DEFAULT_BATCH, help="photos per batch")
    ap.add_argument("--detector", choices=["hog", "cnn"], default="hog")
    ap.add_argument("--upsample", type=int, default=config.DEFAULT_UPSAMPLE)
    ap.add_argument("--device", default="cpu", help="cpu or cuda: the CNN detector, alignment and embedder")
    ap.add_argument("--precision", default="float32", help="torch embedder: float32, tf32, bfloat16, float16")
    ap.add_argument("--loaders", type=int, default=None, help="decoding threads with one process (default: pipeline's)")
    ap.add_argument("--warmup", type=int, default=0, help="photos run untimed first (GPU: 256 is plenty)")
    ap.add_argument("--workers", type=int, default=None,
                    help="run the stages on a local Dask cluster of N worker processes (one thread each)")
    ap.add_argument("--scheduler", default=None, help="run the stages on this Dask cluster (tcp://HOST:PORT)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="iffse-bench-") if args.data is None else None
    root = Path(tmp) if tmp else args.data
    kwargs = {}
    if args.device != "cpu" or args.precision != "float32":
        kwargs = {"device": args.device, "dtype": args.precision}
    embedder = get_embedder(args.embedder or ("torch" if kwargs else None), **kwargs)
    detector = FaceDetector(args.detector, args.upsample, args.device if args.detector == "cnn" else "cpu")
    on_dask = args.workers is not None or args.scheduler is not None
    counts = [None] if on_dask else job_counts(args.jobs)
    try:
        source = (FolderSource(args.photos) if args.photos else LFWSource(args.lfw_dir, limit=args.limit))
        template = root / "collected"
        with Catalog(template) as cat:
            collected = pipeline.collect(cat, source, progress=False)
            n_photos = cat.counts()["photos"]
        what = f"{args.photos} ({n_photos} photos)" if args.photos else f"LFW subset: {n_photos} photos from {args.lfw_dir}"
        print(f"{what}; detector {detector.tag} on {detector.device}; embedder {embedder!r} ({embedder.model_tag}); "
              f"batches of {args.batch} photos; {available_cores()} of {os.cpu_count()} CPUs available; "
              f"collect {collected['seconds']:.1f} s")
        rows = []
        for jobs in counts:
            data = root / f"jobs-{jobs or 'dask'}"
            shutil.rmtree(data, ignore_errors=True)
            shutil.copytree(template, data)
            with Catalog(data) as cat:
                if args.warmup:
                    items = [(pid, str(path), None) for pid, _, path in cat.photo_files()[:args.warmup]]
                    for start in range(0, len(items), args.batch):
                        stages.run_batch(items[start:start + args.batch], detector, embedder)
                load_before = os.getloadavg()[0]
                with PeakMemory() as memory:
                    t0 = time.perf_counter()
                    indexed = pipeline.index_photos(cat, embedder, batch_size=args.batch, progress=False,
                                                    scheduler=args.scheduler, workers=args.workers, jobs=jobs,
                                                    detector=detector, loaders=args.loaders)
                    _, built = catalog_index.build_index(cat, embedder.model_tag, progress=False)
                    total = time.perf_counter() - t0
                faces = cat.counts()
            shutil.rmtree(data, ignore_errors=True)
            rows.append((jobs, indexed, built, total, memory.peak, load_before, os.getloadavg()[0], faces))
        _report(rows, n_photos, args)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _report(rows, n_photos: int, args) -> None:
    base = rows[0][1]["photos_per_s"] if rows[0][0] == 1 else None
    print(f"faces {rows[0][7]['faces']}, photos without a face {rows[0][7]['photos_without_faces']}")
    head = (f"{'processes':>9}{'photos/s':>10}{'per proc':>10}{'scaling':>9}{'end-to-end':>12}{'peak MB':>9}"
            f"{'load':>11}{'CPU ms/photo':>14}")
    print(head)
    for jobs, indexed, built, total, peak, load0, load1, _ in rows:
        n = indexed.get("jobs", jobs)
        scale = f"{indexed['photos_per_s'] / base:>8.2f}x" if base else f"{'':>9}"
        print(f"{n:>9}{indexed['photos_per_s']:>10.2f}{indexed['photos_per_s'] / n:>10.2f}{scale}"
              f"{n_photos / total:>9.2f} /s{peak / 2**20:>9.0f}{load0:>5.1f}->{load1:<4.1f}"
              f"{1000 * indexed.get('cpu_seconds', 0) / max(indexed['photos'], 1):>14.0f}")
    print("ms per photo, mean (median); embed per face; summed over the processes:")
    print(f"{'processes':>9}" + "".join(f"{s:>18}" for s in STAGES) + f"{'index build s':>15}")
    for jobs, indexed, built, total, *_ in rows:
        stages = indexed["stages"]
        cells = []
        for stage in STAGES:
            v = stages.get(stage)
            if v is None:
                cells.append(f"{'-':>18}")
                continue
            per = indexed["vectors"] if stage == "embed" else indexed["photos"]
            mean = 1000 * v["seconds"] / max(per, 1)
            med = f"({v['median_ms']:.1f})" if v["median_ms"] is not None else ""
            cells.append(f"{mean:>10.1f} {med:>7}")
        print(f"{indexed.get('jobs', jobs):>9}" + "".join(cells) + f"{built['seconds']:>15.2f}")
    if args.device.startswith("cuda"):
        import torch

        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, peak GPU memory "
              f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    print(f"peak RSS of this process alone {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
