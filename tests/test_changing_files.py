"""Files that change or fail once: odd names, files still being copied, removed, restored or replaced."""

from __future__ import annotations

import os
import shutil

import pytest

from iffse_lib import pipeline
from iffse_lib.catalog import Catalog
from iffse_lib.sources.folder import FolderSource

from conftest import FACES, LFW, iffse, one_line_error

#: real iffse processes while photo files change; make test-fast leaves these out
pytestmark = pytest.mark.slow

OBAMA = sorted((FACES / "people" / "obama").iterdir())
BIDEN = sorted((FACES / "people" / "biden").iterdir())


def _photos(data) -> int:
    with Catalog(data, readonly=True) as cat:
        return cat.counts()["photos"]


def test_a_name_that_is_not_utf8_is_collected_and_stored_losslessly(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    odd = os.fsencode(folder) + b"/caf\xe9-\xff.jpg"
    shutil.copy(OBAMA[0], os.fsdecode(odd))
    shutil.copy(BIDEN[0], folder / "plain.jpg")
    data = tmp_path / "data"
    out = iffse("collect", "folder", folder, data=data, check=0).stdout
    assert "2 new photos" in out and "0 rejected" in out
    with Catalog(data, readonly=True) as cat:
        photos = cat.photos()
        row = photos[photos["source_id"] != "plain.jpg"].iloc[0]
        assert row["source_id"] == "caf%E9-%FF.jpg"
        meta = cat.query("SELECT json_extract(meta, '$.name_hex') FROM photos WHERE source_id=?", (row["source_id"],))
        assert bytes.fromhex(meta[0][0]) == b"caf\xe9-\xff.jpg"
    assert len([p for p in (data / "raw").rglob("*") if p.is_file()]) == 2
    assert "0 new photos, 2 already there" in iffse("collect", "folder", folder, data=data, check=0).stdout


def test_a_file_still_being_copied_is_read_again_once_complete(tmp_path):
    folder, data = tmp_path / "photos", tmp_path / "data"
    folder.mkdir()
    whole = OBAMA[0].read_bytes()
    (folder / "a.jpg").write_bytes(whole[: len(whole) // 2])
    first = iffse("collect", "folder", folder, data=data, check=0).stdout
    assert "0 new photos" in first and "1 rejected" in first
    (folder / "a.jpg").write_bytes(whole)
    assert "1 new photos" in iffse("collect", "folder", folder, data=data, check=0).stdout
    assert _photos(data) == 1


def test_a_file_removed_during_the_run_is_tried_again_when_back(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(OBAMA[0], folder / "a.jpg")
    shutil.copy(BIDEN[0], folder / "b.jpg")
    stamp = (folder / "a.jpg").stat()
    source = FolderSource(folder)  # listed ...
    moved = (folder / "a.jpg").rename(tmp_path / "away.jpg")  # ... then gone before it is read
    with Catalog(tmp_path / "data") as cat:
        counts = pipeline.collect(cat, source, progress=False)
        assert counts["stored"] == 1 and counts["errors"] == 1
        assert cat.errors()["kind"].tolist() == ["missing"]
        moved.rename(folder / "a.jpg")
        os.utime(folder / "a.jpg", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # back exactly as it was
        again = pipeline.collect(cat, FolderSource(folder), progress=False)
        assert again["stored"] == 1 and again["skipped"] == 1
        assert cat.counts()["photos"] == 2


def test_a_file_replaced_by_another_photo_is_collected(tmp_path):
    folder, data = tmp_path / "photos", tmp_path / "data"
    folder.mkdir()
    shutil.copy(OBAMA[0], folder / "a.jpg")
    iffse("collect", "folder", folder, data=data, check=0)
    (folder / "a.jpg").write_bytes(BIDEN[0].read_bytes())
    assert "1 new photos" in iffse("collect", "folder", folder, data=data, check=0).stdout
    assert _photos(data) == 2


def test_hidden_folders_are_left_out_like_hidden_files(tmp_path):
    folder, data = tmp_path / "photos", tmp_path / "data"
    (folder / ".thumbnails").mkdir(parents=True)
    shutil.copy(OBAMA[0], folder / "a.jpg")
    shutil.copy(OBAMA[1], folder / ".hidden.jpg")
    shutil.copy(BIDEN[0], folder / ".thumbnails" / "b.jpg")
    assert "1 new photos" in iffse("collect", "folder", folder, data=data, check=0).stdout
    assert _photos(data) == 1


def test_a_raw_photo_unreadable_during_index_is_detected_once_restored(small_catalog, tmp_path):
    data = tmp_path / "data"
    iffse("collect", "lfw", "--lfw-dir", LFW, "--limit", 8, "--quiet", data=data, check=0)
    with Catalog(data, readonly=True) as cat:
        path = cat.photo_path(3)
    away = path.rename(tmp_path / "away.jpg")
    iffse("index", "--quiet", data=data, check=0)
    with Catalog(data, readonly=True) as cat:
        assert cat.query("SELECT error FROM detections WHERE photo_id=3")[0][0] == "missing"
    away.rename(path)
    iffse("index", "--quiet", data=data, check=0)
    with Catalog(data, readonly=True) as cat, Catalog(small_catalog, readonly=True) as ref:
        got, want = cat.counts(), ref.counts()
        assert cat.query("SELECT error FROM detections WHERE photo_id=3")[0][0] is None
    assert (got["photos_detected"], got["faces"], got["vectors"]) == (8, want["faces"], want["vectors"])


def test_a_run_that_ends_in_an_error_is_recorded_as_failed(small_copy):
    npy = small_copy / "vectors" / "dlib-resnet-v1.npy"
    with open(npy, "r+b") as fh:
        fh.truncate(npy.stat().st_size - 512)
    one_line_error(iffse("index", data=small_copy))
    with Catalog(small_copy, readonly=True) as cat:
        last = cat.query("SELECT command, status, summary FROM runs ORDER BY id DESC LIMIT 1")[0]
        assert last["command"] == "index" and last["status"] == "failed" and "CatalogDamaged" in last["summary"]
        assert not cat.query("SELECT 1 FROM runs WHERE status='running'")
