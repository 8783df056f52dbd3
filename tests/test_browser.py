"""05-search-lookalikes in JupyterLab, driven in headless Chromium by Playwright.

The suite starts JupyterLab on 127.0.0.1 (a free port, a random token) over a temporary folder
holding a copy of the notebook; the kernel reads IFFSE_DATA, pointing at a copy of the people
catalogue, so the notebook's DATA_DIR = None finds it. The test runs all cells, picks a face in
the widget, waits for the result thumbnails and checks that the browser decoded them. A screenshot
goes to test-artifacts/ (IFFSE_UPDATE_DOCS=1 also copies it to docs/ for the README).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("IFFSE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_all_cells(page, until, timeout: float = 180.0) -> None:
    """Run > Run All Cells once the kernel is ready, until ``until`` is in the page.

    JupyterLab may first ask which kernel to start; the dialog is accepted (the notebook's own
    kernel is preselected) and the cells are run again, since a run issued before the kernel
    started does nothing.
    """
    select_kernel = page.locator(".jp-Dialog .jp-mod-accept")
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    deadline = time.monotonic() + timeout
    ran = False
    while until.count() == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{until} did not appear within {timeout} s")
        if select_kernel.count():
            select_kernel.first.click()
            ran = False
        elif not ran and idle.count():
            page.wait_for_timeout(1000)  # a kernel dialog may still be on its way
            if select_kernel.count():
                continue
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            ran = True
        page.wait_for_timeout(500)


@pytest.fixture
def lab(people_catalog, tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)")
    data = tmp_path / "data"
    shutil.copytree(people_catalog.root, data)
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "05-search-lookalikes.ipynb", work)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, IFFSE_DATA=str(data), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"), PYTHONUNBUFFERED="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--ServerApp.port_retries=0",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url, token, data
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_search_notebook_runs_in_jupyterlab_and_shows_result_thumbnails(lab, people_catalog):
    from playwright.sync_api import sync_playwright

    url, token, data = lab
    faces = people_catalog.faces()
    pick = faces[faces["identity"] == "obama"].iloc[0]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(f"{url}/lab/tree/05-search-lookalikes.ipynb?token={token}", timeout=60_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            # Run all cells; the widget appears once every cell ran (it is the last one).
            select = page.locator(".iffse-lookalikes select")
            _run_all_cells(page, select)
            select.scroll_into_view_if_needed()
            assert page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").count() == 0
            # The notebook's own search (QUERY_PHOTO = None) drew its figure.
            assert page.locator(".jp-RenderedImage img").count() >= 1
            # Pick a catalogued face of Obama in the dropdown.
            label = select.locator("option", has_text=f"obama (photo {pick['photo_id']},").first.text_content()
            select.select_option(label=label)
            thumbs = page.locator(".iffse-results img")
            thumbs.first.wait_for(timeout=60_000)
            page.wait_for_function(
                "() => { const t = document.querySelectorAll('.iffse-results img');"
                " return t.length > 0 && [...t].every(i => i.complete); }", timeout=30_000)
            sizes = thumbs.evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")
            labels = page.locator(".iffse-results .widget-html-content").all_text_contents()
            message = page.locator(".iffse-message").first.text_content()
            no_news = page.locator(".jp-toast-button", has_text="No")
            if no_news.count():
                no_news.first.click()
            page.locator(".iffse-lookalikes").scroll_into_view_if_needed()
            page.locator(".iffse-results").scroll_into_view_if_needed()
            shot = ARTIFACTS / "05-search-lookalikes.png"
            page.screenshot(path=str(shot))
            if os.environ.get("IFFSE_UPDATE_DOCS"):
                shutil.copy(shot, ROOT / "docs" / shot.name)
        finally:
            browser.close()
    assert len(sizes) >= 3, sizes
    assert all(w > 0 and h > 0 for w, h in sizes), f"thumbnails that did not render: {sizes}"
    assert "obama" in labels[0], labels
    assert "matches within distance" in message
    assert not errors, errors
