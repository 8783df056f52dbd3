"""The README's screenshots: notebooks 02, 04 and 05 run in JupyterLab, in headless Chromium.

    python tools/screenshots.py [--data DIR] [--out docs] [--only 02 04 05]     (make screenshots)

JupyterLab starts on 127.0.0.1 with a temporary token over a temporary copy of the notebooks
(the repository's stay without outputs), with ``IFFSE_DATA=DIR``, so each notebook's
``DATA_DIR = None`` reads that catalogue (default: the project's data/, which `make demo` fills;
the notebooks save their figures under DIR/figures as usual). Each notebook is opened in headless
Chromium (Debian's /usr/bin/chromium, see tools/lab_browser.py), all its cells are run, and once
its figures have loaded the page is scrolled to a representative one (or a widget is used, as
a person would) and saved as ``<out>/<name>.png``:

02-landmarks          the 68 landmarks coloured by region over a detected face
04-umap-clusters      the UMAP map coloured by identity (the thumbnail map below it)
04-cluster-browser    the cluster browser on the largest cluster: its faces, majority, purity,
                      and where its person splits
04-umap-explorer      the map you can point at, the pointer over a face of the most photographed
                      person: the side panel shows that face, its name and cluster
05-search-lookalikes  the interactive search: a face of the most photographed person picked in
                      the combobox, and the grid of its nearest faces
05-compare            the compare widget: two faces of the most photographed person picked, the
                      occlusion map on

Each picture runs from the top of the window to the end of that figure (or widget); one over
``--max-kb`` is stored with a 256-colour palette. A cell that fails, a figure
that does not load or a result grid that stays empty stops the script with an error.
"""

from __future__ import annotations

import argparse
import collections
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lab_browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
FIGURES = ".jp-RenderedImage img"  # the figures (PNG outputs), not images inside widgets

#: the first colour of plots' palette: the most photographed person on the UMAP map
FIRST = (0x00, 0x72, 0xB2)


def _scroll_to_cell(page, code: str, inside: str = ".jp-RenderedImage") -> float:
    """Scroll the cell holding ``code`` to the top of the notebook; return the page y at which
    the first ``inside`` element of its output (a figure, a widget's part; else its output) ends."""
    cell = page.locator(".jp-Notebook .jp-CodeCell", has_text=code)
    if cell.count() != 1:
        raise RuntimeError(f"expected one cell with {code!r}, found {cell.count()}")
    cell.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    part = cell.locator(inside)
    box = (part if part.count() else cell.locator(".jp-OutputArea")).first.bounding_box()
    return box["y"] + box["height"]


def _most_photographed(combo) -> list[str]:
    """The labels of a face combobox (``input[list]``) that name the person with most faces."""
    values = combo.evaluate("e => [...e.list.options].map(o => o.value)")
    labels = [t for t in values if " (photo " in t]
    if not labels:
        raise RuntimeError("the combobox lists no catalogued faces")
    name = collections.Counter(t.split(" (photo ")[0] for t in labels).most_common(1)[0][0]
    return [t for t in labels if t.startswith(f"{name} (photo ")]


def _choose(combo, label: str) -> None:
    """Type a label into a combobox and confirm it, as a person picks from its list."""
    combo.fill(label)
    combo.press("Enter")


def _search_shot(page) -> tuple[float, str]:
    """05: pick, in the lookalike widget's combobox, the first face of the person with most faces."""
    combo = page.locator(".iffse-lookalikes input[list]")
    label = _most_photographed(combo)[0]
    _choose(combo, label)
    sizes = lab_browser.wait_for_images(page, ".iffse-results img", timeout=60)
    if not sizes or not all(w > 0 and h > 0 for w, h in sizes):
        raise RuntimeError(f"the result thumbnails did not render: {sizes}")
    return _scroll_to_cell(page, "widgets.LookalikeSearch("), f"picked {label!r}"


def _compare_shot(page) -> tuple[float, str]:
    """05: the occlusion map ticked, then two faces of the person with most faces picked."""
    widget = page.locator(".iffse-compare")
    widget.locator("input[type=checkbox]").check()
    combos = widget.locator("input[list]")
    a, b = _most_photographed(combos.nth(0))[:2]
    _choose(combos.nth(0), a)
    _choose(combos.nth(1), b)
    page.wait_for_function("el => el.textContent.includes('distance')",
                           arg=widget.locator(".widget-html-content").first.element_handle(), timeout=60_000)
    sizes = lab_browser.wait_for_images(page, ".iffse-compare img", timeout=60)
    if not all(w > 600 and h > 0 for w, h in sizes):
        raise RuntimeError(f"the comparison did not render: {sizes}")
    return _scroll_to_cell(page, "widgets_compare.FaceCompare(", ".iffse-compare"), f"compared {a!r} and {b!r}"


