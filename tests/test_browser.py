"""05-search-lookalikes in JupyterLab, driven in headless Chromium by Playwright.

The suite starts JupyterLab on 127.0.0.1 (a free port, a random token) over a temporary folder
holding a copy of the notebook; the kernel reads IFFSE_DATA, pointing at a copy of the people
catalogue, so the notebook's DATA_DIR = None finds it. The test runs all cells, picks a face in
the widget, waits for the result thumbnails and checks that the browser decoded them. A screenshot
goes to test-artifacts/. Starting JupyterLab and Chromium is shared with tools/screenshots.py
(the README's pictures, `make screenshots`) in tools/lab_browser.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import lab_browser  # tools/, on the path through pyproject's [tool.pytest.ini_options] pythonpath

from conftest import lab_on_copies

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture
def lab(people_catalog, tmp_path):
    with lab_on_copies(people_catalog, "05-search-lookalikes.ipynb", tmp_path) as running:
        yield running


def test_search_notebook_runs_in_jupyterlab_and_shows_result_thumbnails(lab, people_catalog):
    faces = people_catalog.faces()
    pick = faces[faces["identity"] == "obama"].iloc[0]
    ARTIFACTS.mkdir(exist_ok=True)
    with lab_browser.chromium() as (page, errors):
        lab_browser.open_notebook(page, lab, "05-search-lookalikes.ipynb")
        # Run all cells; the widget appears once every cell ran (it is the last one).
        combo = page.locator(".iffse-lookalikes input[list]")
        lab_browser.run_all_cells(page, combo)
        combo.scroll_into_view_if_needed()
        assert lab_browser.cell_errors(page) == []
        # The notebook's own search (QUERY_PHOTO = None) drew its figure.
        assert page.locator(".jp-RenderedImage img").count() >= 1
        # Pick a catalogued face of Obama in the combobox: its list holds every face, by name.
        options = combo.evaluate("e => [...e.list.options].map(o => o.value)")
        assert len(options) == len(faces)
        label = next(o for o in options if o.startswith(f"obama (photo {pick['photo_id']},"))
        combo.fill(label)
        combo.press("Enter")
        sizes = lab_browser.wait_for_images(page, ".iffse-results img", timeout=60)
        labels = page.locator(".iffse-results .widget-html-content").all_text_contents()
        message = page.locator(".iffse-message").first.text_content()
        lab_browser.tidy_for_screenshot(page)
        page.locator(".iffse-results").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "05-search-lookalikes.png"))
    assert len(sizes) >= 3, sizes
    assert all(w > 0 and h > 0 for w, h in sizes), f"thumbnails that did not render: {sizes}"
    assert "obama" in labels[0], labels
    assert "matches within distance" in message
    assert not errors, errors


def test_the_driver_stops_at_a_failed_cell_with_its_traceback(tmp_path):
    """JupyterLab 4.6 shows a traceback as stderr text: the driver tells it from other stderr
    output and raises with it at once, instead of waiting for the last cell until the timeout."""
    import time

    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('import sys, warnings\nprint("a line on stderr", file=sys.stderr)\n'
                                  'warnings.warn("a warning is not a failure")'),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell('raise ValueError("this cell fails on purpose")'),
        nbformat.v4.new_code_cell("y = 2"),
    ], metadata={"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}})
    work = tmp_path / "lab"
    work.mkdir()
    nbformat.write(nb, work / "fails.ipynb")
    with lab_browser.jupyter_lab(work, tmp_path / "jupyter") as running, lab_browser.chromium() as (page, errors):
        lab_browser.open_notebook(page, running, "fails.ipynb")
        t = time.monotonic()
        with pytest.raises(RuntimeError, match="ValueError: this cell fails on purpose") as failed:
            lab_browser.run_all_cells(page, timeout=180)
        assert time.monotonic() - t < 150  # raised at the failure, not at the timeout
        assert "a line on stderr" not in str(failed.value) and "a warning" not in str(failed.value)
        assert len(lab_browser.cell_errors(page)) == 1
