"""Figures for the notebooks. Every plotting function returns a matplotlib Figure (never shows it).

Use :func:`save` to write one as a PNG. Figures are made with ``matplotlib.figure.Figure``
directly, so they work without a display and do not pile up in pyplot's figure list. A function
that draws one panel takes ``ax=``: it then draws on that Axes and returns its figure.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from . import config
from .records import Box

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Region colours for the 68 landmarks (colour-blind safe, Okabe-Ito).
REGION_COLOURS = {
    "jaw": "#E69F00",
    "right_brow": "#56B4E9",
    "left_brow": "#56B4E9",
    "nose": "#009E73",
    "right_eye": "#0072B2",
    "left_eye": "#0072B2",
    "lips": "#D55E00",
}
#: Regions drawn as closed outlines.
_CLOSED = {"right_eye", "left_eye"}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    _show_figures_in_ipython()
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _panel(ax: Axes | None, width: float, height: float) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``width`` x ``height`` inches with one panel."""
    if ax is not None:
        return ax.get_figure(), ax
    fig = _figure(width, height)
    return fig, fig.add_subplot()


@functools.cache
def _show_figures_in_ipython() -> None:
    """Let IPython display a bare Figure as a PNG (pyplot would register this; we do not use pyplot)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from matplotlib.figure import Figure

    shell.display_formatter.formatters["image/png"].for_type(Figure, lambda fig: to_png(fig, dpi=90))


def save(fig, directory: str | Path, name: str, dpi: int = 110) -> Path:
    """Write ``fig`` to ``directory/name.png`` (folders made as needed) and return the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


def figures_dir(figures: str | Path | None, catalog) -> Path:
    """The folder for saved figures: ``figures`` if given, else ``<catalogue>/figures``."""
    return Path(figures) if figures is not None else Path(catalog.root) / "figures"


def to_png(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for ipywidgets.Image)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def _as_box(box) -> Box:
    if isinstance(box, Box):
        return box
    if hasattr(box, "get") and "left" in box:
        return Box(int(box["left"]), int(box["top"]), int(box["right"]), int(box["bottom"]))
    left, top, right, bottom = (int(v) for v in box)
    return Box(left, top, right, bottom)


def face_crop(image: np.ndarray | str | Path, box, size: int = 96, margin: float = 0.25) -> np.ndarray:
    """A square (size, size, 3) crop around a face box, ``margin`` of the box added on each side.

    Parts outside the photo are filled with grey, so faces at the edge stay centred.
    """
    from PIL import Image

    from .images import load_image

    if not isinstance(image, np.ndarray):
        image = load_image(image)
    b = _as_box(box)
    side = max(b.width, b.height) * (1 + 2 * margin)
    cx, cy = (b.left + b.right) / 2, (b.top + b.bottom) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(int(round(side)), 1)
    out = np.full((s, s, 3), 128, np.uint8)
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + s, w), min(y0 + s, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(out).resize((size, size), Image.Resampling.LANCZOS))


def _draw_landmarks(ax, landmarks: np.ndarray, size: float = 10, lines: bool = True) -> None:
    from .faces import REGIONS

    pts = np.asarray(landmarks)
    for region, (a, b) in REGIONS.items():
        colour = REGION_COLOURS[region]
        seg = pts[a:b]
        if lines:
            if region in _CLOSED:
                seg_line = np.vstack([seg, seg[:1]])
            elif region == "lips":  # outer lip 48-59 closed, inner 60-67 closed
                ax.plot(*np.vstack([pts[48:60], pts[48:49]]).T, color=colour, lw=1, alpha=0.8)
                seg_line = np.vstack([pts[60:68], pts[60:61]])
            else:
                seg_line = seg
            ax.plot(*seg_line.T, color=colour, lw=1, alpha=0.8)
        ax.scatter(*seg.T, s=size, color=colour, edgecolors="black", linewidths=0.3, zorder=3)


def _region_legend(ax) -> None:
    from matplotlib.lines import Line2D

    names = {"jaw": "jaw", "right_brow": "brows", "nose": "nose", "right_eye": "eyes", "lips": "lips"}
    handles = [Line2D([], [], marker="o", ls="", color=REGION_COLOURS[k], markeredgecolor="black",
                      markeredgewidth=0.3, label=v) for k, v in names.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9,
              title="landmarks", title_fontsize=9)


