"""The GPU figures, from a small bundle: made where the whole environment is, run where a GPU is.

    python benchmarks/gpu_check.py prepare --out gpu-bundle        # here: dlib, the models, ../shared
    python benchmarks/gpu_check.py run --bundle gpu-bundle --device cuda [--budget-s 420]
    python benchmarks/gpu_check.py run --bundle gpu-bundle --device cpu  --quick   # try the script

A GPU machine often has PyTorch and little else, and the 68-point landmark model (100 MB) is
larger than what is handy to copy to one. ``prepare`` therefore computes on this machine what
the GPU run compares against and what it cannot compute, and writes a folder of about 40 MB:

- ``models/``: the face ResNet and the CNN detector (with their sha256 lines);
- ``photos/``: ``--photos`` LFW photos (default 512), as stored;
- ``reference.npz``: for each photo, the CNN detector port's detections on the CPU and the 68
  landmarks of every face found (dlib's shape predictor in those boxes); the CPU time per face
  of the landmark stage; for the first ``--chips`` faces (default 256), dlib's own chip
  (``get_face_chip``) and dlib's own vector (``compute_face_descriptor``).
- ``dlib_bin-*.whl`` if ``--wheel`` names one (the alignment check needs dlib's chip geometry).

``run`` needs torch, numpy and Pillow (plus dlib for the alignment) and prints:

1. the embedder: float32 on the device against dlib's vectors (target: largest difference
   1e-4), then faces/s at batches of 256, 1,024 and 4,096 for float32, tf32, bf16, fp16, with
   and without channels-last, and compiled (``benchmarks/embed.py``'s table; cosine >= 0.9999
   against float32 per face);
2. the CNN detector: the device's detections against the CPU's (each CPU box matched with IoU
   >= 0.9, scores within 0.01) and photos/s at several batch sizes;
3. the alignment: chips cut on the device from the stored landmarks against dlib's (mean
   absolute pixel difference <= 2) and faces/s;
4. the pipeline with the landmarks taken from the bundle: decode (threads), detect, align and
   embed, photos/s; and the end-to-end bound once the 68 landmarks are computed on the CPU at
   the cost measured here, on one core and on all of the machine's cores.

``--budget-s`` stops the embedder table early rather than overrun.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


# -- prepare (here) -----------------------------------------------------------------------------

def prepare(args) -> None:
    from iffse_lib import cnn_detector, config, faces, images
    from iffse_lib.embed import DlibEmbedder
    from iffse_lib.models import model_path

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "models").mkdir(parents=True)
    (out / "photos").mkdir()
    sums = (config.MODELS_DIR / "SHA256SUMS").read_text().splitlines()
    keep = (config.FACE_RESNET_FILE, config.CNN_DETECTOR_FILE)
    for name in keep:
        shutil.copy(model_path(name), out / "models" / name)
    (out / "models" / "SHA256SUMS").write_text("\n".join(l for l in sums if l.split()[-1] in keep) + "\n")
    if args.wheel:
        shutil.copy(args.wheel, out / args.wheel.name)

    faces.shape_predictor()  # loaded before the landmark stage is timed
    paths = sorted(args.lfw_dir.rglob("*.jpg"))[:args.photos]
    names, rects, landmarks, photo_of_face = [], [], [], []
    lm_seconds = 0.0
    for i, path in enumerate(paths):
        name = f"{i:05d}.jpg"
        shutil.copy(path, out / "photos" / name)
        image = images.load_image(path)
        found = cnn_detector.detect_rects(image)
        names.append(name)
        h, w = image.shape[:2]
        for l, t, r, b, score in found:
            rects.append((i, l, t, r, b, score))
            t0 = time.perf_counter()
            lm = faces.landmarks_for_box(image, faces.Box(max(0, l), max(0, t), min(w, r + 1), min(h, b + 1)))
            lm_seconds += time.perf_counter() - t0
            landmarks.append(lm)
            photo_of_face.append(i)
    landmarks = np.asarray(landmarks, np.float32)
    n_chips = min(args.chips, len(landmarks))
    chips, loaded = [], {}
    for face in range(n_chips):
        i = photo_of_face[face]
        if i not in loaded:
            loaded[i] = images.load_image(out / "photos" / names[i])
        chips.append(faces.face_chips(loaded[i], [landmarks[face]])[0])
    chips = np.asarray(chips, np.uint8)
    vectors = DlibEmbedder().embed(chips)
    np.savez_compressed(out / "reference.npz", names=np.array(names), rects=np.asarray(rects, np.float64),
                        landmarks=landmarks, photo_of_face=np.asarray(photo_of_face, np.int64),
                        chips=chips, dlib_vectors=vectors,
                        landmark_ms_per_face=np.float64(1000 * lm_seconds / max(len(landmarks), 1)))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {len(names)} photos, {len(landmarks)} faces, {n_chips} dlib chips and vectors; "
          f"landmarks {1000 * lm_seconds / max(len(landmarks), 1):.2f} ms per face on this CPU; {size / 2**20:.1f} MB")


# -- run (on the GPU machine) -------------------------------------------------------------------

def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def check_embedder(args, ref) -> None:
    import embed as embed_bench  # benchmarks/embed.py

    from iffse_lib.embed_torch import TorchEmbedder

    chips, dlib_vecs = ref["chips"], ref["dlib_vectors"]
    ours = TorchEmbedder(device=args.device).embed(chips)
    diff = np.abs(ours - dlib_vecs).max()
    print(f"\n1. embedder: float32 on {args.device} against dlib's vectors on {len(chips)} faces: largest "
          f"|difference| {diff:.2e} ({'ok' if diff <= 1e-4 else 'ABOVE'} 1e-4)", flush=True)
    if not args.device.startswith("cuda"):
        return
    n = 1024 if args.quick else 16384
    reps = chips[np.arange(n) % len(chips)]
    ns = argparse.Namespace(configs=None, batch=[256] if args.quick else [256, 1024, 4096], repeat=3,
                            budget_s=args.budget_s)
    embed_bench.bench_cuda(ns, reps, len(chips), dlib_vecs)


def check_detector(args, ref, photos) -> None:
    from cnn_detector import iou as _iou  # benchmarks/cnn_detector.py

    from iffse_lib import cnn_detector

    want: dict[int, list] = {}
    for i, l, t, r, b, s in ref["rects"]:
        want.setdefault(int(i), []).append((l, t, r, b, s))
    sync = _sync(args.device)
    got = cnn_detector.detect_rects_batch(photos, device=args.device, batch_size=64)  # warm-up too
    matched, worst_iou, worst_score, count_off = 0, 1.0, 0.0, 0
    for i, found in enumerate(got):
        cpu = want.get(i, [])
        count_off += len(found) != len(cpu)
        for rect in cpu:
            best = max(found, key=lambda o: _iou(o[:4], rect[:4]), default=None)
            if best is None:
                worst_iou = 0.0
                continue
            iou = _iou(best[:4], rect[:4])
            worst_iou = min(worst_iou, iou)
            if iou >= 0.9:
                matched += 1
                worst_score = max(worst_score, abs(best[4] - rect[4]))
    total = sum(len(v) for v in want.values())
    print(f"\n2. CNN detector on {args.device}: {len(photos)} photos; {matched}/{total} CPU boxes matched "
          f"(IoU >= 0.9), worst IoU {worst_iou:.3f}, largest score difference {worst_score:.4f}, "
          f"photos with another count {count_off}", flush=True)
    for batch in ([16] if args.quick else [16, 64, 256]):
        best = np.inf
        for _ in range(3):
            sync()
            t = time.perf_counter()
            cnn_detector.detect_rects_batch(photos, device=args.device, batch_size=batch)
            sync()
            best = min(best, time.perf_counter() - t)
        print(f"   batch {batch:>4}: {len(photos) / best:8.0f} photos/s (detections back on the CPU)", flush=True)


def check_alignment(args, ref, photos) -> None:
    from iffse_lib import align_torch

    lms, owner, chips = ref["landmarks"], ref["photo_of_face"], ref["chips"]
    n = len(chips)
    ours = np.concatenate([align_torch.face_chips(photos[owner[f]], lms[f:f + 1], device=args.device).cpu().numpy()
                           for f in range(n)])
    diffs = np.abs(ours.astype(int) - chips.astype(int)).reshape(n, -1).mean(1)
    by_photo: dict[int, list[int]] = {}
    for f, p in enumerate(owner):
        by_photo.setdefault(int(p), []).append(f)
    sync = _sync(args.device)
    sync()
    t = time.perf_counter()
    for p, fs in by_photo.items():
        align_torch.face_chips(photos[p], lms[fs], device=args.device)
    sync()
    dt = time.perf_counter() - t
    print(f"\n3. alignment on {args.device}: {n} chips against dlib's get_face_chip: mean absolute pixel "
          f"difference at most {diffs.max():.3f} ({'ok' if diffs.max() <= 2 else 'ABOVE'} 2), on average "
          f"{diffs.mean():.4f}; {len(owner) / dt:.0f} faces/s over {len(by_photo)} photos", flush=True)


def check_pipeline(args, ref, paths) -> None:
    import torch

    from iffse_lib import align_torch, cnn_detector, images
    from iffse_lib.embed_torch import TorchEmbedder

    lms, owner = ref["landmarks"], ref["photo_of_face"]
    faces_of: dict[int, list[int]] = {}
    for f, p in enumerate(owner):
        faces_of.setdefault(int(p), []).append(f)
    embedder = TorchEmbedder(device=args.device)
    sync = _sync(args.device)
    loaders = min(16, os.cpu_count() or 1)

    def once() -> dict:
        times = dict.fromkeys(("decode", "detect", "align", "embed"), 0.0)
        t = time.perf_counter()
        with ThreadPoolExecutor(loaders) as pool:
            photos = list(pool.map(images.load_image, paths))
        times["decode"] = time.perf_counter() - t
        t = time.perf_counter()
        cnn_detector.detect_rects_batch(photos, device=args.device, batch_size=64)
        sync()
        times["detect"] = time.perf_counter() - t
        t = time.perf_counter()
        chips = [align_torch.face_chips(photos[p], lms[fs], device=args.device) for p, fs in faces_of.items()]
        sync()
        times["align"] = time.perf_counter() - t
        t = time.perf_counter()
        embedder.embed(torch.cat(chips))
        sync()
        times["embed"] = time.perf_counter() - t
        return times

    once()  # warm-up
    best = min((once() for _ in range(2 if args.quick else 3)), key=lambda d: sum(d.values()))
    total = sum(best.values())
    n_photos, n_faces = len(paths), len(owner)
    lm_ms = float(ref["landmark_ms_per_face"])
    print(f"\n4. pipeline on {args.device}, {n_photos} photos, {n_faces} faces, landmarks from the bundle: "
          f"{n_photos / total:.0f} photos/s (" + ", ".join(f"{k} {v * 1000 / n_photos:.2f}" for k, v in best.items())
          + f" ms/photo; decoding on {loaders} threads)")
    cores = os.cpu_count() or 1
    for workers in sorted({1, cores}):
        lm_s = n_faces * lm_ms / 1000 / workers
        print(f"   with the 68 landmarks on {workers:>2} CPU core(s) at {lm_ms:.2f} ms/face (measured where the "
              f"bundle was made): at most {n_photos / max(total, lm_s):.0f} photos/s if the landmarks overlap "
              f"the GPU work, {n_photos / (total + lm_s):.0f} if not", flush=True)


def run(args) -> None:
    import torch

    os.environ["IFFSE_MODELS"] = str((args.bundle / "models").resolve())  # read when iffse_lib is imported
    from iffse_lib import images
    from iffse_lib.models import manifest, sha256_file

    for name, digest in manifest(args.bundle / "models").items():
        if sha256_file(args.bundle / "models" / name) != digest:
            raise SystemExit(f"{args.bundle / 'models' / name}: sha256 differs from SHA256SUMS; copy the bundle again")
    ref = np.load(args.bundle / "reference.npz")
    paths = [args.bundle / "photos" / n for n in ref["names"]]
    photos = [images.load_image(p) for p in paths]
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    print(f"{where}; torch {torch.__version__}; {len(photos)} photos, {len(ref['landmarks'])} faces in "
          f"{args.bundle}", flush=True)
    start = time.perf_counter()
    check_detector(args, ref, photos)
    try:
        import dlib  # noqa: F401  (the chip geometry)
        check_alignment(args, ref, photos)
        check_pipeline(args, ref, paths)
    except ImportError:
        print("\n3-4. alignment and pipeline skipped: dlib is not installed (pip install the bundle's dlib_bin wheel)")
    args.budget_s = max(60.0, args.budget_s - (time.perf_counter() - start))
    check_embedder(args, ref)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="write the bundle (here)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--lfw-dir", type=Path, default=Path(os.environ.get("IFFSE_LFW_DIR") or ROOT.parent / "shared" / "data" / "lfw"))
    p.add_argument("--photos", type=int, default=512)
    p.add_argument("--chips", type=int, default=256)
    p.add_argument("--wheel", type=Path, default=None, help="a dlib-bin wheel for the GPU machine's Python")
    r = sub.add_parser("run", help="the checks and figures (on the GPU machine)")
    r.add_argument("--bundle", type=Path, required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--budget-s", type=float, default=420)
    r.add_argument("--quick", action="store_true", help="fewer sizes and repeats (to try the script)")
    args = ap.parse_args()
    prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    main()
