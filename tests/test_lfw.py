"""LFW: the whole subset indexed end to end, and the download path through scikit-learn."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest

from iffse_lib import catalog_index, pipeline
from iffse_lib.catalog import Catalog
from iffse_lib.errors import SourceError
from iffse_lib.index import exact_search
from iffse_lib.sources.lfw import LFWSource

from conftest import LFW


def test_lfw_subset_end_to_end(lfw_catalog):
    s = lfw_catalog.lfw_summary
    n_files = len(list(LFW.glob("*/*.jpg")))
    assert n_files == 2515
    counts = lfw_catalog.counts()
    print(f"\nLFW subset: {counts['photos']} photos, {counts['faces']} faces, "
          f"{counts['photos_without_faces']} photos without a face; index {s['index']['photos_per_s']} photos/s")
    assert s["collect"]["stored"] + s["collect"].get("duplicates", 0) == n_files
    assert counts["photos"] == n_files - s["collect"].get("duplicates", 0)
    assert counts["identities"] == len([p for p in LFW.iterdir() if p.is_dir()])
    assert counts["photos_detected"] == counts["photos"]
    # LFW photos are centred on a detectable face; HOG misses a few per cent of them.
    assert counts["photos_without_faces"] < 0.05 * counts["photos"]
    tag = next(iter(counts["vectors"]))
    assert counts["vectors"][tag] == counts["faces"]
    assert s["build"]["faces"] == counts["faces"]


def test_annoy_recall_at_10_against_exact_on_lfw_vectors(lfw_catalog):
    index = catalog_index.load_index(lfw_catalog)
    face_ids, X = lfw_catalog.vectors(index.model_tag)
    rng = np.random.default_rng(0)
    q = rng.choice(len(X), size=300, replace=False)
    exact_pos, _ = exact_search(X[q], X, 10)
    approx_ids, _ = index.query(X[q], 10)
    recall = np.mean([len(set(face_ids[e]) & set(a)) / 10 for e, a in zip(exact_pos, approx_ids)])
    print(f"\nAnnoy recall@10 on {len(X)} LFW vectors: {recall:.3f}")
    assert recall >= 0.95


def test_same_person_top_match_on_lfw(lfw_catalog):
    """On LFW people with several photos, the nearest other face is mostly the same person."""
    df = lfw_catalog.faces(catalog_index.load_index(lfw_catalog).model_tag)
    df["area"] = (df["right"] - df["left"]) * (df["bottom"] - df["top"])
    main = df.sort_values("area", ascending=False).groupby("photo_id").head(1).sort_values("face_id")
    face_ids, X = lfw_catalog.vectors(catalog_index.load_index(lfw_catalog).model_tag, main["face_id"])
    identity = main.set_index("face_id").loc[face_ids, "photo_identity"].to_numpy()
    multi = np.flatnonzero(np.isin(identity, [i for i, c in zip(*np.unique(identity, return_counts=True)) if c > 1]))
    pos, _ = exact_search(X[multi], X, 2)
    top = np.where(pos[:, 0] == multi, pos[:, 1], pos[:, 0])
    rate = np.mean(identity[top] == identity[multi])
    print(f"\nLFW leave-one-out top-1 same person: {rate:.3f} over {len(multi)} faces")
    assert rate >= 0.95


# -- the download path ---------------------------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def lfw_server(tmp_path):
    """A local server with LFW's archive (a few people from the subset) in LFW's funneled layout."""
    people = sorted(p for p in LFW.iterdir() if p.is_dir())[:5]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for person in people:
            for f in sorted(person.glob("*.jpg")):
                tar.add(f, arcname=f"lfw_funneled/{person.name}/{f.name}")
    served = tmp_path / "served"
    served.mkdir()
    (served / "lfw-funneled.tgz").write_bytes(buf.getvalue())
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt"):
        (served / name).write_text("1\t1\n")
    handler = functools.partial(_Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", served, people
    server.shutdown()


def test_download_through_scikit_learn(lfw_server, tmp_path, monkeypatch):
    from sklearn.datasets import _lfw

    base, served, people = lfw_server

    def meta(name):
        data = (served / name).read_bytes()
        return _lfw.RemoteFileMetadata(filename=name, url=f"{base}/{name}", checksum=hashlib.sha256(data).hexdigest())

    # scikit-learn's own download code, pointed at the local server instead of figshare.
    monkeypatch.setattr(_lfw, "FUNNELED_ARCHIVE", meta("lfw-funneled.tgz"))
    monkeypatch.setattr(_lfw, "TARGETS", tuple(meta(n) for n in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt")))
    monkeypatch.delenv("IFFSE_LFW_DIR", raising=False)
    home = tmp_path / "sk_home"
    source = LFWSource(data_home=home)
    want = sum(len(list(p.glob("*.jpg"))) for p in people)
    assert len(source) == want
    assert source.root == (home / "lfw_home" / "lfw_funneled").resolve()
    cat = Catalog(tmp_path / "data")
    counts = pipeline.collect(cat, source, progress=False)
    assert counts["stored"] == want
    assert set(cat.photos()["identity"]) == {p.name for p in people}
    # The second time, scikit-learn's cache answers: the server is not asked again.
    (served / "lfw-funneled.tgz").unlink()
    assert len(LFWSource(data_home=home)) == want


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    from sklearn.datasets import _lfw

    monkeypatch.setattr(_lfw, "FUNNELED_ARCHIVE", _lfw.RemoteFileMetadata(
        filename="lfw-funneled.tgz", url="http://127.0.0.1:9/lfw-funneled.tgz", checksum="0" * 64))
    monkeypatch.setattr(_lfw, "TARGETS", ())
    monkeypatch.delenv("IFFSE_LFW_DIR", raising=False)
    with pytest.raises(SourceError, match="IFFSE_LFW_DIR"):
        LFWSource(data_home=tmp_path / "sk_home")


def test_lfw_dir_from_environment(monkeypatch):
    monkeypatch.setenv("IFFSE_LFW_DIR", str(LFW))
    source = LFWSource()
    first = next(iter(source))
    assert source.root == LFW.resolve() and first.identity == first.source_id.rsplit("_", 1)[0]


def test_download_falls_back_to_the_public_function_when_the_private_one_changes(
        lfw_server, tmp_path, monkeypatch, caplog):
    from sklearn.datasets import _lfw

    base, served, people = lfw_server

    def meta(name):
        data = (served / name).read_bytes()
        return _lfw.RemoteFileMetadata(filename=name, url=f"{base}/{name}", checksum=hashlib.sha256(data).hexdigest())

    monkeypatch.setattr(_lfw, "FUNNELED_ARCHIVE", meta("lfw-funneled.tgz"))
    monkeypatch.setattr(_lfw, "TARGETS", tuple(meta(n) for n in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt")))
    original = _lfw._check_fetch_lfw
    calls = []

    def changed(data_home, funneled, download_if_missing, n_retries, delay):
        """A release whose private step requires arguments iffse does not pass (its own public
        fetch_lfw_people passes them all): iffse's call raises TypeError."""
        calls.append(n_retries)
        return original(data_home, funneled, download_if_missing, n_retries, delay)

    monkeypatch.setattr(_lfw, "_check_fetch_lfw", changed)
    monkeypatch.delenv("IFFSE_LFW_DIR", raising=False)
    home = tmp_path / "sk_home"
    with caplog.at_level("WARNING", logger="iffse_lib"):
        source = LFWSource(data_home=home)
    assert len(calls) == 1  # through fetch_lfw_people
    assert len(source) == sum(len(list(p.glob("*.jpg"))) for p in people)
    assert source.root == (home / "lfw_home" / "lfw_funneled").resolve()
    assert {r.identity for r in source} == {p.name for p in people}
    (warning,) = [r for r in caplog.records if r.name == "iffse_lib.sources.lfw"]
    assert "TypeError" in warning.getMessage() and "fetch_lfw_people" in warning.getMessage()
