"""Make photos shaped like an Instagram feed's from the fixture photos, for benchmarks/pipeline.py.

    python benchmarks/make_feed_photos.py OUT_DIR [--count 120] [--faces ../shared/data/faces] [--seed 0]
    python benchmarks/pipeline.py --photos OUT_DIR

Every photo is a 1080 x 1350 JPEG (Instagram's 4:5 portrait size; quality 85) composed from the
photos under ``--faces``: selfies (one portrait filling the frame: a face of 300 to 600 px),
pairs (two portraits side by side: faces of 150 to 300 px) and groups (a 3 x 3 grid of
portraits, or a group photo fitted into the frame: faces of 50 to 150 px), in the proportions
40/30/30. The same seed gives the same photos. The output is for measuring only: never commit it.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1080, 1350)
KINDS = (("selfie", 0.4), ("pair", 0.3), ("group", 0.3))


def _open(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def _fill(photo: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``photo`` scaled to cover ``size`` and cut to it around its centre (a feed's crop)."""
    return ImageOps.fit(photo, size, Image.Resampling.LANCZOS, centering=(0.5, 0.4))


def _fit_into(canvas: Image.Image, photo: Image.Image, box: tuple[int, int, int, int]) -> None:
    """``photo`` scaled to fit inside ``box`` (left, top, right, bottom), centred, aspect kept."""
    width, height = box[2] - box[0], box[3] - box[1]
    scaled = ImageOps.contain(photo, (width, height), Image.Resampling.LANCZOS)
    canvas.paste(scaled, (box[0] + (width - scaled.width) // 2, box[1] + (height - scaled.height) // 2))


def compose(kind: str, portraits: list[Path], groups: list[Path], rng: random.Random) -> Image.Image:
    background = tuple(rng.randrange(30, 230) for _ in range(3))
    canvas = Image.new("RGB", SIZE, background)
    w, h = SIZE
    if kind == "selfie":
        canvas.paste(_fill(_open(rng.choice(portraits)), SIZE))
    elif kind == "pair":
        top = rng.randrange(150, 400)
        for i, path in enumerate(rng.sample(portraits, 2)):
            canvas.paste(_fill(_open(path), (w // 2, 700)), (i * w // 2, top))
    elif groups and rng.random() < 0.5:
        _fit_into(canvas, _open(rng.choice(groups)), (0, 0, w, h))
    else:
        tile = (w // 3, h // 3)
        for i, path in enumerate(rng.sample(portraits, 9)):
            canvas.paste(_fill(_open(path), tile), ((i % 3) * tile[0], (i // 3) * tile[1]))
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=120)
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    portraits = sorted(p for p in (args.faces / "people").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    groups = sorted(p for p in (args.faces / "multi").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(portraits) < 9:
        raise SystemExit(f"need at least 9 portraits under {args.faces / 'people'}")
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    made = {kind: 0 for kind, _ in KINDS}
    for n in range(args.count):
        kind = rng.choices([k for k, _ in KINDS], [p for _, p in KINDS])[0]
        compose(kind, portraits, groups, rng).save(args.out / f"feed_{n:04d}_{kind}.jpg", quality=85)
        made[kind] += 1
    print(f"{args.count} photos of {SIZE[0]} x {SIZE[1]} in {args.out}: "
          + ", ".join(f"{v} {k}s" for k, v in made.items()))


if __name__ == "__main__":
    main()
