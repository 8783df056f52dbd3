"""The catalogue survives kill -9 at any moment and resumes to the same result."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from iffse_lib import pipeline
from iffse_lib.catalog import Catalog
from iffse_lib.storage import VectorFile
from iffse_lib.errors import CatalogError
from iffse_lib.sources.lfw import LFWSource

from conftest import LFW

N_PHOTOS = 36


def _iffse(data, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "iffse_lib.cli", *args, "--data", str(data), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _count(data, sql) -> int:
    db = data / "catalog.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # the table is not there yet
        return 0


def _kill_when(proc, data, sql, at_least, timeout=120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if _count(data, sql) >= at_least:
            break
        time.sleep(0.02)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _snapshot(data):
    """Everything a run leaves: photos by hash, faces by (hash, idx) with boxes, vectors by face."""
    cat = Catalog(data, create=False)
    try:
        photos = sorted(r[0] for r in cat.query("SELECT sha256 FROM photos"))
        faces = {(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in cat.query(
            "SELECT p.sha256, f.idx, f.left, f.top, f.right, f.bottom FROM faces f JOIN photos p ON p.id=f.photo_id")}
        vec = {}
        for tag in cat.model_tags():
            ids, X = cat.vectors(tag)
            keys = {r[0]: (r[1], r[2]) for r in cat.query(
                "SELECT f.id, p.sha256, f.idx FROM faces f JOIN photos p ON p.id=f.photo_id")}
            vec[tag] = {keys[i]: x for i, x in zip(ids, X)}
            # The vector file holds exactly the committed rows, and every row is referenced once.
            assert cat.vector_file(tag).rows == cat.scalar("SELECT n_rows FROM models WHERE tag=?", (tag,))
            assert len(ids) == cat.scalar("SELECT COUNT(*) FROM vectors WHERE model=?", (tag,))
        detections = cat.scalar("SELECT COUNT(*) FROM detections")
        for rel in cat.query("SELECT path FROM photos"):
            assert (data / rel[0]).is_file()
        return photos, faces, vec, detections
    finally:
        cat.close()


def _assert_same_catalogue(data, want) -> None:
    """The catalogue in ``data`` holds what ``want`` (a :func:`_snapshot`) does: the same photos,
    detections and faces, and every vector within 1e-5."""
    photos, faces, vectors, detections = _snapshot(data)
    want_photos, want_faces, want_vectors, want_detections = want
    assert photos == want_photos and detections == want_detections == N_PHOTOS
    assert faces == want_faces
    assert vectors.keys() == want_vectors.keys()
    for tag in vectors:
        assert vectors[tag].keys() == want_vectors[tag].keys()
        assert max(float(np.abs(vectors[tag][k] - want_vectors[tag][k]).max()) for k in vectors[tag]) < 1e-5


@pytest.fixture(scope="module")
def lfw_subset(tmp_path_factory):
    """A folder of the first N LFW photos (small, fast to detect and embed)."""
    root = tmp_path_factory.mktemp("lfw_small")
    for rec in list(LFWSource(LFW))[:N_PHOTOS]:
        person = root / rec.identity
        person.mkdir(exist_ok=True)
        (person / rec.source_id).write_bytes(rec.read_bytes())
    return root


@pytest.fixture(scope="module")
def uninterrupted(lfw_subset, tmp_path_factory):
    data = tmp_path_factory.mktemp("clean") / "data"
    for args in (["collect", "lfw", "--lfw-dir", str(lfw_subset)], ["index", "--batch", "4"]):
        proc = _iffse(data, *args)
        assert proc.wait() == 0, proc.stderr.read().decode()
    return _snapshot(data)


@pytest.mark.slow
def test_kill_during_collect_and_index_then_resume(lfw_subset, uninterrupted, tmp_path):
    data = tmp_path / "data"
    collect = ["collect", "lfw", "--lfw-dir", str(lfw_subset)]
    # Killed while collecting: once before anything is stored, once part-way.
    for at in (0, N_PHOTOS // 3):
        _kill_when(_iffse(data, *collect), data, "SELECT COUNT(*) FROM photos", at)
    assert _count(data, "SELECT COUNT(*) FROM photos") < N_PHOTOS
    proc = _iffse(data, *collect)
    assert proc.wait() == 0
    assert _count(data, "SELECT COUNT(*) FROM photos") == N_PHOTOS
    # Killed while indexing: during model loading, after the first batch, and twice later on.
    index = ["index", "--batch", "4"]
    done = []
    for at in (0, 4, 12, 24):
        _kill_when(_iffse(data, *index), data, "SELECT COUNT(*) FROM detections", at)
        done.append(_count(data, "SELECT COUNT(*) FROM detections"))
    assert done[-1] < N_PHOTOS, "the kills came too late to interrupt anything"
    assert max(done) > 0, "no batch ever committed between kills"
    proc = _iffse(data, *index)
    assert proc.wait() == 0, proc.stderr.read().decode()
    _assert_same_catalogue(data, uninterrupted)
    # No temporary photo file is left behind.
    assert not list(data.rglob("*.tmp"))


def test_uncommitted_vector_rows_are_never_read_and_a_writer_cuts_them(tmp_path):
    path = tmp_path / "v.npy"
    vf = VectorFile(path, 4, 0, writable=True)
    vf.append(np.ones((3, 4), np.float32))
    vf.append(np.full((2, 4), 2, np.float32))  # say this batch never committed
    reader = VectorFile(path, 4, 3)
    assert reader.rows == 3 and (reader.array() == 1).all()
    assert path.stat().st_size == 128 + 5 * 16  # a reader leaves the file as it is
    with pytest.raises(CatalogError, match="open for reading only"):
        reader.append(np.ones((1, 4), np.float32))
    writer = VectorFile(path, 4, 3, writable=True)
    assert writer.cut_to_committed() == 2
    assert np.load(path).shape == (3, 4) and (np.load(path, mmap_mode="r") == 1).all()
    with pytest.raises(CatalogError, match="truncated"):
        VectorFile(path, 4, 5)


@pytest.mark.slow
def test_dataframes_for_notebooks(tmp_path, lfw_subset):
    cat = Catalog(tmp_path / "data")
    pipeline.collect(cat, LFWSource(lfw_subset, limit=6), progress=False)
    pipeline.index_photos(cat, progress=False)
    photos, faces = cat.photos(), cat.faces()
    assert len(photos) == 6 and photos["identity"].notna().all()
    assert {"photo_id", "source_kind", "source_id", "identity", "width", "height", "path", "n_faces"} <= set(photos.columns)
    assert len(faces) == photos["n_faces"].sum()
    assert faces.iloc[0]["landmarks"].shape == (68, 2)
    assert {"face_id", "photo_id", "left", "top", "right", "bottom", "score", "identity", "path"} <= set(faces.columns)


def test_remove_photos_takes_faces_vectors_and_files(tmp_path, lfw_subset):
    cat = Catalog(tmp_path / "data")
    pipeline.collect(cat, LFWSource(lfw_subset, limit=4), progress=False)
    pipeline.index_photos(cat, progress=False)
    victim = cat.photos().iloc[0]
    tag = cat.model_tags()[0]
    before = len(cat.vectors(tag)[0])
    n_faces = int(victim["n_faces"])
    assert cat.remove_photos([int(victim["photo_id"])]) == 1
    assert not os.path.exists(victim["path"])
    assert len(cat.vectors(tag)[0]) == before - n_faces
    assert cat.scalar("SELECT COUNT(*) FROM faces WHERE photo_id=?", (int(victim["photo_id"]),)) == 0
    assert cat.get_meta("index_stale") == "1"


@pytest.mark.slow
def test_a_second_model_reuses_the_stored_landmarks(tmp_path, lfw_subset):
    """Embedding with another model tag re-reads photos and stored landmarks; nothing is re-detected."""
    from iffse_lib.embedders import get_embedder

    cat = Catalog(tmp_path / "data")
    pipeline.collect(cat, LFWSource(lfw_subset, limit=8), progress=False)
    first = pipeline.index_photos(cat, get_embedder("torch"), progress=False)
    faces_before = cat.faces()
    half = get_embedder("torch", dtype="bfloat16")
    second = pipeline.index_photos(cat, half, progress=False)
    assert half.model_tag == "dlib-resnet-v1+bf16" and set(cat.model_tags()) == {"dlib-resnet-v1", half.model_tag}
    assert second.get("faces", 0) == 0 and second["vectors"] == first["vectors"] == len(faces_before)
    assert "detect" not in second["stages"] and "embed" in second["stages"]
    assert cat.faces().drop(columns="landmarks").equals(faces_before.drop(columns="landmarks"))
    ids32, v32 = cat.vectors("dlib-resnet-v1")
    ids16, v16 = cat.vectors(half.model_tag)
    assert (ids32 == ids16).all()
    cos = (v32 * v16).sum(1) / np.linalg.norm(v32, axis=1) / np.linalg.norm(v16, axis=1)
    assert cos.min() > 0.999
    # A third run has nothing left to do for either model.
    assert pipeline.index_photos(cat, half, progress=False).get("photos", 0) == 0
