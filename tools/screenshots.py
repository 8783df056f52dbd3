"""The README's screenshots: notebooks 02, 04 and 05 run in JupyterLab, in headless Chromium.

    python tools/screenshots.py [--data DIR] [--out docs] [--only 02 04 05]     (make screenshots)

JupyterLab starts on 127.0.0.1 with a temporary token over a temporary copy of the notebooks
(the repository's stay without outputs), with ``IFFSE_DATA=DIR``, so each notebook's
``DATA_DIR = None`` reads that catalogue (default: the project's data/, which `make demo` fills;
the notebooks save their figures under DIR/figures as usual). Each notebook is opened in headless
Chromium (Debian's /usr/bin/chromium, see tools/lab_browser.py), all its cells are run, and once
its figures have loaded the page is scrolled to a representative one and saved as
``<out>/<notebook>.png``:

02-landmarks          the 68 landmarks coloured by region over a detected face
04-umap-clusters      the UMAP map coloured by identity (the thumbnail map below it)
05-search-lookalikes  the interactive search: a face of the most photographed person picked in
                      the dropdown, and the grid of its nearest faces

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

#: notebook -> the code (a unique piece of its cell) whose output the screenshot shows.
SHOTS = {
    "02-landmarks": "plots.landmarks(image, found)",
    "04-umap-clusters": "plots.umap_scatter(",
    "05-search-lookalikes": "widgets.LookalikeSearch(",
}


def _scroll_to_cell(page, code: str) -> float:
    """Scroll the cell holding ``code`` to the top of the notebook; return the page y at which
    its first figure (else its output) ends."""
    cell = page.locator(".jp-Notebook .jp-CodeCell", has_text=code)
    if cell.count() != 1:
        raise RuntimeError(f"expected one cell with {code!r}, found {cell.count()}")
    cell.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    figure = cell.locator(".jp-RenderedImage")
    box = (figure if figure.count() else cell.locator(".jp-OutputArea")).first.bounding_box()
    return box["y"] + box["height"]


def _pick_most_photographed(page) -> str:
    """Pick, in the lookalike widget's dropdown, the first face of the person with most faces."""
    select = page.locator(".iffse-lookalikes select")
    select.locator("option").nth(1).wait_for(state="attached", timeout=60_000)  # the widget has rendered
    values = select.locator("option").evaluate_all("els => els.map(e => e.value)")  # text has &nbsp;
    labels = [t for t in values if " (photo " in t]
    if not labels:
        raise RuntimeError("the lookalike widget lists no catalogued faces")
    name = collections.Counter(t.split(" (photo ")[0] for t in labels).most_common(1)[0][0]
    label = next(t for t in labels if t.startswith(f"{name} (photo "))
    select.select_option(value=label)
    sizes = lab_browser.wait_for_images(page, ".iffse-results img", timeout=60)
    if not sizes or not all(w > 0 and h > 0 for w, h in sizes):
        raise RuntimeError(f"the result thumbnails did not render: {sizes}")
    return label


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


def take(page, lab, name: str, out: Path, max_kb: int) -> Path:
    t0 = time.perf_counter()
    lab_browser.open_notebook(page, lab, f"{name}.ipynb")
    lab_browser.run_all_cells(page, timeout=600)
    sizes = lab_browser.wait_for_images(page, FIGURES, timeout=60)
    if not all(w > 0 and h > 0 for w, h in sizes):
        raise RuntimeError(f"{name}: figures that did not render: {sizes}")
    detail = f"{len(sizes)} figures"
    if name == "05-search-lookalikes":
        detail += f"; picked {_pick_most_photographed(page)!r}"
    lab_browser.tidy_for_screenshot(page)
    bottom = _scroll_to_cell(page, SHOTS[name])
    # From the top of the window to the end of the figure (or widget) the picture is about.
    viewport = page.viewport_size
    clip = {"x": 0, "y": 0, "width": viewport["width"], "height": min(viewport["height"], round(bottom) + 12)}
    path = out / f"{name}.png"
    n = _save(page.screenshot(clip=clip), path, max_kb)
    print(f"{path}: {n / 1024:.0f} KB ({detail}; {time.perf_counter() - t0:.0f} s)", flush=True)
    return path


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
