"""Choose the detector and its upsampling: faces found, landmark error and time per photo.

    python benchmarks/detectors.py [--faces ../shared/data/faces] [--detectors hog-up0 hog-up1 cnn-up0 ...]

Runs each detector (dlib's HOG at 0, 1 and 2 upsampling steps; dlib's CNN detector in PyTorch
on the CPU at 0 and 1) over the 105 fixture photos, then dlib's 68-point shape predictor in
every box found, and prints per setting:

- people: photos of people/ with at least one face (each shows one person);
- multi: faces found in multi/ (the label column is what HOG at upsample 1 finds there);
- xml found: of the 43 faces dlib's landmark XMLs mark in multi/, those whose 68 predicted
  landmarks lie on the marked ones (mean distance under 10% of the face's width);
- xml error: the mean distance, in pixels, of those faces' 68 landmarks from the marked ones
  (the predictor was trained on HOG-like boxes: a box of another shape shows up here);
- noface: faces "found" on the animal photos of noface/ (all false);
- median ms per photo (detection only) and the total seconds.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from iffse_lib import faces, images

ROOT = Path(__file__).resolve().parents[1]


def xml_faces(folder: Path) -> dict[str, list[np.ndarray]]:
    """file -> the (68, 2) landmark sets dlib's example XMLs mark in it."""
    out: dict[str, list[np.ndarray]] = {}
    for name in ("dlib_training_with_face_landmarks.xml", "dlib_testing_with_face_landmarks.xml"):
        for image in ET.parse(folder / name).getroot().iter("image"):
            for box in image.iter("box"):
                parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
                out.setdefault(image.get("file"), []).append(
                    np.array([(float(p.get("x")), float(p.get("y"))) for p in parts]))
    return out


def parse(spec: str) -> faces.FaceDetector:
    kind, _, up = spec.partition("-up")
    return faces.FaceDetector(kind, int(up or 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--detectors", nargs="+", default=["hog-up0", "hog-up1", "hog-up2", "cnn-up0", "cnn-up1"])
    args = ap.parse_args()
    labels = {r["file"]: r for r in csv.DictReader(open(args.faces / "labels.csv"))}
    loaded = {f: images.load_image(args.faces / f) for f in labels}
    truth = xml_faces(args.faces / "multi")
    n_truth = sum(len(v) for v in truth.values())
    people = [f for f in labels if labels[f]["category"] == "people"]
    multi = [f for f in labels if labels[f]["category"] == "multi"]
    noface = [f for f in labels if labels[f]["category"] == "noface"]
    m_label = sum(int(labels[f]["dlib_HOG_faces"]) for f in multi)
    print(f"{len(loaded)} photos from {args.faces}; {n_truth} faces marked in dlib's XMLs")
    print(f"{'detector':<9} {'people':>9} {'multi':>9} {'xml found':>10} {'xml error px':>13} {'noface':>7} "
          f"{'median ms':>10} {'total s':>8}")
    for spec in args.detectors:
        detector = parse(spec)
        detector.detect_batch([loaded[people[0]]])  # load the model before timing
        found, times = {}, []
        for f, img in loaded.items():
            t = time.perf_counter()
            found[f] = detector.detect_batch([img])[0]
            times.append((time.perf_counter() - t) * 1000)
        hits, errors = 0, []
        for f, marked in truth.items():
            img = loaded[f"multi/{f}"]
            predicted = [faces.landmarks_for_box(img, box) for box, _ in found[f"multi/{f}"]]
            for pts in marked:
                width = pts[:, 0].max() - pts[:, 0].min()
                err = min((np.linalg.norm(p - pts, axis=1).mean() for p in predicted), default=np.inf)
                if err < 0.1 * width:
                    hits += 1
                    errors.append(err)
        p_ok = sum(len(found[f]) >= 1 for f in people)
        m_found = sum(len(found[f]) for f in multi)
        nf = sum(len(found[f]) for f in noface)
        err = f"{np.mean(errors):.2f}" if errors else "-"
        print(f"{detector.tag:<9} {p_ok:>4}/{len(people):<4} {m_found:>4}/{m_label:<4} {hits:>5}/{n_truth:<4} "
              f"{err:>13} {nf:>7} {statistics.median(times):>10.1f} {sum(times) / 1000:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
