"""Index the LFW subset end to end and print where the time goes.

    python benchmarks/pipeline.py [--lfw-dir DIR] [--embedder dlib|torch] [--limit N] [--data DIR]
    python benchmarks/pipeline.py --detector cnn --upsample 0          # dlib's CNN detector in torch
    python benchmarks/pipeline.py --detector cnn --upsample 0 --device cuda [--precision bfloat16]

Prints photos/s overall, seconds and median milliseconds per stage (load, detect, landmarks,
align, embed per face, index build) and peak memory, for a fresh catalogue in a temporary folder
(or --data). The machine's load average is printed too: other work on the CPUs skews the figures.

With ``--device cuda`` the CNN detector, the alignment (grid_sample) and the embedder run on the
GPU; decoding and the 68 landmarks stay on the CPU (``--loaders`` threads decode). Detection is
timed per batch, so its median is the batch's time divided by its photos. ``--warmup N`` first
runs N photos through the same stages, untimed, so that model loading and cuDNN's autotuning
are not counted.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from iffse_lib import config, pipeline
from iffse_lib.catalog import Catalog
from iffse_lib.faces import FaceDetector
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
    ap.add_argument("--batch", type=int, default=64, help="photos per batch")
    ap.add_argument("--detector", choices=["hog", "cnn"], default="hog")
    ap.add_argument("--upsample", type=int, default=config.DEFAULT_UPSAMPLE)
    ap.add_argument("--device", default="cpu", help="cpu or cuda: the CNN detector, alignment and embedder")
    ap.add_argument("--precision", default="float32", help="torch embedder: float32, tf32, bfloat16, float16")
    ap.add_argument("--loaders", type=int, default=None, help="decoding threads (default: pipeline's)")
    ap.add_argument("--warmup", type=int, default=0, help="photos run untimed first (GPU: 256 is plenty)")
    ap.add_argument("--workers", type=int, default=None,
                    help="run the stages on a local Dask cluster of N worker processes (one thread each)")
    ap.add_argument("--scheduler", default=None, help="run the stages on this Dask cluster (tcp://HOST:PORT)")
    args = ap.parse_args()

    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.mkdtemp(prefix="iffse-bench-")
        data = Path(tmp) / "data"
    kwargs = {}
    if args.device != "cpu" or args.precision != "float32":
        kwargs = {"device": args.device, "dtype": args.precision}
    embedder = get_embedder(args.embedder or ("torch" if kwargs else None), **kwargs)
    detector = FaceDetector(args.detector, args.upsample, args.device if args.detector == "cnn" else "cpu")
    try:
        with Catalog(data) as cat:
            source = LFWSource(args.lfw_dir, limit=args.limit)
            t0 = time.perf_counter()
            collected = pipeline.collect(cat, source, progress=False)
            if args.warmup:
                items = [(pid, str(cat.root / path), None) for pid, path in
                         cat.query("SELECT id, path FROM photos ORDER BY id LIMIT ?", (args.warmup,))]
                for start in range(0, len(items), args.batch):
                    pipeline.run_batch(items[start:start + args.batch], detector, embedder)
            cpu0 = _cpu_seconds()
            indexed = pipeline.index_photos(cat, embedder, batch_size=args.batch, progress=False,
                                            scheduler=args.scheduler, workers=args.workers,
                                            detector=detector, loaders=args.loaders)
            client_cpu = _cpu_seconds() - cpu0
            _, built = pipeline.build_index(cat, embedder.model_tag, progress=False)
            total = time.perf_counter() - t0
            counts = cat.counts()
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"LFW subset: {len(source)} photos from {args.lfw_dir}; detector {detector.tag} on "
              f"{detector.device}; embedder {embedder!r} ({embedder.model_tag}); batches of {args.batch} "
              f"photos; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        if args.device.startswith("cuda"):
            import torch

            print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, peak GPU memory "
                  f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
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
