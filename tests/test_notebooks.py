"""Every notebook runs headless, top to bottom, with papermill, on a copy of the LFW catalogue.

The session fixture ``lfw_catalog`` has collected and indexed the LFW subset; each test module
copies its folder once, and the notebooks run in order on the copy (01 finds the photos already
collected and 03 finds them indexed: the pipeline skips finished work). Each test then checks
the figures its notebook wrote and displayed, and the values it recorded (``iffse_lib.glue``:
each line of figures the reader sees carries its values, so no test parses printed text).
Floors were measured on ../shared/data/lfw (2,515 photos,
2,668 faces, dlib-resnet-v1): trustworthiness 0.933, purity 0.951, completeness 0.954,
Annoy recall@10 0.929 at the default search_k. Notebook 01 also runs on an empty folder with
SOURCE="instagram" and no cookies: it crawls iffse's local imitation of Instagram (~12 s here).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import FACES, LFW, ROOT

NOTEBOOKS = ROOT / "notebooks"

slow = pytest.mark.slow  # the LFW notebooks; 01's Instagram imitation run is quick


@pytest.fixture(scope="module")
def data(lfw_catalog, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("notebooks") / "data"
    shutil.copytree(lfw_catalog.root, copy)
    return copy


def run(name: str, data: Path, **parameters) -> tuple[dict, Path, int]:
    """Run notebook ``name`` with parameters; return the values it recorded, the figures folder and
    its PNG count."""
    import nbformat
    import papermill

    from iffse_lib import glue

    out = data.parent / f"{name}.out.ipynb"
    figures = data.parent / "figures"
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), kernel_name="python3",
                               parameters={"DATA_DIR": str(data), "FIGURES_DIR": str(figures), **parameters},
                               cwd=str(NOTEBOOKS), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    # Figures display as PNGs in the notebook, not as "<Figure size ...>" text.
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            if str(o.get("data", {}).get("text/plain", "")).startswith("<Figure size"):
                assert "image/png" in o["data"], "a figure was shown as text only"
    # Every figure the notebook saved is also shown as a PNG.
    saved = list(figures.glob(f"{name[:2]}-*.png"))
    assert saved and pngs >= len(saved), (saved, pngs)
    return glue.read(nb), figures, pngs


def _png(path: Path, min_width: int = 400) -> Image.Image:
    assert path.exists(), f"{path.name} was not written"
    im = Image.open(path)
    im.load()
    assert im.width >= min_width and im.height >= 100, (path.name, im.size)
    return im


@slow
def test_01_collect_photos(data, lfw_catalog, monkeypatch):
    # LFW_DIR = None: the folder comes from IFFSE_LFW_DIR, which `make lab` sets as `make demo` finds it.
    monkeypatch.setenv("IFFSE_LFW_DIR", str(LFW))
    _, figures, pngs = run("01-collect-photos", data, SOURCE="lfw", N_CONTACT=24)
    _png(figures / "01-contact-sheet.png", 800)
    assert pngs >= 1
    # Nothing new: every LFW photo was collected by the fixture and is skipped.
    from iffse_lib.catalog import Catalog

    with Catalog(data, create=False) as cat:
        assert cat.counts()["photos"] == lfw_catalog.counts()["photos"] == 2515


@pytest.mark.slow
def test_01_collect_photos_from_the_instagram_imitation(tmp_path):
    # No cookies: the notebook serves iffse's imitation of Instagram and crawls #selfie through it.
    import json

    import numpy as np

    from iffse_lib.catalog import Catalog
    from iffse_lib.testing.fake_instagram import FakeInstagram

    data = tmp_path / "data"
    _, figures, pngs = run("01-collect-photos", data, SOURCE="instagram", MAX_PHOTOS=30, N_CONTACT=12)
    expected = FakeInstagram(30).expected_images("web", 30)  # carousels give several photos a post
    with Catalog(data, create=False) as cat:
        rows = cat.db.execute("SELECT source_id, identity, path, meta FROM photos WHERE source_kind = 'instagram'").fetchall()
        assert cat.counts()["photos"] == len(rows)
    assert sorted(r[0] for r in rows) == sorted(expected)
    for source_id, identity, path, meta in rows:
        meta = json.loads(meta)
        assert identity is None
        assert meta["hashtag"] == "selfie" and meta["api"] == "web"
        assert source_id == f"{meta['shortcode']}/{meta['image_number']}"
        assert meta["username"].startswith("fake_user_") and meta["image_url"]
        Image.open(data / path).verify()  # the downloaded bytes are a photo
    sheet = _png(figures / "01-contact-sheet.png", 800)
    assert pngs >= 1
    assert len(np.unique(np.asarray(sheet.convert("L")))) > 50  # photos were drawn, not an empty canvas


@slow
def test_02_landmarks(data, lfw_catalog):
    values, figures, pngs = run("02-landmarks", data, N_EXAMPLES=2, MAX_BROWSE=20)
    for name in ("02-landmarks-1", "02-landmarks-2", "02-alignment", "02-failures"):
        _png(figures / f"{name}.png")
    no_face = lfw_catalog.scalar("SELECT COUNT(*) FROM detections WHERE n_faces = 0")
    assert values["photos_without_face"] == no_face and values["photos_detected"] == 2515, values
    assert no_face > 0  # LFW holds profiles the HOG detector misses: the page is not empty


@slow
def test_03_embed_and_index(data):
    values, figures, pngs = run("03-embed-and-index", data, N_TIMING_PHOTOS=6, N_RECALL_QUERIES=200)
    for name in ("03-stage-times", "03-distances", "03-recall"):
        _png(figures / f"{name}.png")
    assert values["photos_processed"] == 0  # resumed: the fixture indexed everything
    # Warm throughput, the models' load time apart.
    assert values["photos_per_s"] > 0 and values["load_s"] > 0, values
    # Only subject faces are labelled: bystanders no longer make "same person" pairs (12.2 % before).
    assert values["false_reject"] <= 0.02, values
    from iffse_lib.index_backends import ANNOY_SEARCH_K_FACTOR

    assert values["annoy_search_k"] == 50 * 10 and values["recall_at_annoy_search_k"] >= 0.85, values
    assert values["default_search_k"] == ANNOY_SEARCH_K_FACTOR * 50 * 10, values
    assert values["recall_at_default_search_k"] >= 0.95, values


@slow
def test_04_umap_clusters(data):
    values, figures, pngs = run("04-umap-clusters", data, N_THUMBNAILS=120)
    for name in ("04-umap-identities", "04-umap-thumbnails", "04-clusters"):
        _png(figures / f"{name}.png", 700)
    assert values["unlabelled_faces"] > 100  # bystanders
    trust, purity, completeness = values["trustworthiness"], values["purity"], values["completeness"]
    print(f"\ntrustworthiness {trust}, purity {purity}, completeness {completeness}")
    assert trust >= 0.90
    assert purity >= 0.93
    assert completeness >= 0.90


@slow
def test_05_search_lookalikes(data):
    # A photo of Angelina Jolie from outside LFW; the LFW subset holds 20 photos of her.
    query = FACES / "people" / "angelina_jolie" / "deepface_img1.jpg"
    values, figures, pngs = run("05-search-lookalikes", data, QUERY_PHOTO=str(query), K=8)
    _png(figures / "05-results.png")
    assert values["top_match"] == "Angelina_Jolie", values
    # The two nearest matches compared, with the occlusion map: both Angelina Jolie, so the same person.
    _png(figures / "05-compare.png", 700)
    assert values["same"] and values["distance"] <= values["threshold"] == 0.6, values
    assert 0 < values["same_farther"] < 1, values  # its place among the same-person distances
