"""dlib's CNN face detector against its PyTorch port (iffse_lib.cnn_detector), on every photo.

    python benchmarks/cnn_detector.py [--faces ../shared/data/faces] [--limit N] [--upsample 0]
    python benchmarks/cnn_detector.py --device cuda          # the port on the GPU
    nice python benchmarks/cnn_detector.py > cnn.txt &       # dlib's CNN: seconds a photo on a CPU

For each photo of ``--faces`` (sorted; the first ``--limit``), runs
``dlib.cnn_face_detection_model_v1(path)(image, upsample)`` and ``cnn_detector.detect_rects``,
matches each of dlib's boxes with the port's box of largest IoU, and prints the photos where the
counts differ or a box matches with IoU < 0.9 or a score differs by more than 0.01. Then, over all
photos: dlib's boxes, the port's, boxes matched with IoU >= 0.9, the worst IoU, the largest score
difference, median ms per photo for each and their ratio.

Last, the port's throughput on ``--lfw-photos`` 250 x 250 LFW photos (``--lfw``): one photo a
call against :func:`cnn_detector.detect_rects_batch` with ``--batch-size`` photos a forward pass
(``--skip-dlib`` runs this part only).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


from iffse_lib import cnn_detector, config, images

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def iou(a, b) -> float:
    """Intersection over union of inclusive (left, top, right, bottom) rectangles."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inner = max(0, w) * max(0, h)
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inner / (area - inner)


def compare(args) -> None:
    import dlib

    paths = sorted(p for p in args.faces.rglob("*") if p.suffix.lower() in config.IMAGE_EXTENSIONS)
    paths = paths[:args.limit] if args.limit else paths
    detector = dlib.cnn_face_detection_model_v1(str(config.MODELS_DIR / config.CNN_DETECTOR_FILE))
    print(f"{len(paths)} photos from {args.faces}, upsample {args.upsample}; dlib {dlib.__version__} "
          f"(CUDA {dlib.DLIB_USE_CUDA}), torch port on {args.device}", flush=True)
    cnn_detector.detect_rects(images.load_image(paths[0]), device=args.device)  # load the network

    n_dlib = n_torch = matched = identical = 0
    worst_iou, worst_score, worst_photo = 1.0, 0.0, "every box identical"
    ms_dlib, ms_torch = [], []
    for path in paths:
        image = images.load_image(path)
        t = time.perf_counter()
        theirs = [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), d.confidence)
                  for d in detector(image, args.upsample)]
        ms_dlib.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        ours = cnn_detector.detect_rects(image, device=args.device, upsample=args.upsample)
        ms_torch.append((time.perf_counter() - t) * 1000)
        n_dlib, n_torch = n_dlib + len(theirs), n_torch + len(ours)
        problems = []
        for rect in theirs:
            best = max(ours, key=lambda o: iou(o[:4], rect[:4]), default=None)
            overlap = iou(best[:4], rect[:4]) if best else 0.0
            score_diff = abs(best[4] - rect[4]) if best else float("inf")
            if overlap < worst_iou:
                worst_iou = overlap
                worst_photo = (f"{path.relative_to(args.faces)}: dlib {rect[:4]}, "
                               f"torch {best[:4] if best else None}")
            if best:
                worst_score = max(worst_score, score_diff)
            if overlap >= 0.9:
                matched += 1
            if overlap < 0.9 or score_diff > 0.01:
                problems.append(f"dlib {rect[:4]} {rect[4]:.4f} -> torch "
                                f"{best[:4] if best else None} IoU {overlap:.3f}")
        identical += sorted(r[:4] for r in theirs) == sorted(o[:4] for o in ours)
        if len(theirs) != len(ours) or problems:
            print(f"MISMATCH {path.relative_to(args.faces)} {image.shape[1]}x{image.shape[0]}: "
                  f"dlib {len(theirs)} boxes, torch {len(ours)}", flush=True)
            for p in problems:
                print(f"    {p}")
            for o in ours:
                if not any(iou(o[:4], r[:4]) >= 0.9 for r in theirs):
                    print(f"    torch only {o[:4]} {o[4]:.4f}")
    dlib_ms, torch_ms = statistics.median(ms_dlib), statistics.median(ms_torch)
    print(f"photos {len(paths)}  dlib boxes {n_dlib}  torch boxes {n_torch}  "
          f"matched (IoU >= 0.9) {matched}/{n_dlib}")
    print(f"photos whose boxes are dlib's to the pixel: {identical}/{len(paths)}")
    print(f"worst IoU {worst_iou:.4f} ({worst_photo})  largest score difference {worst_score:.6f}")
    print(f"median ms per photo: dlib {dlib_ms:.1f}  torch ({args.device}) {torch_ms:.1f}  "
          f"ratio {dlib_ms / torch_ms:.1f}x; total s: dlib {sum(ms_dlib) / 1000:.1f}  "
          f"torch {sum(ms_torch) / 1000:.1f}", flush=True)


def throughput(args) -> None:
    if args.lfw_photos <= 0:  # --lfw-photos 0: the comparison with dlib only
        return
    paths = sorted(args.lfw.rglob("*.jpg"))[:args.lfw_photos]
    photos = [images.load_image(p) for p in paths]
    photos = [p for p in photos if p.shape == (250, 250, 3)]
    if not photos:
        print(f"no 250 x 250 photos under {args.lfw}")
        return
    cnn_detector.detect_rects_batch(photos[:args.batch_size], device=args.device,
                                    upsample=args.upsample, batch_size=args.batch_size)  # warm up
    t = time.perf_counter()
    alone = [cnn_detector.detect_rects(p, device=args.device, upsample=args.upsample) for p in photos]
    t_alone = time.perf_counter() - t
    t = time.perf_counter()
    together = cnn_detector.detect_rects_batch(photos, device=args.device, upsample=args.upsample,
                                               batch_size=args.batch_size)
    t_batch = time.perf_counter() - t
    same = all([d[:4] for d in a] == [d[:4] for d in b] for a, b in zip(alone, together))
    print(f"{len(photos)} LFW photos 250x250, torch on {args.device}, upsample {args.upsample}: "
          f"one by one {len(photos) / t_alone:.1f} photos/s ({t_alone / len(photos) * 1000:.1f} ms each), "
          f"batches of {args.batch_size} {len(photos) / t_batch:.1f} photos/s "
          f"({t_batch / len(photos) * 1000:.1f} ms each), {t_alone / t_batch:.2f}x; "
          f"same boxes: {same}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=SHARED / "faces")
    ap.add_argument("--lfw", type=Path, default=SHARED / "lfw")
    ap.add_argument("--limit", type=int, default=0, help="the first N photos only (0: all)")
    ap.add_argument("--upsample", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="the port's device: cpu, cuda, cuda:1 ...")
    ap.add_argument("--lfw-photos", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--skip-dlib", action="store_true", help="the throughput part only")
    args = ap.parse_args()
    if not args.skip_dlib:
        compare(args)
    throughput(args)


if __name__ == "__main__":
    main()