def landmarks(image: np.ndarray, faces: Iterable, title: str | None = None, width: float = 7.5,
              ax: Axes | None = None) -> Figure:
    """A photo with each face's detector box, score and 68 landmarks coloured by region.

    ``faces``: objects with ``box``, ``score`` and ``landmarks`` (:class:`~iffse_lib.records.Detection`,
    :class:`~iffse_lib.records.Face`) or rows of ``Catalog.faces()``.
    """
    faces = list(faces)
    h, w = image.shape[:2]
    fig, ax = _panel(ax, width, width * h / w * 0.82 + 0.4)
    ax.imshow(image)
    for i, f in enumerate(faces):
        box = _as_box(f.box if hasattr(f, "box") else f)
        score = float(f.score if hasattr(f, "score") else f["score"])
        lm = np.asarray(f.landmarks if hasattr(f, "landmarks") else f["landmarks"])
        ax.add_patch(_rect(box, "#F0E442", lw=2))
        ax.text(box.left, box.top - 3, f"#{i + 1}  score {score:.2f}", color="black", fontsize=9,
                va="bottom", bbox={"facecolor": "#F0E442", "edgecolor": "none", "pad": 1.5})
        dot = max(4.0, min(30.0, box.width / 12))
        _draw_landmarks(ax, lm, size=dot)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    _region_legend(ax)
    ax.set_title(title or f"{len(faces)} face{'s' if len(faces) != 1 else ''}: HOG boxes and 68 landmarks",
                 fontsize=11)
    return fig


def _rect(box: Box, colour: str, lw: float = 1.5):
    from matplotlib.patches import Rectangle

    return Rectangle((box.left, box.top), box.width, box.height, fill=False, edgecolor=colour, lw=lw)


def alignment_steps(image: np.ndarray, landmarks_: np.ndarray, box=None, title: str | None = None) -> Figure:
    """The alignment step by step: photo with landmarks -> dlib's 150 px chip -> the 96 px OpenFace crop.

    The three points OpenFace aligns on (outer eye corners, nose tip) are ringed in the photo and
    marked where its template puts them in the crop.
    """
    from . import faces

    lm = np.asarray(landmarks_, dtype=np.float32)
    chip = faces.face_chips(image, [lm])[0]
    crop = faces.openface_crop(image, lm)
    b = _as_box(box) if box is not None else Box(int(lm[:, 0].min()), int(lm[:, 1].min()),
                                                 int(lm[:, 0].max()) + 1, int(lm[:, 1].max()) + 1)
    view = face_crop(image, b, size=300, margin=0.45)
    # Landmarks in the coordinates of the zoomed view.
    side = max(b.width, b.height) * 1.9
    x0, y0 = (b.left + b.right) / 2 - side / 2, (b.top + b.bottom) / 2 - side / 2
    lm_view = (lm - [x0, y0]) * (300 / side)

    fig = _figure(10, 3.6 if title else 3.2)
    axes = fig.subplots(1, 4, width_ratios=[1.2, 1.2, 1, 1])
    axes[0].imshow(image)
    axes[0].add_patch(_rect(b, "#F0E442", lw=1.5))
    axes[0].set_title(f"photo {image.shape[1]}x{image.shape[0]}", fontsize=10)
    axes[1].imshow(view)
    _draw_landmarks(axes[1], lm_view, size=9)
    key = lm_view[list(faces.OPENFACE_LANDMARKS)]
    axes[1].scatter(*key.T, s=90, facecolors="none", edgecolors="white", linewidths=1.6, zorder=4)
    axes[1].set_title("68 landmarks\n(rings: OpenFace's 3 points)", fontsize=10)
    axes[2].imshow(chip)
    axes[2].set_title(f"dlib chip {chip.shape[1]} px\n(embedder input)", fontsize=10)
    axes[3].imshow(crop)
    tpl = faces.OPENFACE_TEMPLATE * crop.shape[0]
    axes[3].scatter(*tpl.T, s=40, facecolors="none", edgecolors="white", linewidths=1.2)
    axes[3].set_title(f"OpenFace crop {crop.shape[1]} px\n(IFFSE display)", fontsize=10)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _grid(n: int, ncols: int, cell: float, label_height: float = 0.35):
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig = _figure(ncols * cell, nrows * (cell + label_height) + 0.3)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes:
        ax.axis("off")
    return fig, axes


def _thumb(path: str | Path, size: int = 160) -> np.ndarray | None:
    from PIL import Image

    from .errors import BadImage
    from .images import open_image

    try:
        im = open_image(path)
    except BadImage:
        return None
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    return np.asarray(im)


