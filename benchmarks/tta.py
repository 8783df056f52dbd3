"""Choose the detector, the chip's landmarks and the test-time augmentation: LFW accuracy and speed.

    python benchmarks/tta.py --pairs pairs.txt [--lfw-dir ../shared/data/lfw] [--jitters 10] [--json]
    python benchmarks/tta.py --people ../shared/data/faces/people      # the landmark rule on the fixtures

One run over the photos a pairs file names (make it with `iffse evaluate make-pairs`), through the
pipeline's own steps (:mod:`iffse_lib.evaluate.lfw_vectors`): each detector (dlib's HOG at upsample 1,
dlib's CNN in PyTorch at upsample 0) detects every photo once, with its 68 landmarks; chips are cut
from the 68 points and from the 5-point predictor's in the same boxes; each chip set is embedded
with each augmentation (the torch embedder, float32, on the CPU). The photos are shared between
rows, so only the embedding is repeated.

Per row: the ten-fold accuracy ± std over folds, ROC AUC over all pairs, and faces/s end to end
(one subject per photo): (detect + 68 landmarks) time of the detector, plus cutting the chips
(the 5-point predictor included), plus embedding, over the photos. `rule` marks the landmarks the
pipeline uses for that detector (``faces.CHIP_POINTS``). The load average is printed at the start
and the end: the faces/s of one run are comparable with each other, not across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from iffse_lib import faces
from iffse_lib.embed_torch import TorchEmbedder
from iffse_lib.evaluate.lfw_vectors import cut_chips, find_subjects, locate
from iffse_lib.evaluate.pairs import lfw_file, read_pairs
from iffse_lib.evaluate.verification import kfold_accuracy
from iffse_lib.stages import StageTimes

ROOT = Path(__file__).resolve().parents[1]


def people_rows(folder: Path) -> list[dict]:
    """The chip landmarks on the fixture photos of ``folder`` (one folder per person): the largest
    face of each photo, each detector, chips from the 68 and from the 5 points (no augmentation).
    Per row: ROC AUC and the mean distance of same-person and different-person pairs of faces, and
    how many faces have a face of another person nearer than their farthest own."""
    from sklearn.metrics import roc_auc_score

    from iffse_lib import images

    photos = [(p, p.parent.name) for d in sorted(folder.iterdir()) if d.is_dir() for p in sorted(d.iterdir())]
    loaded = [images.load_image(p) for p, _ in photos]
    embedder = TorchEmbedder()
    rows = []
    for tag in ("hog-up1", "cnn-up0"):
        detector = faces.FaceDetector.from_tag(tag)
        found = [(i, bs[0][0]) for i, bs in enumerate(detector.detect_batch(loaded)) if bs]
        who = np.array([photos[i][1] for i, _ in found])
        same = who[:, None] == who[None]
        upper = np.triu(np.ones_like(same), 1)
        for points in (68, 5):
            chips = np.stack([faces.face_chips(loaded[i], [faces.landmarks_for_box(loaded[i], box, points)])[0]
                              for i, box in found])
            v = embedder.embed(chips)
            d = np.linalg.norm(v[:, None] - v[None], axis=2)
            pos, neg = d[same & upper], d[~same & upper]
            own = np.where(same & ~np.eye(len(d), dtype=bool), d, -np.inf).max(axis=1)
            other = np.where(~same, d, np.inf).min(axis=1)
            rows.append({"detector": tag, "points": points, "faces": len(found), "people": len(set(who)),
                         "roc_auc": float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], -np.r_[pos, neg])),
                         "same_mean": float(pos.mean()), "different_mean": float(neg.mean()),
                         "faces_with_a_stranger_nearer": int((other < own).sum())})
    return rows


def score(pairs, vectors: np.ndarray, row_of: dict[str, int]) -> dict:
    """Ten-fold accuracy, its std over folds, ROC AUC for vectors in rows named by ``row_of``."""
    from sklearn.metrics import roc_auc_score

    a = vectors[[row_of[f] for f in pairs["file1"]]].astype(np.float64)
    b = vectors[[row_of[f] for f in pairs["file2"]]].astype(np.float64)
    d = np.linalg.norm(a - b, axis=1)
    folds = kfold_accuracy(d, pairs["same"].to_numpy(), pairs["fold"].to_numpy())
    return {"accuracy": folds.mean, "std": folds.std, "auc": float(roc_auc_score(pairs["same"], -d)),
            "threshold": float(np.mean(folds.thresholds))}


def settings(kind: str, points: int, jitters: int) -> list[str]:
    """The augmentations measured for one detector and landmark set: none and flip everywhere,
    jitter only with the landmarks the pipeline's rule picks (it costs ``jitters`` passes a face)."""
    out = ["none", "flip"]
    if jitters and faces.CHIP_POINTS[kind] == points:
        out.append(f"jitter:{jitters}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=Path, default=None, help="pairs file (LFW's format)")
    ap.add_argument("--people", type=Path, default=None,
                    help="instead: compare the chip landmarks on a folder of people's photos (one folder each)")
    ap.add_argument("--lfw-dir", type=Path, default=ROOT.parent / "shared" / "data" / "lfw")
    ap.add_argument("--detectors", nargs="+", default=["hog-up1", "cnn-up0"])
    ap.add_argument("--jitters", type=int, default=10, help="copies for the jitter rows (0: none)")
    ap.add_argument("--batch", type=int, default=64, help="photos per detection call and chips per embed call")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    args = ap.parse_args()
    if args.people is not None:
        rows = people_rows(args.people)
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        print("| faces found by | chip cut from | faces (people) | ROC AUC | same-person mean | different mean | stranger nearer |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| `{r['detector']}` | {r['points']} points | {r['faces']} ({r['people']}) | {r['roc_auc']:.5f} | "
                  f"{r['same_mean']:.3f} | {r['different_mean']:.3f} | {r['faces_with_a_stranger_nearer']} |")
        return
    if args.pairs is None:
        ap.error("give --pairs (LFW) or --people")

    load_start = os.getloadavg()
    pairs = read_pairs(args.pairs)
    pairs["file1"] = [lfw_file(n, i) for n, i in zip(pairs["name1"], pairs["num1"])]
    pairs["file2"] = [lfw_file(n, i) for n, i in zip(pairs["name2"], pairs["num2"])]
    files = list(dict.fromkeys([*pairs["file1"], *pairs["file2"]]))
    paths = locate(files, args.lfw_dir)
    row_of = {f: i for i, f in enumerate(paths)}
    rows = []
    for tag in args.detectors:
        detector = faces.FaceDetector.from_tag(tag)
        times = StageTimes()
        t = time.perf_counter()
        subjects = find_subjects(paths, detector, args.batch, progress=False, times=times)
        detect_s = time.perf_counter() - t
        fallback = sum(s["how"] == "fallback" for s in subjects.values())
        for points in (68, 5):
            subs = {f: dict(s) for f, s in subjects.items()}  # cut_chips fills in the fallback boxes
            t = time.perf_counter()
            chips, _ = cut_chips(paths, subs, detector.tag, points)
            chip_s = time.perf_counter() - t
            for tta in settings(detector.kind, points, args.jitters):
                embedder = TorchEmbedder(tta=tta)
                embedder.embed(chips[:8])  # build the network outside the timing
                t = time.perf_counter()
                vectors = np.concatenate([embedder.embed(chips[i:i + args.batch])
                                          for i in range(0, len(chips), args.batch)])
                embed_s = time.perf_counter() - t
                row = {"detector": tag, "points": points, "rule": faces.CHIP_POINTS[detector.kind] == points,
                       "tta": tta, "model_tag": embedder.model_tag, **score(pairs, vectors, row_of),
                       "faces_per_s": len(chips) / (detect_s + chip_s + embed_s),
                       "seconds": {"detect_and_68_landmarks": round(detect_s, 2), "chips": round(chip_s, 2),
                                   "embed": round(embed_s, 2)},
                       "photos": len(chips), "fallback_photos": fallback}
                rows.append(row)
                if not args.json:
                    print(f"  {tag} {points} points {tta}: {100 * row['accuracy']:.2f}% "
                          f"({row['faces_per_s']:.1f} faces/s)", flush=True)
    info = {"pairs": str(args.pairs), "n_pairs": len(pairs), "same": int(pairs["same"].sum()),
            "folds": int(pairs.attrs["n_folds"]), "photos": len(files), "cpus": os.cpu_count(),
            "load_average_start": [round(v, 2) for v in load_start],
            "load_average_end": [round(v, 2) for v in os.getloadavg()], "rows": rows}
    if args.out is not None:
        args.out.write_text(json.dumps(info, indent=2))
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"\n{info['n_pairs']} pairs ({info['same']} same) in {info['folds']} folds over {info['photos']} photos; "
          f"load average {info['load_average_start']} at the start, {info['load_average_end']} at the end")
    print("| faces found by | chip cut from | vectors (model tag) | accuracy ± std | ROC AUC | faces/s |")
    print("|---|---|---|---|---:|---:|")
    for r in rows:
        pts = f"{r['points']} points" + (" (rule)" if r["rule"] else "")
        print(f"| `{r['detector']}` | {pts} | `{r['model_tag']}` | {100 * r['accuracy']:.2f}% ± "
              f"{100 * r['std']:.2f}% | {r['auc']:.5f} | {r['faces_per_s']:.1f} |")


if __name__ == "__main__":
    main()
