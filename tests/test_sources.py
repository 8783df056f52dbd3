"""collect_photos: one call collects from any source by name, as notebook 01 does."""

from __future__ import annotations

import pytest

from conftest import FACES, LFW
from iffse_lib.catalog import Catalog
from iffse_lib.sources import collect_photos


def test_collect_photos_from_lfw_and_from_a_folder(tmp_path):
    with Catalog(tmp_path / "data") as cat:
        assert collect_photos(cat, "lfw", lfw_dir=LFW, max_photos=5, progress=False)["stored"] == 5
        counts = collect_photos(cat, "folder", folder=FACES / "people", progress=False)
        assert sum(counts.get(k, 0) for k in ("stored", "duplicates", "errors")) == 81  # every file of the folder
        photos = cat.photos()
    lfw, people = photos[photos["source_kind"] == "lfw"], photos[photos["source_kind"] == "folder"]
    assert len(lfw) == 5 and lfw["identity"].notna().all()
    assert "alex_lacamoire" in set(people["identity"])  # people/NAME/photo.jpg is NAME's


def test_collect_photos_without_cookies_crawls_the_imitation(tmp_path):
    with Catalog(tmp_path / "data") as cat:
        counts = collect_photos(cat, "instagram", max_photos=3, progress=False)
        assert counts["tags"]["selfie"]["posts"] == 3
        assert (cat.photos()["source_kind"] == "instagram").sum() == counts["tags"]["selfie"]["stored"] > 0


def test_collect_photos_names_the_sources_it_knows(tmp_path):
    with Catalog(tmp_path / "data") as cat, pytest.raises(ValueError, match='"lfw", "folder" or "instagram"'):
        collect_photos(cat, "flickr")
