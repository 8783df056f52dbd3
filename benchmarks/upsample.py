"""Choose the HOG detector's upsampling: faces found and time per photo at 0, 1 and 2 steps.

    python benchmarks/upsample.py [--faces ../shared/data/faces]

Prints, per setting: photos of people/ with at least one face (each holds one person), faces
found in multi/ against the counts in labels.csv, false faces on noface/, and median ms per photo.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

from iffse_lib import faces, images

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--upsample", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    labels = {r["file"]: r for r in csv.DictReader(open(args.faces / "labels.csv"))}
    loaded = {f: images.load_image(args.faces / f) for f in labels}
    print(f"{len(loaded)} photos from {args.faces}")
    print(f"{'upsample':>8} {'people found':>13} {'multi faces':>12} {'noface false':>13} {'median ms':>10} {'total s':>8}")
    for up in args.upsample:
        found, times = {}, []
        for f, img in loaded.items():
            t = time.perf_counter()
            found[f] = len(faces.detect_boxes(img, up))
            times.append((time.perf_counter() - t) * 1000)
        people = [f for f in labels if labels[f]["category"] == "people"]
        multi = [f for f in labels if labels[f]["category"] == "multi"]
        noface = [f for f in labels if labels[f]["category"] == "noface"]
        p_ok = sum(found[f] >= 1 for f in people)
        m_found = sum(found[f] for f in multi)
        m_label = sum(int(labels[f]["dlib_HOG_faces"]) for f in multi)
        nf = sum(found[f] for f in noface)
        print(f"{up:>8} {p_ok:>6}/{len(people):<6} {m_found:>5}/{m_label:<6} {nf:>13} "
              f"{statistics.median(times):>10.1f} {sum(times) / 1000:>8.1f}")


if __name__ == "__main__":
    main()
