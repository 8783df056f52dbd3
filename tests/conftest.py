"""Shared fixtures. Tests read real photos from ../shared (IFFSE_SHARED overrides it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IFFSE_SHARED", ROOT.parent / "shared"))
FACES = SHARED / "data" / "faces"
LFW = SHARED / "data" / "lfw"


#: Fixtures that collect and index real photos end to end (the LFW subset: minutes; the people
#: folders: most of a minute): every test that needs one, directly or through another fixture,
#: is marked slow, so that `make test-fast` keeps to unit tests.
INDEXED_FIXTURES = frozenset({"lfw_catalog", "people_catalog"})


def pytest_configure(config):
    if not FACES.is_dir() or not LFW.is_dir():
        raise pytest.UsageError(f"the test photos are missing: expected {FACES} and {LFW} (set IFFSE_SHARED)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if INDEXED_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return FACES


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return LFW


@pytest.fixture(scope="session")
def people_catalog(tmp_path_factory):
    """../shared/data/faces/people collected (identity from folder) and indexed, once per session."""
    from iffse_lib import catalog_index, pipeline
    from iffse_lib.catalog import Catalog
    from iffse_lib.sources.folder import FolderSource

    cat = Catalog(tmp_path_factory.mktemp("people") / "data")
    pipeline.collect(cat, FolderSource(FACES / "people", identity_from_folder=True), progress=False)
    pipeline.index_photos(cat, progress=False)
    catalog_index.build_index(cat, progress=False)
    yield cat
    cat.close()


@pytest.fixture(scope="session")
def lfw_catalog(tmp_path_factory):
    """The whole LFW subset (2,515 photos) collected and indexed end to end, once per session.

    Other tests (notebooks, evaluation, index recall) read this catalogue; they must not write to it.
    """
    from iffse_lib import catalog_index, pipeline
    from iffse_lib.catalog import Catalog
    from iffse_lib.sources.lfw import LFWSource

    cat = Catalog(tmp_path_factory.mktemp("lfw") / "data")
    cat.start_run("test lfw")
    collected = pipeline.collect(cat, LFWSource(LFW), progress=False)
    indexed = pipeline.index_photos(cat, progress=False)
    _, built = catalog_index.build_index(cat, progress=False)
    cat.finish_run("ok", {"collect": collected, "index": indexed, "build": built})
    cat.lfw_summary = {"collect": collected, "index": indexed, "build": built}
    yield cat
    cat.close()


# -- the `iffse` command in a real process, and small catalogues made with it ---------------------
def iffse(*args, data=None, check: int | None = None, timeout: float = 300, **popen):
    """Run ``python -m iffse_lib.cli ARGS [--data DATA]``; with ``check``, assert that exit status."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "iffse_lib.cli", *map(str, args)]
    if data is not None:
        argv += ["--data", str(data)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **popen)
    if check is not None:
        assert proc.returncode == check, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def one_line_error(proc) -> str:
    """The error of a command that failed with an iffse error: one line, the last on stderr (after
    any progress bars), and no traceback."""
    lines = proc.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("iffse: error: ")]
    assert proc.returncode == 1 and len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def faces_find_themselves(data, tol: float = 1e-3) -> int:
    """Every face's vector finds that face first in the catalogue's index; returns how many faces."""
    from iffse_lib import catalog_index
    from iffse_lib.catalog import Catalog

    with Catalog(data, readonly=True) as cat:
        for tag in cat.model_tags():
            ids, X = cat.vectors(tag)
            got, dist = catalog_index.load_index(cat, tag).query(X, k=1)
            assert (got[:, 0] == ids).all() and float(dist.max()) < tol
    return len(ids)


@pytest.fixture(scope="session")
def small_catalog(tmp_path_factory):
    """The first 8 LFW photos collected and indexed by the `iffse` command; tests copy it."""
    data = tmp_path_factory.mktemp("small") / "data"
    iffse("collect", "lfw", "--lfw-dir", LFW, "--limit", 8, "--quiet", data=data, check=0)
    iffse("index", "--quiet", data=data, check=0)
    return data


def lab_on_copies(catalog, notebook: str, tmp_path):
    """For the browser tests: JupyterLab over a folder holding a copy of ``notebook``, its kernel's
    IFFSE_DATA a copy of ``catalog``; a context manager giving lab_browser's Lab."""
    import shutil

    import lab_browser  # tools/, on the path through pyproject's pythonpath

    if not lab_browser.CHROMIUM.exists():
        pytest.fail(f"{lab_browser.CHROMIUM} is missing: apt-get install -y chromium (.ci/run does it)")
    data = tmp_path / "data"
    shutil.copytree(catalog.root, data)
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / notebook, work)
    return lab_browser.jupyter_lab(work, tmp_path / "jupyter", env={"IFFSE_DATA": str(data)})


@pytest.fixture
def small_copy(small_catalog, tmp_path):
    """A private copy of ``small_catalog`` to change."""
    import shutil

    dest = tmp_path / "data"
    # Readers of the shared catalogue leave SQLite's empty -wal and its -shm beside it: not data.
    shutil.copytree(small_catalog, dest, ignore=shutil.ignore_patterns("*-wal", "*-shm"))
    return dest
