"""04-umap-clusters in JupyterLab, in headless Chromium (Playwright): the UMAP explorer on ipympl's
canvas answers a real pointer. The test finds a point of the most photographed person by its
colour in the canvas's pixels, moves the mouse there, reads the side panel, clicks, and waits for
the lookalike search below the map to show that person's faces, then draws a lasso around them. Shares tools/lab_browser.py with
tests/test_browser.py; a screenshot goes to test-artifacts/."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import lab_browser  # tools/, on the path through pyproject's [tool.pytest.ini_options] pythonpath

from conftest import lab_on_copies

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.browser

#: the first colour of plots' palette: the most photographed person on the map
FIRST = (0x00, 0x72, 0xB2)


@pytest.fixture
def lab(people_catalog, tmp_path):
    with lab_on_copies(people_catalog, "04-umap-clusters.ipynb", tmp_path) as running:
        yield running


def test_hover_and_click_on_the_umap_map_in_jupyterlab(lab, people_catalog):
    person = people_catalog.faces()["identity"].value_counts().index[0]
    ARTIFACTS.mkdir(exist_ok=True)
    with lab_browser.chromium() as (page, errors):
        lab_browser.open_notebook(page, lab, "04-umap-clusters.ipynb")
        canvas = page.locator(".iffse-umap .jupyter-matplotlib-canvas-div canvas").first
        lab_browser.run_all_cells(page, canvas, timeout=420)
        assert lab_browser.cell_errors(page) == []
        canvas.scroll_into_view_if_needed()
        spots = lab_browser.colour_spots(canvas, FIRST)  # once the figure has arrived
        x, y = min(spots)  # the map's dots lie left of the legend, whose markers share the colour
        panel = page.locator(".iffse-umap-hover")
        page.mouse.move(x - 20, y - 20)
        page.mouse.move(x, y, steps=4)
        page.wait_for_function("el => el.textContent.trim().length > 0", arg=panel.element_handle(), timeout=30_000)
        text = panel.inner_text()
        assert person.replace("_", " ") in text and "cluster" in text, text
        sizes = lab_browser.wait_for_images(page, ".iffse-umap img", timeout=30)
        assert any(w > 0 and h > 0 for w, h in sizes), sizes
        page.mouse.click(x, y)
        thumbs = lab_browser.wait_for_images(page, ".iffse-lookalikes .iffse-results img", timeout=60)
        labels = page.locator(".iffse-results .widget-html-content").all_text_contents()
        # The lasso: a circle of 60 px around the point, drawn with the mouse.
        page.locator(".iffse-umap .widget-toggle-button", has_text="lasso").click()
        ring = [(x + 60 * math.cos(a / 12 * math.pi), y + 60 * math.sin(a / 12 * math.pi)) for a in range(25)]
        page.mouse.move(*ring[0])
        page.mouse.down()
        for point in ring[1:]:
            page.mouse.move(*point, steps=2)
        page.mouse.up()
        selected = page.locator(".iffse-umap-selection")
        page.wait_for_function("el => el.textContent.includes('selected')", arg=selected.element_handle(), timeout=30_000)
        selection = selected.inner_text()
        page.screenshot(path=str(ARTIFACTS / "04-umap-explorer.png"), full_page=False)
    assert thumbs and all(w > 0 and h > 0 for w, h in thumbs), thumbs
    assert person.replace("_", " ") in labels[0], labels
    assert "faces selected" in selection and f"{person.replace('_', ' ')}:" in selection, selection
    assert not errors, errors
