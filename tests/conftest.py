"""Shared fixtures. Tests read real photos from ../shared (IFFSE_SHARED overrides it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IFFSE_SHARED", ROOT.parent / "shared"))
FACES = SHARED / "data" / "faces"
LFW = SHARED / "data" / "lfw"


def pytest_configure(config):
    if not FACES.is_dir() or not LFW.is_dir():
        raise pytest.UsageError(f"the test photos are missing: expected {FACES} and {LFW} (set IFFSE_SHARED)")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return FACES


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return LFW


@pytest.fixture(scope="session")
def people_catalog(tmp_path_factory):
    """../shared/data/faces/people collected (identity from folder) and indexed, once per session."""
    from iffse_lib import pipeline
    from iffse_lib.catalog import Catalog
    from iffse_lib.sources.folder import FolderSource

    cat = Catalog(tmp_path_factory.mktemp("people") / "data")
    pipeline.collect(cat, FolderSource(FACES / "people", identity_from_folder=True), progress=False)
    pipeline.index_photos(cat, progress=False)
    pipeline.build_index(cat, progress=False)
    yield cat
    cat.close()


@pytest.fixture(scope="session")
def lfw_catalog(tmp_path_factory):
    """The whole LFW subset (2,515 photos) collected and indexed end to end, once per session.

    Other tests (notebooks, evaluation, index recall) read this catalogue; they must not write to it.
    """
    from iffse_lib import pipeline
    from iffse_lib.catalog import Catalog
    from iffse_lib.sources.lfw import LFWSource

    cat = Catalog(tmp_path_factory.mktemp("lfw") / "data")
    cat.start_run("test lfw")
    collected = pipeline.collect(cat, LFWSource(LFW), progress=False)
    indexed = pipeline.index_photos(cat, progress=False)
    _, built = pipeline.build_index(cat, progress=False)
    cat.finish_run("ok", {"collect": collected, "index": indexed, "build": built})
    cat.lfw_summary = {"collect": collected, "index": indexed, "build": built}
    yield cat
    cat.close()