def contact_sheet(paths: Sequence[str | Path], labels: Sequence[str] | None = None, ncols: int = 8,
                  cell: float = 1.35, title: str | None = None) -> Figure:
    """Photos as a grid of thumbnails, each with an optional label."""
    paths = list(paths)
    labels = list(labels) if labels is not None else None
    if not paths:
        raise ValueError("no photos to show")
    fig, axes = _grid(len(paths), ncols, cell)
    for i, path in enumerate(paths):
        thumb = _thumb(path)
        ax = axes[i]
        if thumb is None:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes, color="#D55E00")
        else:
            ax.imshow(thumb)
        if labels is not None:
            ax.set_title(display_name(str(labels[i]), 18), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def display_name(label, n: int | None = None) -> str:
    """A label as people read it: underscores as spaces (``Colin_Powell`` -> ``Colin Powell``), cut
    to ``n`` characters with "…"; "unknown" for a missing label."""
    text = str(label).replace("_", " ") if isinstance(label, str) and label else "unknown"
    return _short(text, n) if n else text


def detection_failures(catalog) -> pd.DataFrame:
    """Photos where detection failed, one row each: photo_id, path (None if never stored), label, kind.

    Kinds: ``no_face`` (the detector found none), a load error kind from ``images.load_image``, or
    a collect-time rejection (``empty``, ``not_image``, ``truncated`` …) of a file that was never stored.
    """
    import pandas as pd

    photos = catalog.photos()
    rows = []
    done = photos[photos["n_faces"].notna()]
    for _, p in done[(done["n_faces"] == 0)].iterrows():
        kind = p["detect_error"] if isinstance(p["detect_error"], str) else "no_face"
        rows.append({"photo_id": int(p["photo_id"]), "path": p["path"], "kind": kind,
                     "label": p["identity"] if isinstance(p["identity"], str) else p["source_id"]})
    errors = catalog.errors()
    rejected = errors[(errors["stage"] == "collect") & errors["photo_id"].isna()]
    for _, e in rejected.iterrows():
        rows.append({"photo_id": None, "path": None, "kind": e["kind"], "label": e["source_id"] or "?"})
    out = pd.DataFrame(rows, columns=["photo_id", "path", "kind", "label"])
    out.attrs["photos_detected"] = int(len(done))
    out.attrs["photos"] = int(len(photos))
    return out


def failure_page(failures, ncols: int = 6, max_photos: int = 30, cell: float = 1.7) -> Figure:
    """A page of the photos where detection failed, each with its failure kind.

    ``failures``: the DataFrame of :func:`detection_failures`. Files that were never stored (rejected
    when collected) are drawn as a grey tile naming the kind.
    """
    from matplotlib.patches import Rectangle

    if len(failures) == 0:
        fig = _figure(5, 1.2)
        ax = fig.add_subplot()
        ax.axis("off")
        if failures.attrs.get("photos_detected", 1) == 0:
            text = "no photo has been through detection yet: run notebook 03 or `iffse index`"
        else:
            text = "no failures: every photo has at least one detected face"
        ax.text(0.5, 0.5, text, ha="center", va="center")
        return fig
    shown = failures.head(max_photos)
    fig, axes = _grid(len(shown), ncols, cell, label_height=0.5)
    kinds = failures["kind"].value_counts()
    for ax, (_, row) in zip(axes, shown.iterrows()):
        thumb = _thumb(row["path"]) if isinstance(row["path"], str) else None
        if thumb is None:
            ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, color="#DDDDDD"))
            ax.text(0.5, 0.5, "not stored", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        else:
            ax.imshow(thumb)
        ax.set_title(f"{row['kind']}\n{display_name(str(row['label']), 20)}", fontsize=7,
                     color="#D55E00" if row["kind"] != "no_face" else "black")
    summary = ", ".join(f"{k}: {v}" for k, v in kinds.items())
    more = f" (first {len(shown)} shown)" if len(failures) > len(shown) else ""
    fig.suptitle(f"{len(failures)} photos without a usable face{more} — {summary}", fontsize=10)
    return fig


def distance_histograms(same: np.ndarray, different: np.ndarray, threshold: float = config.DEFAULT_THRESHOLD,
                        bins: int = 60, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Histograms of same-person and different-person distances, with the threshold drawn."""
    from .reduce import threshold_errors

    same, different = np.asarray(same), np.asarray(different)
    fig, ax = _panel(ax, 7.5, 3.8)
    hi = max(np.max(same, initial=0), np.max(different, initial=0), threshold) * 1.05
    edges = np.linspace(0, hi, bins + 1)
    ax.hist(different, bins=edges, density=True, alpha=0.6, color="#D55E00",
            label=f"different people ({len(different):,} pairs)")
    ax.hist(same, bins=edges, density=True, alpha=0.6, color="#0072B2", label=f"same person ({len(same):,} pairs)")
    err = threshold_errors(same, different, threshold)
    ax.axvline(threshold, color="black", ls="--", lw=1.2)
    ax.text(threshold, ax.get_ylim()[1] * 0.97,
            f" threshold {threshold:.2f}\n same rejected {err['false_reject']:.1%}\n"
            f" different accepted {err['false_accept']:.1%}", va="top", fontsize=8)
    ax.set_xlabel("euclidean distance between face vectors")
    ax.set_ylabel("density")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(title or "Distances: same person vs different people", fontsize=11)
    return fig


def stage_times(timings, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Milliseconds per photo for each stage (the DataFrame of :func:`iffse_lib.reduce.stage_timings`)."""
    a = timings.attrs
    fig, ax = _panel(ax, 7, 2.8)
    y = np.arange(len(timings))
    ax.barh(y, timings["ms_per_photo"], color="#0072B2")
    for yi, v in zip(y, timings["ms_per_photo"]):
        ax.text(v, yi, f" {v:.0f} ms", va="center", fontsize=8)
    ax.set_yticks(y, timings["stage"])
    ax.invert_yaxis()
    ax.set_xlabel("ms per photo")
    ax.margins(x=0.15)
    ax.set_title(title or (f"{a.get('photos_per_s', 0):.2f} photos/s, {a.get('faces_per_s', 0):.2f} faces/s "
                           f"({a.get('photos')} photos, {a.get('faces')} faces, {a.get('embedder')})"), fontsize=10)
    return fig


def recall_curve(recall, title: str | None = None, ax: Axes | None = None) -> Figure:
    """Annoy recall@k against exact search for each search_k (the DataFrame of ``reduce.index_recall``)."""
    fig, ax = _panel(ax, 6, 3.2)
    ax.plot(recall["search_k"], recall["recall"], "o-", color="#0072B2")
    for _, r in recall.iterrows():
        ax.annotate(f"{r['recall']:.3f}\n{r['ms_per_query']:.2f} ms", (r["search_k"], r["recall"]),
                    textcoords="offset points", xytext=(0, -24), ha="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("search_k (nodes inspected per query)")
    ax.set_ylabel(f"recall@{int(recall['k'].iloc[0])}")
    ax.set_ylim(min(0.9, recall["recall"].min() - 0.05), 1.01)
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_title(title or f"Annoy vs exact search (exact: {recall['exact_ms_per_query'].iloc[0]:.2f} ms/query)",
                 fontsize=10)
    return fig


_PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
            "#882255", "#44AA99", "#117733", "#999933"]


def _top_colours(identities: Sequence, top: int) -> tuple[np.ndarray, list[tuple[str, str, int]]]:
    import pandas as pd

    ident = pd.Series([i if isinstance(i, str) and i else "" for i in identities])
    counts = ident[ident != ""].value_counts()  # unlabelled faces stay grey
    names = list(counts.index[:min(top, len(_PALETTE))])
    colours = np.array(["#BBBBBB"] * len(ident), dtype=object)
    legend = []
    for name, colour in zip(names, _PALETTE):
        colours[(ident == name).to_numpy()] = colour
        legend.append((name, colour, int(counts[name])))
    return colours, legend


def umap_scatter(embedding: np.ndarray, identities: Sequence, top: int = 10, title: str | None = None,
                 ax: Axes | None = None) -> Figure:
    """The 2-D map coloured by the ``top`` most frequent identities; the rest grey."""
    from matplotlib.lines import Line2D

    emb = np.asarray(embedding)
    colours, legend = _top_colours(identities, top)
    grey = colours == "#BBBBBB"
    fig, ax = _panel(ax, 8.5, 6)
    ax.scatter(*emb[grey].T, s=6, c="#BBBBBB", alpha=0.6, linewidths=0, label="others")
    ax.scatter(*emb[~grey].T, s=22, c=list(colours[~grey]), edgecolors="black", linewidths=0.3, zorder=3)
    handles = [Line2D([], [], marker="o", ls="", color=c, markeredgecolor="black", markeredgewidth=0.3,
                      label=f"{display_name(n, 22)} ({k})") for n, c, k in legend]
    handles.append(Line2D([], [], marker="o", ls="", color="#BBBBBB", label=f"others ({int(grey.sum())})"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"UMAP of {len(emb):,} face vectors, the {len(legend)} most photographed people in colour",
                 fontsize=11)
    return fig


def umap_thumbnails(embedding: np.ndarray, faces, identities: Sequence | None = None, top: int = 10,
                    max_thumbs: int = 250, thumb_px: int = 32, seed: int = 0, title: str | None = None,
                    ax: Axes | None = None) -> Figure:
    """The 2-D map with face thumbnails drawn at their points (a spread-out sample of ``max_thumbs``).

    ``faces``: rows of ``Catalog.faces()`` in the order of ``embedding`` (path and box columns).
    With ``identities``, thumbnails of the ``top`` identities get a coloured frame.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from .images import load_image

    emb = np.asarray(embedding)
    faces = faces.reset_index(drop=True)
    colours = _top_colours(identities, top)[0] if identities is not None else None
    pick = _spread_sample(emb, max_thumbs, seed)
    fig, ax = _panel(ax, 11, 8.5)
    ax.scatter(*emb.T, s=4, c="#CCCCCC", linewidths=0)
    for i in pick:
        row = faces.iloc[i]
        thumb = face_crop(load_image(row["path"]), row, size=thumb_px * 2, margin=0.1)
        colour = colours[i] if colours is not None else "white"
        box = AnnotationBbox(OffsetImage(thumb, zoom=0.5), emb[i], frameon=True, pad=0.08,
                             bboxprops={"edgecolor": colour, "linewidth": 1.5 if colour != "#BBBBBB" else 0.5})
        ax.add_artist(box)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"UMAP with {len(pick)} of {len(emb):,} faces drawn at their points", fontsize=11)
    return fig


def _spread_sample(emb: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` points spread over the map: farthest-point sampling from a random start."""
    m = len(emb)
    if m <= n:
        return np.arange(m)
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(m))]
    d = np.linalg.norm(emb - emb[chosen[0]], axis=1)
    for _ in range(n - 1):
        nxt = int(np.argmax(d))
        chosen.append(nxt)
        d = np.minimum(d, np.linalg.norm(emb - emb[nxt], axis=1))
    return np.array(chosen)


def cluster_gallery(faces, labels: Sequence[int], n_clusters: int = 8, per_cluster: int = 8,
                    title: str | None = None) -> Figure:
    """The largest clusters, one row each: sample faces labelled with their identity."""
    import pandas as pd

    labels = np.asarray(labels)
    faces = faces.reset_index(drop=True)
    sizes = pd.Series(labels).value_counts()
    top = [c for c in sizes.index if sizes[c] > 1][:n_clusters]
    if not top:
        raise ValueError("every cluster is a singleton")
    fig, axes = _grid(len(top) * per_cluster, per_cluster, 1.1, label_height=0.25)
    axes = axes.reshape(len(top), per_cluster)
    for r, c in enumerate(top):
        members = np.flatnonzero(labels == c)
        ident = faces.loc[members, "identity"]
        named = ident[[isinstance(i, str) for i in ident]]
        majority = named.value_counts().index[0] if len(named) else None
        for j, i in enumerate(members[:per_cluster]):
            row = faces.iloc[i]
            axes[r, j].imshow(face_crop(row["path"], row, size=80, margin=0.1))
            known = isinstance(row["identity"], str)
            axes[r, j].set_title(display_name(row["identity"], 16), fontsize=6,
                                 color="grey" if not known else "black" if row["identity"] == majority else "#D55E00")
        axes[r, 0].text(-0.1, 0.5, f"{sizes[c]} faces", transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=7)
    fig.suptitle(title or f"The {len(top)} largest clusters (red names: not the cluster's majority person; grey: unlabelled)",
                 fontsize=10)
    return fig


def results_grid(matches, query: np.ndarray | None = None, threshold: float | None = None, ncols: int = 6,
                 title: str | None = None) -> Figure:
    """Search results as face thumbnails with rank, distance and identity; the query face first.

    ``matches``: a DataFrame from ``Searcher.search`` / ``search_face``. With ``threshold``,
    matches farther than it are framed in grey (green otherwise).
    """
    n = len(matches) + (query is not None)
    if n == 0:
        raise ValueError("no matches to show")
    fig, axes = _grid(n, ncols, 1.6, label_height=0.45)
    k = 0
    if query is not None:
        axes[0].imshow(query)
        axes[0].set_title("query", fontsize=8, fontweight="bold")
        k = 1
    for ax, (_, m) in zip(axes[k:], matches.iterrows()):
        ax.imshow(face_crop(m["path"], m, size=120, margin=0.15))
        near = threshold is None or m["distance"] <= threshold
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor("#009E73" if near else "#999999")
            spine.set_linewidth(3)
        ax.set_title(f"{int(m['rank'])}. {m['distance']:.3f}\n{display_name(m['identity'], 20)}",
                     fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
