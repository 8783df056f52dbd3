"""Response time of each widget interaction on a catalogue (target: 1 s or less), the way the
browser drives them: a trait set from Python runs the same callbacks a click or a keystroke runs.

    python benchmarks/interactions.py [--data data] [--repeat 5]

On the demo catalogue (`make demo`: the LFW subset, 2,515 photos, 2,668 faces). The UMAP map's
rows (notebook 04) also time hover and lasso on 10,000 points. Each interaction
is timed ``--repeat`` times on different faces after one warm-up (models and index loaded, as
in a notebook that has run); prints the median and the worst, and whether the median is within
the target. Building each widget is timed too (once: it is not an interaction). The load average
before and after is printed too: on cores that other work shares, the times grow with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from iffse_lib.catalog import Catalog

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TARGET_S = 1.0


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from iffse_lib import widgets
    from iffse_lib.widgets_compare import FaceCompare

    load_before = os.getloadavg()
    cat = Catalog(args.data, readonly=True)
    rows: list[tuple[str, list[float]]] = []
    built: list[tuple[str, float]] = []

    t = time.perf_counter()
    search = widgets.LookalikeSearch(cat)
    built.append(("lookalike search", time.perf_counter() - t))
    labels = list(search.face_labels)
    picks = labels[:: max(1, len(labels) // (args.repeat + 1))][: args.repeat + 1]
    search.pick.value = picks[0]  # warm-up: embedder, index
    rows.append(("search: pick a face in the combobox",
                 [timed(lambda p=p: setattr(search.pick, "value", p)) for p in picks[1:]]))
    rows.append(("search: k slider", [timed(lambda k=k: setattr(search.k, "value", k)) for k in range(3, 3 + args.repeat)]))
    rows.append(("search: max-distance slider",
                 [timed(lambda v=v: setattr(search.threshold, "value", v)) for v in (0.5, 0.55, 0.6, 0.65, 0.7)[:args.repeat]]))
    photo = SHARED / "faces" / "multi" / "facerec_obama_and_biden.jpg"
    if photo.exists():
        data = photo.read_bytes()
        search.search_bytes(data, photo.name)
        rows.append(("search: upload a photo with two faces", [timed(lambda: search.search_bytes(data, photo.name))
                                                               for _ in range(args.repeat)]))
        rows.append(("search: choose the other face", [timed(lambda i=i: search.choose_face(i % 2))
                                                       for i in range(1, args.repeat + 1)]))

    t = time.perf_counter()
    browser = widgets.LandmarkBrowser(cat)
    built.append(("landmark browser", time.perf_counter() - t))
    n = len(browser.photos)
    rows.append(("landmarks: slider to another photo",
                 [timed(lambda i=i: setattr(browser.slider, "value", 1 + (i * 397) % n)) for i in range(1, args.repeat + 1)]))
    browser.toggle.value = True
    rows.append(("landmarks: alignment steps",
                 [timed(lambda i=i: setattr(browser.slider, "value", 1 + (i * 211) % n)) for i in range(1, args.repeat + 1)]))

    t = time.perf_counter()
    cmp = FaceCompare(cat)
    built.append(("face compare", time.perf_counter() - t))
    cmp.pick_a.value, cmp.pick_b.value = picks[0], picks[1]  # warm-up
    # One interaction: another face B picked (face A stays).
    rows.append(("compare: pick another face B",
                 [timed(lambda p=p: setattr(cmp.pick_b, "value", p)) for p in picks[2:] + picks[:1]][:args.repeat]))
    rows.append(("compare: tick the occlusion map", [timed(lambda: setattr(cmp.occlusion, "value", True))]))
    rows.append(("compare: pick another face B, occlusion map on",
                 [timed(lambda p=p: setattr(cmp.pick_b, "value", p)) for p in picks[1:]][:args.repeat]))

    umap_rows(cat, search, rows, built, args.repeat)

    print(f"catalogue {cat.root}: {cat.counts()['photos']:,} photos, {cat.counts()['faces']:,} faces")
    print(f"{os.cpu_count()} cores; load average (1, 5, 15 min) before {_load(load_before)}, after {_load(os.getloadavg())}")
    for name, s in built:
        print(f"  build {name:<36} {s:7.2f} s")
    print(f"{'interaction':<44} {'median':>8} {'worst':>8}  target {TARGET_S:.1f} s")
    for name, times in rows:
        med = statistics.median(times)
        print(f"{name:<44} {med:8.3f} {max(times):8.3f}  {'ok' if med <= TARGET_S else 'SLOWER'}")


def umap_rows(cat, search, rows, built, repeat: int) -> None:
    """The UMAP map of notebook 04: hover, click (opens the lookalike search) and lasso, on the
    catalogue, then hover and lasso on 10,000 points (its faces repeated at random places).

    Without a kernel the map is a static PNG: click and lasso times include redrawing it at 80 dpi.
    On ipympl's canvas (JupyterLab) the handler returns first and the redraw follows when the browser
    asks for it: the last rows time the two apart. Hover redraws nothing."""
    import numpy as np

    from iffse_lib import reduce
    from iffse_lib.widgets_umap import UmapExplorer

    model = search.searcher.index.model_tag
    faces = cat.faces(model)
    ids, vectors = cat.vectors(model)
    faces = faces.set_index("face_id").loc[ids].reset_index()
    identities = faces["identity"].to_numpy()
    t = time.perf_counter()
    embedding = reduce.umap_2d(vectors, seed=0)
    labels = reduce.chinese_whispers(vectors, seed=0)
    built.append(("UMAP and clusters (notebook 04 has them)", time.perf_counter() - t))
    t = time.perf_counter()
    ex = UmapExplorer(embedding, faces, identities, labels, on_pick=search.search_face, below=search.widget)
    built.append(("UMAP explorer", time.perf_counter() - t))
    n = len(embedding)
    points = [embedding[(i * 397) % n] for i in range(repeat + 1)]
    ex.hover_at(*points[0])  # warm-up
    rows.append(("umap: hover a face (photo read, thumbnail)",
                 [timed(lambda p=p: (ex.hover_at(*p), ex._thumbs.clear())) for p in points[1:]]))
    for p in points[::-1]:  # thumbnails made once, as after a first pass of the pointer
        ex.hover_at(*p)
    rows.append(("umap: hover a face seen before", [timed(lambda p=p: ex.hover_at(*p)) for p in points[1:]]))
    rows.append(("umap: click a face, search its lookalikes", [timed(lambda p=p: ex.click_at(*p)) for p in points[1:]]))
    rows.append(("umap: lasso a region", [timed(lambda i=i: ex.select_polygon(_region(embedding, i)))
                                          for i in range(repeat)]))

    big = 10_000
    rng = np.random.default_rng(0)
    pick = rng.integers(0, n, big)
    spread = embedding[pick] + rng.normal(0, embedding.std(0) * 0.3, (big, 2)).astype(np.float32)
    t = time.perf_counter()
    ex = UmapExplorer(spread, faces.iloc[pick], identities[pick], labels[pick])
    built.append((f"UMAP explorer of {big:,} points", time.perf_counter() - t))
    points = [spread[(i * 397) % big] for i in range(repeat + 1)]
    for p in points[::-1]:
        ex.hover_at(*p)
    rows.append((f"umap {big:,}: hover a face seen before", [timed(lambda p=p: ex.hover_at(*p)) for p in points[1:]]))
    rows.append((f"umap {big:,}: nearest-point search alone",
                 [timed(lambda p=p: ex.nearest(*p)) for p in points[1:]]))
    rows.append((f"umap {big:,}: lasso a region", [timed(lambda i=i: ex.select_polygon(_region(spread, i)))
                                                  for i in range(repeat)]))
    try:  # on ipympl's canvas the handler returns at once; the browser asks for the new image after
        ex = UmapExplorer(spread, faces.iloc[pick], identities[pick], labels[pick], interactive=True)
    except ImportError:
        return
    rows.append((f"umap {big:,}: lasso, ipympl (redraw follows)",
                 [timed(lambda i=i: ex.select_polygon(_region(spread, i))) for i in range(repeat)]))
    rows.append((f"umap {big:,}: the redraw that follows (Agg)", [timed(ex.canvas.draw) for _ in range(repeat)]))


def _load(avg) -> str:
    return ", ".join(f"{x:.1f}" for x in avg)


def _region(embedding, i: int):
    """A 40-gon around a fifth of the map, centred on a different point each time."""
    import numpy as np

    centre = embedding[(i * 211) % len(embedding)]
    radius = 0.2 * float(np.ptp(embedding, axis=0).max())
    a = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    return centre + radius * np.c_[np.cos(a), np.sin(a)]


if __name__ == "__main__":
    main()
