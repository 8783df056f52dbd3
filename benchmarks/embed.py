"""Faces per second: dlib's embedder against the PyTorch one, on the same real face chips.

    python benchmarks/embed.py                  # CPU: dlib, then torch on 1 and 2 threads
    python benchmarks/embed.py --device cuda    # GPU: batch 256, 1024, 4096 x precisions

Chips are the HOG faces (upsample 1) of the first photos of ../shared/data/faces, --distinct of
them, repeated to --n. dlib-bin is built without BLAS and runs on one thread whatever torch is
told, so its figure is the same for every thread count.

CPU: faces/s for dlib and for TorchEmbedder's default (float32, channels-last, batches of 32) and
two variants, on each --threads setting, with the ratio to dlib, the largest difference from
dlib's vectors and the smallest cosine against float32.

GPU: faces/s from numpy chips (embed: pinned copies to the GPU included) and from chips already
on the GPU (net), for float32, tf32, bf16 and fp16, each with and without channels-last, and
compiled variants, at each --batch size; the smallest cosine against float32 per face (target
0.9999) and float32's largest difference from dlib (target 1e-4). The first call of a compiled
variant compiles (its time is printed); --budget-s stops early rather than overrun.
The machine's load average is printed: other work on the CPUs skews the figures.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from iffse_lib import config, faces, images
from iffse_lib.embed import DlibEmbedder
from iffse_lib.embed_torch import TorchEmbedder

ROOT = Path(__file__).resolve().parents[1]

CPU_CONFIGS = {
    "float32": {},
    "float32 NCHW b256": dict(channels_last=False, batch_size=256),
    "bf16": dict(dtype="bfloat16"),
}
GPU_CONFIGS = {
    "float32": dict(channels_last=False),
    "float32+cl": dict(channels_last=True),
    "tf32": dict(dtype="tf32", channels_last=False),
    "tf32+cl": dict(dtype="tf32", channels_last=True),
    "bf16": dict(dtype="bfloat16", channels_last=False),
    "bf16+cl": dict(dtype="bfloat16", channels_last=True),
    "fp16": dict(dtype="float16", channels_last=False),
    "fp16+cl": dict(dtype="float16", channels_last=True),
    "float32+compile": dict(channels_last=True, compile=True),
    "bf16+cl+compile": dict(dtype="bfloat16", channels_last=True, compile=True),
}


def real_chips(folder: Path, distinct: int) -> np.ndarray:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in config.IMAGE_EXTENSIONS:
            continue
        image = images.load_image(path)
        detections = faces.FaceDetector("hog", upsample=1).detect(image)
        if detections:
            found.extend(faces.face_chips(image, [d.landmarks for d in detections]))
        if len(found) >= distinct:
            break
    return np.stack(found[:distinct])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def best_rate(fn, n: int, repeat: int, sync=lambda: None) -> float:
    best = float("inf")
    for _ in range(repeat):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return n / best


def bench_cpu(args, chips, distinct, dlib_vecs, dlib_rate) -> None:
    import torch

    ref = TorchEmbedder().embed(chips)
    print(f"{'threads':>7}  {'embedder':<20}{'faces/s':>9}{'x dlib':>8}{'max |d| vs dlib':>17}{'min cos vs f32':>16}")
    print(f"{'1':>7}  {'dlib':<20}{dlib_rate:>9.1f}{1:>8.1f}")
    for threads in args.threads:
        for label, kw in CPU_CONFIGS.items():
            emb = TorchEmbedder(num_threads=threads, **kw)
            out = emb.embed(chips)  # warm-up, and the vectors
            rate = best_rate(lambda: emb.embed(chips), len(chips), args.repeat)
            diff = np.abs(out[:len(dlib_vecs)] - dlib_vecs).max() if dlib_vecs is not None else float("nan")
            print(f"{threads:>7}  {label:<20}{rate:>9.1f}{rate / dlib_rate:>8.1f}{diff:>17.2e}"
                  f"{cosine(out, ref).min():>16.6f}", flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def bench_cuda(args, chips, distinct, dlib_vecs) -> None:
    import torch

    start = time.perf_counter()
    on_gpu = torch.from_numpy(chips).to("cuda")
    sync = torch.cuda.synchronize
    ref = TorchEmbedder(device="cuda", dtype="float32", batch_size=1024).embed(chips)
    if dlib_vecs is not None:
        diff = np.abs(ref[:len(dlib_vecs)] - dlib_vecs).max()
        print(f"GPU float32 vs dlib on {len(dlib_vecs)} faces: largest |difference| {diff:.2e} "
              f"({'ok' if diff <= 1e-4 else 'ABOVE'} 1e-4)")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {len(chips)} chips "
          f"({distinct} distinct)")
    print(f"{'variant':<17}{'batch':>6}{'embed f/s':>11}{'net f/s':>11}{'min cos':>10}{'first call s':>13}")
    for label, kw in GPU_CONFIGS.items():
        if args.configs and label not in args.configs:
            continue
        for batch in args.batch:
            if time.perf_counter() - start > args.budget_s:
                print(f"--budget-s {args.budget_s} reached; stopping before {label} at {batch}")
                return
            emb = TorchEmbedder(device="cuda", batch_size=batch, **kw)
            t = time.perf_counter()
            out = emb.embed(chips)  # warm-up: cuDNN autotuning, compiling
            first = time.perf_counter() - t
            rate = best_rate(lambda: emb.embed(chips), len(chips), args.repeat)
            net_rate = best_rate(lambda: emb.embed(on_gpu), len(chips), args.repeat, sync)
            worst = cosine(out, ref).min()
            flag = "" if worst >= 0.9999 else "  < 0.9999"
            print(f"{label:<17}{batch:>6}{rate:>11.0f}{net_rate:>11.0f}{worst:>10.6f}{first:>13.1f}{flag}",
                  flush=True)
    print(f"total {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--distinct", type=int, default=64, help="distinct chips (default 64)")
    ap.add_argument("--n", type=int, default=None, help="chips timed (default 384; 16384 on cuda)")
    ap.add_argument("--dlib-n", type=int, default=64, help="chips dlib embeds (0: skip dlib)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--configs", nargs="+", default=None, help=f"GPU variants (default all: {', '.join(GPU_CONFIGS)})")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per setting; the best counts")
    ap.add_argument("--budget-s", type=float, default=480, help="GPU: stop starting new settings after this")
    args = ap.parse_args()

    t = time.perf_counter()
    distinct_chips = real_chips(args.faces, args.distinct)
    n = args.n or (16384 if args.device == "cuda" else 384)
    chips = distinct_chips[np.arange(n) % len(distinct_chips)]
    print(f"{len(distinct_chips)} distinct chips from {args.faces} in {time.perf_counter() - t:.1f} s, "
          f"repeated to {n}")

    dlib_vecs, dlib_rate = None, float("nan")
    if args.dlib_n:
        few = chips[:args.dlib_n]
        t = time.perf_counter()
        dlib_vecs = DlibEmbedder().embed(few)
        dlib_rate = len(few) / (time.perf_counter() - t)
        print(f"dlib (dlib-bin, no BLAS, one thread): {dlib_rate:.1f} faces/s on {len(few)} chips")
    if args.device == "cuda":
        bench_cuda(args, chips, len(distinct_chips), dlib_vecs)
    else:
        bench_cpu(args, chips, len(distinct_chips), dlib_vecs, dlib_rate)


if __name__ == "__main__":
    main()
