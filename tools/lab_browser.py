"""JupyterLab on 127.0.0.1 and headless Chromium driven by Playwright, for the browser test and
for the README's screenshots (tests/test_browser.py, tools/screenshots.py).

    with jupyter_lab(folder, scratch, env={"IFFSE_DATA": str(data)}) as lab, chromium() as (page, errors):
        open_notebook(page, lab, "05-search-lookalikes.ipynb")
        run_all_cells(page)

``jupyter_lab`` starts the server of the running Python (``sys.executable -m jupyter lab``) on a
free port with a random token, over ``folder``; everything it writes besides the notebooks
(runtime files, config, workspaces, user settings, its log) goes under ``scratch``. Its user
settings never fetch Jupyter news, attach every cell to the page (so that Playwright finds cells
out of view) and start the notebook's kernel without asking. ``chromium`` launches Debian's
``/usr/bin/chromium`` (``IFFSE_CHROMIUM`` overrides it) headless, and collects the page's
uncaught JavaScript errors in ``errors``. Nothing here imports iffse_lib.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping

CHROMIUM = Path(os.environ.get("IFFSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}

#: JupyterLab user settings (plugin id -> settings): no news requests, every cell in the DOM,
#: the notebook's kernel started without a dialog.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
}

#: Where a failed cell's traceback can be: JupyterLab 4.6 renders an error output as stderr text
#: (``data-mime-type="application/vnd.jupyter.stderr"``, like ``print(..., file=sys.stderr)``);
#: older versions used ``application/vnd.jupyter.error``.
OUTPUTS_WITH_ERRORS = (".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error'], "
                       ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
#: IPython's traceback, told apart from other stderr text (warnings, logs): a rule of dashes, then
#: the error's name and "Traceback (most recent call last)" on one line; or, for a SyntaxError,
#: "Cell In[n], line k" and the error line last.
IPYTHON_TRACEBACK = re.compile(r"^-{20,}\s*\n\S+\s+Traceback \(most recent call last\)"
                               r"|\A\s*Cell In\[\d+\], line \d+.*^\w*(Error|Exception)\b[^\n]*\Z", re.M | re.S)


class BrowserMissing(RuntimeError):
    """Chromium (or Playwright) is not installed."""


@dataclasses.dataclass(frozen=True)
class Lab:
    """A running JupyterLab: its base URL, token, notebook folder and log file."""

    url: str
    token: str
    root_dir: Path
    log: Path

    def notebook_url(self, name: str) -> str:
        """The notebook alone in a fresh workspace (``reset``: tabs opened before are not restored)."""
        return f"{self.url}/lab/tree/{urllib.parse.quote(name)}?reset&token={self.token}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(folder: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        package, name = plugin.split(":")
        path = folder / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@contextlib.contextmanager
def jupyter_lab(root_dir: str | Path, scratch: str | Path, *, env: Mapping[str, str] | None = None,
                start_timeout: float = 90.0) -> Iterator[Lab]:
    """Run JupyterLab over ``root_dir`` for the ``with`` block; ``env`` is added to its environment
    (and so to its kernels'). Raises RuntimeError, with the end of its log, if it does not start."""
    root_dir, scratch = Path(root_dir).resolve(), Path(scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    _write_settings(scratch / "settings")
    port, token = free_port(), secrets.token_hex(16)
    full_env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(scratch / "runtime"),
                    JUPYTER_CONFIG_DIR=str(scratch / "config"), PYTHONUNBUFFERED="1",
                    PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {}))
    log_path = scratch / "jupyter.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}", "--ServerApp.port_retries=0",
           f"--LabApp.workspaces_dir={scratch / 'workspaces'}", f"--LabApp.user_settings_dir={scratch / 'settings'}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=root_dir)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("JupyterLab did not start:\n" + log_path.read_text()[-3000:]) from None
                    time.sleep(0.5)
            yield Lab(url, token, root_dir, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def chromium(viewport: Mapping[str, int] = VIEWPORT, executable: Path = CHROMIUM) -> Iterator[tuple]:
    """Headless Chromium with one page; yields ``(page, errors)``, ``errors`` the page's uncaught
    JavaScript errors so far."""
    if not Path(executable).exists():
        raise BrowserMissing(f"{executable} is missing: apt-get install -y chromium (.ci/run does it), "
                             "or point IFFSE_CHROMIUM at a Chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserMissing("Playwright for Python is missing: pip install -r requirements-test.txt") from None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=dict(viewport))
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            browser.close()


def open_notebook(page, lab: Lab, name: str, timeout: float = 60.0) -> None:
    """Open notebook ``name`` (relative to the lab's folder) and wait for its cells."""
    page.goto(lab.notebook_url(name), timeout=timeout * 1000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)


def cell_errors(page) -> list[str]:
    """The text of every traceback of a failed cell on show (see :data:`OUTPUTS_WITH_ERRORS`)."""
    found = []
    for output in page.locator(OUTPUTS_WITH_ERRORS).all():
        text = output.inner_text()
        if output.get_attribute("data-mime-type").endswith(".error") or IPYTHON_TRACEBACK.search(text.strip()):
            found.append(text)
    return found


def run_all_cells(page, until=None, timeout: float = 240.0) -> None:
    """Run > Run All Cells once the kernel is idle; return when ``until`` (a locator; default: the
    last code cell's execution count, which it gets when it has finished) is in the page. Raises
    RuntimeError with the traceback's text as soon as a cell fails (:func:`cell_errors`),
    TimeoutError after ``timeout`` seconds.

    JupyterLab may first ask which kernel to start; the dialog is accepted (the notebook's own
    kernel is preselected) and the cells are run again, since a run issued before the kernel
    started does nothing.
    """
    last_ran = page.locator(".jp-Notebook .jp-CodeCell").last.locator(
        ".jp-InputPrompt", has_text=re.compile(r"\[\d+\]"))
    if until is None:
        until = last_ran
    select_kernel = page.locator(".jp-Dialog .jp-mod-accept")
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    running = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt", has_text="[*]")
    started = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]"))
    deadline = time.monotonic() + timeout
    ran = False
    ran_at = 0.0
    stopped_since, reruns = None, 0
    while until.count() == 0:
        errors = cell_errors(page)
        if errors:
            raise RuntimeError("a cell failed:\n" + errors[0][-3000:])
        # A run that stopped (kernel idle, nothing running, the last cell not reached) without a
        # traceback on show: a Run All issued while the kernel was still connecting runs only the
        # first cell; run all again (twice at most), then say so rather than wait for the timeout.
        if (ran and started.count() and idle.count() and not running.count() and not last_ran.count()
                and not select_kernel.count()):
            stopped_since = stopped_since or time.monotonic()
            if time.monotonic() - stopped_since > 8:
                if reruns >= 2:
                    raise RuntimeError("the run stopped before the last cell, with no traceback on show")
                reruns, ran, stopped_since = reruns + 1, False, None
        else:
            stopped_since = None
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
            ran, ran_at = True, time.monotonic()
        elif ran and started.count() == 0 and time.monotonic() - ran_at > 15:
            ran = False  # issued while the kernel was still connecting: nothing ran, run again
        page.wait_for_timeout(500)


def wait_for_images(page, selector: str, timeout: float = 30.0) -> list[tuple[int, int]]:
    """Wait until at least one image matches ``selector`` and all of them have loaded; return
    their decoded sizes (0 x 0: an image the browser could not decode)."""
    page.locator(selector).first.wait_for(timeout=timeout * 1000)
    page.wait_for_function(
        "sel => { const t = document.querySelectorAll(sel); return t.length > 0 && [...t].every(i => i.complete); }",
        arg=selector, timeout=timeout * 1000)
    return [tuple(s) for s in page.locator(selector).evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")]


#: JavaScript: canvas pixels of one colour (within 2 per channel), each surrounded by the same
#: colour (the inside of a dot, not its anti-aliased rim), as [x, y] in CSS pixels of the page.
FIND_COLOUR = """([canvas, rgb]) => {
  const ctx = canvas.getContext('2d');
  const {width, height} = canvas;
  const data = ctx.getImageData(0, 0, width, height).data;
  const box = canvas.getBoundingClientRect();
  const same = (x, y) => { const i = 4 * (y * width + x);
    return Math.abs(data[i] - rgb[0]) <= 2 && Math.abs(data[i + 1] - rgb[1]) <= 2 && Math.abs(data[i + 2] - rgb[2]) <= 2; };
  const found = [];
  for (let y = 2; y < height - 2; y++) for (let x = 2; x < width - 2; x++)
    if (same(x, y) && same(x - 2, y) && same(x + 2, y) && same(x, y - 2) && same(x, y + 2))
      found.push([box.x + x * box.width / width, box.y + y * box.height / height]);
  return found;
}"""


def colour_spots(canvas, rgb: tuple[int, int, int], timeout: float = 60.0) -> list[list[float]]:
    """Where a canvas (a Playwright locator) shows colour ``rgb``, as [x, y] page CSS pixels
    (:data:`FIND_COLOUR`); waits up to ``timeout`` seconds for the first, as a figure arrives after
    its cell has run."""
    canvas.page.wait_for_function(f"c => ({FIND_COLOUR})([c, {list(rgb)}]).length > 0",
                                  arg=canvas.element_handle(), timeout=timeout * 1000)
    return canvas.evaluate(f"c => ({FIND_COLOUR})([c, {list(rgb)}])")


def tidy_for_screenshot(page) -> None:
    """Close the left sidebar and any notification toast, so the notebook fills the picture."""
    current = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if current.count():
        current.first.click()
    for button in page.locator(".jp-toast-button", has_text="No").all():
        button.click()
    page.locator(".Toastify__close-button").evaluate_all("els => els.forEach(e => e.click())")
    page.wait_for_timeout(300)