def _clusters_shot(page) -> tuple[float, str]:
    """04: the cluster browser as it opens, on the largest cluster."""
    sizes = lab_browser.wait_for_images(page, ".iffse-clusters img", timeout=60)
    if not all(w > 0 and h > 0 for w, h in sizes):
        raise RuntimeError(f"the cluster page did not render: {sizes}")
    info = page.locator(".iffse-clusters .widget-html-content").first.inner_text()
    return _scroll_to_cell(page, "widgets_clusters.ClusterBrowser(", ".iffse-clusters"), info.splitlines()[0]


def _explorer_shot(page) -> tuple[float, str]:
    """04: the pointer over a dot of the most photographed person on the explorer's map."""
    bottom = _scroll_to_cell(page, "widgets_umap.umap_explorer(", ".iffse-umap .jupyter-matplotlib-canvas-div")
    canvas = page.locator(".iffse-umap .jupyter-matplotlib-canvas-div canvas").first
    x, y = min(lab_browser.colour_spots(canvas, FIRST))  # the legend's markers lie right of the dots
    panel = page.locator(".iffse-umap-hover")
    page.mouse.move(x - 20, y - 20)
    page.mouse.move(x, y, steps=4)
    page.wait_for_function("el => el.textContent.trim().length > 0", arg=panel.element_handle(), timeout=30_000)
    sizes = lab_browser.wait_for_images(page, ".iffse-umap img", timeout=30)
    if not any(w > 0 and h > 0 for w, h in sizes):
        raise RuntimeError(f"the hovered face did not render: {sizes}")
    page.wait_for_timeout(500)
    return bottom, "hover: " + " ".join(panel.inner_text().split())


#: notebook -> its pictures: (file name, what to do, returning the page y the picture ends at and
#: what it shows). The figure shots scroll to the cell holding that code.
SHOTS = {
    "02-landmarks": [("02-landmarks", lambda page: (_scroll_to_cell(page, "plots.landmarks(image, found)"), ""))],
    "04-umap-clusters": [
        ("04-umap-clusters", lambda page: (_scroll_to_cell(page, "plots.umap_scatter("), "")),
        ("04-cluster-browser", _clusters_shot),
        ("04-umap-explorer", _explorer_shot),
    ],
    "05-search-lookalikes": [("05-search-lookalikes", _search_shot), ("05-compare", _compare_shot)],
}


def _save(png: bytes, path: Path, max_kb: int) -> int:
    """Write the screenshot, recompressed; with a 256-colour palette if it is still over ``max_kb``
    (octree keeps the plots' few saturated colours apart; photos get dithered)."""
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    for reduce in (lambda im: im, lambda im: im.quantize(256, method=Image.Quantize.FASTOCTREE)):
        out = io.BytesIO()
        reduce(im).save(out, "PNG", optimize=True)
        if len(out.getvalue()) <= max_kb * 1024:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())
    return len(out.getvalue())


def take(page, lab, name: str, out: Path, max_kb: int) -> list[Path]:
    t0 = time.perf_counter()
    lab_browser.open_notebook(page, lab, f"{name}.ipynb")
    lab_browser.run_all_cells(page, timeout=600)
    sizes = lab_browser.wait_for_images(page, FIGURES, timeout=60)
    if not all(w > 0 and h > 0 for w, h in sizes):
        raise RuntimeError(f"{name}: figures that did not render: {sizes}")
    lab_browser.tidy_for_screenshot(page)
    paths = []
    for picture, shoot in SHOTS[name]:
        bottom, detail = shoot(page)
        # From the top of the window to the end of the figure (or widget) the picture is about.
        viewport = page.viewport_size
        clip = {"x": 0, "y": 0, "width": viewport["width"], "height": min(viewport["height"], round(bottom) + 12)}
        path = out / f"{picture}.png"
        n = _save(page.screenshot(clip=clip), path, max_kb)
        print(f"{path}: {n / 1024:.0f} KB ({len(sizes)} figures{'; ' + detail if detail else ''}; "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data", help="the catalogue (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go (default: %(default)s)")
    ap.add_argument("--only", nargs="+", choices=sorted(SHOTS), metavar="NOTEBOOK",
                    help=f"some of {', '.join(SHOTS)} (default: all)")
    ap.add_argument("--max-kb", type=int, default=400, help="larger pictures get a 256-colour palette")
    args = ap.parse_args(argv)
    data = args.data.resolve()
    if not (data / "catalog.sqlite").exists():
        print(f"{data} holds no catalogue: run `make demo` (or pass --data)", file=sys.stderr)
        return 1
    names = args.only or list(SHOTS)
    with tempfile.TemporaryDirectory(prefix="iffse-shots-") as tmp:
        work = Path(tmp) / "notebooks"
        work.mkdir()
        for name in names:
            shutil.copy(NOTEBOOKS / f"{name}.ipynb", work)
        try:
            with lab_browser.jupyter_lab(work, Path(tmp) / "lab", env={"IFFSE_DATA": str(data)}) as lab, \
                    lab_browser.chromium() as (page, errors):
                for name in names:
                    take(page, lab, name, args.out.resolve(), args.max_kb)
                if errors:
                    raise RuntimeError(f"JavaScript errors in the page: {errors}")
        except (lab_browser.BrowserMissing, RuntimeError, TimeoutError) as exc:
            print(f"screenshots: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
