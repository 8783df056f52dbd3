"""FaceIndex: exact order on a hand-made example, recall on real LFW vectors, the growing buffer,
removed faces, and load errors."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from iffse_lib import catalog_index, pipeline
from iffse_lib.catalog import Catalog
from iffse_lib.errors import IndexAlreadyBuilt, IndexMismatch, IndexMissing, ModelMismatch
from iffse_lib.index import FaceIndex, default_backend, exact_search, rebuild_threshold

MODEL = "dlib-resnet-v1"


@pytest.mark.parametrize("backend", ["annoy", "faiss-hnsw", "ivfpq", "flat"])
def test_three_vectors_exact_neighbour_order(tmp_path, backend):
    index = FaceIndex("hand", dim=3, n_trees=10, backend=backend)
    vectors = np.array([[0, 0, 0], [1, 0, 0], [0, 3, 0]], np.float32)
    index.add([10, 20, 30], vectors, rows=[0, 1, 2])
    index.build()
    ids, dists = index.query([0.4, 0, 0], k=3)
    assert ids.tolist() == [[10, 20, 30]]
    np.testing.assert_allclose(dists[0], [0.4, 0.6, np.sqrt(0.4 ** 2 + 9)], rtol=1e-5)
    ids, _ = index.query([0.9, 2.5, 0], k=3)
    assert ids.tolist() == [[30, 20, 10]]
    # k larger than the index pads with -1 / inf
    ids, dists = index.query([0, 0, 0], k=5)
    assert ids[0, 3:].tolist() == [-1, -1] and np.isinf(dists[0, 3:]).all()
    # the same after a save and load
    index.save(tmp_path)
    loaded = FaceIndex.load(tmp_path, "hand")
    loaded.attach(vectors)  # the vector file, where ivfpq re-ranks from (no-op for the others)
    assert loaded.backend == backend
    assert loaded.query([0.4, 0, 0], k=3)[0].tolist() == [[10, 20, 30]]
    pos, _ = exact_search(np.array([[0.4, 0, 0]]), np.array([[0, 0, 0], [1, 0, 0], [0, 3, 0]]), 3)
    assert pos.tolist() == [[0, 1, 2]]


def _lfw_vectors(cat):
    face_ids, vectors = cat.vectors(MODEL)
    assert len(face_ids) > 2000, "the LFW subset should give over 2,000 faces"
    return face_ids, vectors


@pytest.mark.parametrize("backend", ["annoy", "faiss-hnsw", "ivfpq"])
def test_recall_at_10_against_brute_force_on_lfw_vectors(lfw_catalog, backend):
    face_ids, vectors = _lfw_vectors(lfw_catalog)
    index = FaceIndex(MODEL, backend=backend)  # the default settings
    index.add(face_ids, vectors)
    index.build()
    rng = np.random.default_rng(0)
    q = rng.choice(len(vectors), 400, replace=False)
    got, got_d = index.query(vectors[q], k=10)
    exact_pos, exact_d = exact_search(vectors[q], vectors, 10)
    truth = face_ids[exact_pos]
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)])
    assert recall >= 0.95, f"recall@10 {recall:.3f}"
    # each query finds itself first, and distances agree with numpy's where the ids agree
    assert (got[:, 0] == face_ids[q]).mean() >= 0.99
    agree = (got == truth).all(axis=1)
    assert agree.mean() >= 0.8
    np.testing.assert_allclose(got_d[agree], exact_d[agree], atol=1e-3)
    # same-person neighbours (exact distance < 0.6) are found by the index
    same = [(set(t[d < 0.6]) - {f}) for t, d, f in zip(truth, exact_d, face_ids[q])]
    found = sum(len(s & set(g)) for s, g in zip(same, got))
    total = sum(len(s) for s in same)
    assert total > 50 and found / total >= 0.97, f"same-person recall {found}/{total}"


def _copy_catalog(cat: Catalog, dest: Path) -> Catalog:
    """A writable copy of a read-only fixture catalogue (database, vectors, index; no photo files)."""
    dest.mkdir(parents=True)
    target = sqlite3.connect(dest / "catalog.sqlite")
    with cat._lock:
        cat.db.backup(target)
    target.close()
    for sub in ("vectors", "index"):
        shutil.copytree(cat.root / sub, dest / sub)
    (dest / "raw").mkdir()
    return Catalog(dest)


def test_growing_index_finds_new_faces_and_never_returns_removed_ones(lfw_catalog, faces_dir, tmp_path):
    cat = _copy_catalog(lfw_catalog, tmp_path / "data")
    before = catalog_index.load_index(cat, MODEL)
    segment = before.segment_size
    assert before.removed == 0 and len(before.buffer_ids) == 0
    # collect and embed two photos that are not in LFW
    from iffse_lib.sources.folder import FolderSource

    new_dir = tmp_path / "new"
    new_dir.mkdir()
    for name in ("biden/facerec_train_biden_biden.jpg", "obama/facerec_tests_obama3.jpg"):
        src = faces_dir / "people" / name
        if not src.exists():  # fall back to the first photo of that person
            src = sorted((faces_dir / "people" / name.split("/")[0]).iterdir())[0]
        shutil.copy(src, new_dir / f"{name.split('/')[0]}{src.suffix}")
    pipeline.collect(cat, FolderSource(new_dir), progress=False)
    counts = pipeline.index_photos(cat, progress=False)
    assert counts["photos"] == 2 and counts["vectors"] >= 2
    new_ids = np.array([r[0] for r in cat.query(
        "SELECT f.id FROM faces f JOIN photos p ON p.id=f.photo_id WHERE p.source_kind='folder'")])

    index, info = catalog_index.update_index(cat, MODEL, progress=False)
    assert info["rebuilt"] is False, info
    assert index.segment_size == segment and sorted(index.buffer_ids) == sorted(new_ids)
    assert cat.get_meta("index_stale") == "0"
    _, new_vecs = cat.vectors(MODEL, new_ids)
    ids, dists = catalog_index.load_index(cat, MODEL).query(new_vecs, k=5)
    assert ids[:, 0].tolist() == new_ids.tolist() and np.allclose(dists[:, 0], 0, atol=1e-4)

    # forget one LFW photo (its faces are in the built segment) and one new photo (in the buffer)
    lfw_photo, lfw_face = cat.query("SELECT photo_id, id FROM faces ORDER BY id LIMIT 1")[0]
    new_photo = cat.scalar("SELECT photo_id FROM faces WHERE id=?", (int(new_ids[0]),))
    _, gone_vecs = cat.vectors(MODEL, [lfw_face, int(new_ids[0])])
    cat.remove_photos([lfw_photo, new_photo])
    index = catalog_index.load_index(cat, MODEL)
    assert index.removed >= 1 and int(new_ids[0]) not in index.buffer_ids
    ids, _ = index.query(gone_vecs, k=10)
    assert lfw_face not in ids and int(new_ids[0]) not in ids
    assert len(index) == cat.scalar("SELECT COUNT(*) FROM vectors WHERE model=?", (MODEL,))

    # --rebuild: one segment over exactly the current faces, nothing buffered or masked
    index, info = catalog_index.update_index(cat, MODEL, rebuild=True, progress=False)
    assert info["rebuilt"] and index.removed == 0 and len(index.buffer_ids) == 0
    strict = catalog_index.load_index(cat, MODEL, sync=False)  # covers the catalogue exactly
    assert strict.segment_size == len(index)
    cat.close()


@pytest.mark.parametrize("backend", ["annoy", "faiss-hnsw", "ivfpq", "flat"])
def test_reused_face_id_with_a_new_vector_is_a_new_face(backend):
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    index = FaceIndex("m", dim=8, n_trees=5, backend=backend)
    index.add(np.arange(50), vecs, rows=np.arange(50))
    index.build()
    moved = rng.normal(size=(1, 8)).astype(np.float32) + 10
    # face 49 was deleted and SQLite gave its id to a new face whose vector sits in row 50
    ids, rows = np.arange(50), np.r_[np.arange(49), 50]
    info = index.sync(ids, rows, lambda f, r: moved)
    assert info == {"added": 1, "removed": 1, "buffer": 1, "masked": 1}
    got, d = index.query(moved, k=1)
    assert got[0, 0] == 49 and d[0, 0] < 1e-4
    got, _ = index.query(vecs[49], k=3)
    assert 49 not in got  # the old vector of face 49 is gone
    # masking many segment items still returns k live faces, nearest first
    index.remove(np.arange(40))
    got, d = index.query(vecs[45], k=5)
    assert got[0].tolist() == (exact_search(vecs[45], vecs[40:49], 5)[0][0] + 40).tolist()
    assert (np.diff(d[0]) >= 0).all()


def test_rebuild_threshold_and_buffer_growth():
    assert rebuild_threshold(100) == 1_000 and rebuild_threshold(100_000) == 10_000
    assert rebuild_threshold(10_000_000) == 50_000
    assert default_backend(2_500) == "annoy" and default_backend(999_999) == "faiss-hnsw"
    assert default_backend(1_000_000) == "ivfpq"
    rng = np.random.default_rng(2)
    index = FaceIndex("m", dim=4, n_trees=2)
    index.add(np.arange(100), rng.normal(size=(100, 4)))
    index.build()
    index.add(np.arange(100, 1100), rng.normal(size=(1000, 4)))
    assert not index.needs_rebuild()
    index.add([5000], rng.normal(size=(1, 4)))
    assert index.needs_rebuild()
    with pytest.raises(ValueError, match="unique"):
        index.add([5000], rng.normal(size=(1, 4)))


def test_load_errors_for_other_model_count_and_dimension(tmp_path):
    rng = np.random.default_rng(3)
    index = FaceIndex(MODEL, dim=8, n_trees=3)
    index.add(np.arange(20), rng.normal(size=(20, 8)))
    index.build().save(tmp_path)
    with pytest.raises(IndexMissing, match="iffse index"):
        FaceIndex.load(tmp_path, "torch-resnet-v1")
    # files of one model put under another model's name
    for path in tmp_path.iterdir():
        shutil.copy(path, tmp_path / path.name.replace(MODEL, "other-model"))
    with pytest.raises(ModelMismatch, match="other-model"):
        FaceIndex.load(tmp_path, "other-model")
    with pytest.raises(IndexMismatch, match="iffse index"):
        FaceIndex.load(tmp_path, MODEL, expect_face_ids=np.arange(19))
    with pytest.raises(IndexMismatch):
        FaceIndex.load(tmp_path, MODEL, expect_face_ids=np.arange(1, 21))
    loaded = FaceIndex.load(tmp_path, MODEL, expect_face_ids=np.arange(20)[::-1])
    with pytest.raises(ModelMismatch, match="dimension"):
        loaded.query(np.zeros(16), k=3)


def test_ivfpq_keeps_codes_and_returns_exact_distances_from_the_vector_file(lfw_catalog, tmp_path):
    face_ids, vectors = _lfw_vectors(lfw_catalog)
    index = FaceIndex(MODEL, backend="ivfpq")
    index.add(face_ids, vectors, rows=np.arange(len(face_ids)))
    index.build()
    index.save(tmp_path)
    segment = (tmp_path / f"{MODEL}.faiss").read_bytes()
    assert len(segment) < vectors.nbytes / 2  # codes, a fraction of the float32 vectors
    assert not any(v.astype("<f4").tobytes() in segment for v in vectors[:50])
    loaded = FaceIndex.load(tmp_path, MODEL)
    with pytest.raises(IndexMissing, match="attach"):
        loaded.query(vectors[:1], k=5)
    vector_file = tmp_path / "vectors.npy"
    np.save(vector_file, vectors)
    loaded.attach(np.load(vector_file, mmap_mode="r"))
    got, got_d = loaded.query(vectors[:300], k=10)
    pos = {int(f): i for i, f in enumerate(face_ids)}
    for row, q in enumerate(vectors[:300]):
        exact = np.linalg.norm(vectors[[pos[int(f)] for f in got[row]]] - q, axis=1)
        np.testing.assert_allclose(got_d[row], exact, atol=1e-5)
    truth = face_ids[exact_search(vectors[:300], vectors, 10)[0]]
    assert np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)]) >= 0.95


def test_building_an_index_twice_says_it_is_built():
    index = FaceIndex(MODEL, dim=8, n_trees=3)
    index.add(np.arange(20), np.random.default_rng(5).normal(size=(20, 8)))
    index.build()
    with pytest.raises(IndexAlreadyBuilt, match="built already"):
        index.build()

def test_an_index_of_a_backend_this_iffse_lacks_asks_for_a_rebuild(tmp_path):
    rng = np.random.default_rng(4)
    index = FaceIndex(MODEL, dim=8, n_trees=3)
    index.add(np.arange(20), rng.normal(size=(20, 8)))
    index.build().save(tmp_path)
    meta = tmp_path / f"{MODEL}.json"
    meta.write_text(meta.read_text().replace('"annoy"', '"hnsw"'))  # saved by an older iffse with hnswlib
    with pytest.raises(IndexMissing, match="--rebuild"):
        FaceIndex.load(tmp_path, MODEL)
    meta.write_text(meta.read_text().replace('"faiss-hnsw"', '"nonesuch"').replace('"hnsw"', '"nonesuch"'))
    with pytest.raises(IndexMismatch, match="--rebuild"):
        FaceIndex.load(tmp_path, MODEL)


def test_every_node_of_the_faiss_graph_gets_enough_in_links():
    """Tight clusters leave faces few links pointing at them (searches miss them); after the
    repair nearly every node has HNSW_MIN_IN_LINKS level-0 in-links (a few lose one to a
    replaced link), and every list stays as faiss reads it: filled from its start, no
    self-links, no repeats."""
    import faiss

    from iffse_lib.index_backends import HNSW_MIN_IN_LINKS, reinforce_in_links

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(400, 128)).astype(np.float32)
    vectors = (centres[rng.integers(0, 400, 8000)] + rng.normal(scale=0.05, size=(8000, 128))).astype(np.float32)

    def level0(index):
        hnsw = index.hnsw
        offsets = faiss.vector_to_array(hnsw.offsets).astype(np.int64)
        width = hnsw.nb_neighbors(0)
        return faiss.vector_to_array(hnsw.neighbors)[offsets[:hnsw.levels.size(), None] + np.arange(width)]

    plain = faiss.IndexHNSWFlat(128, 32)
    plain.hnsw.efConstruction = 100  # FaceIndex's: more pruning, more faces with few in-links
    plain.add(vectors)
    before = np.bincount(level0(plain)[level0(plain) >= 0], minlength=len(vectors))
    assert (before < HNSW_MIN_IN_LINKS).mean() > 0.2  # the case the repair is for
    assert reinforce_in_links(plain, vectors) > 0
    links = level0(plain)
    filled = links >= 0
    in_links = np.bincount(links[filled], minlength=len(vectors))
    assert (in_links < HNSW_MIN_IN_LINKS).mean() < 0.01 and in_links.min() >= HNSW_MIN_IN_LINKS - 2
    assert (np.diff(filled.astype(int), axis=1) <= 0).all()  # no gap before the last link
    assert not (links == np.arange(len(vectors))[:, None]).any()
    ordered = np.sort(np.where(filled, links, -1 - np.arange(links.shape[1])), axis=1)
    assert not (np.diff(ordered, axis=1) == 0).any()
    # FaceIndex builds it so: each of 200 faces finds itself first.
    index = FaceIndex("clusters", backend="faiss-hnsw")
    index.add(np.arange(len(vectors)), vectors)
    index.build()
    assert level0(index._ann._ann).shape == links.shape
    built = level0(index._ann._ann)
    assert (np.bincount(built[built >= 0], minlength=len(vectors)) < HNSW_MIN_IN_LINKS).mean() < 0.01
    ids, dists = index.query(vectors[:200], k=1)
    assert ids[:, 0].tolist() == list(range(200)) and float(dists.max()) < 1e-3


def test_a_large_graph_takes_more_candidates_per_query_by_default(tmp_path, monkeypatch):
    """efSearch defaults to HNSW_EF, and to HNSW_EF_LARGE from HNSW_EF_LARGE_FROM faces on (1M
    here, lowered for the test); a search_k given is used as it is."""
    from iffse_lib import index_backends

    assert index_backends.default_ef(999_999) == index_backends.HNSW_EF == 128
    assert index_backends.default_ef(1_000_000) == index_backends.HNSW_EF_LARGE == 352
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    index = FaceIndex("hand", dim=16, backend="faiss-hnsw")
    index.add(np.arange(300), vectors, rows=np.arange(300))
    index.build()
    graph = index._ann._ann
    index.query(vectors[0], k=10)
    assert index.effective_search_k(10) == graph.hnsw.efSearch == 128
    monkeypatch.setattr(index_backends, "HNSW_EF_LARGE_FROM", 300)
    ids, _ = index.query(vectors[0], k=10)
    assert index.effective_search_k(10) == graph.hnsw.efSearch == 352 and ids[0, 0] == 0
    index.query(vectors[0], k=10, search_k=64)
    assert graph.hnsw.efSearch == 64


def test_ivfpq_probes_a_share_of_its_lists_by_default_and_keeps_that_rule_on_load(tmp_path):
    """nprobe defaults to IVF_PROBE_SHARE of the lists (at least IVF_NPROBE_MIN); a search_k given
    is used as it is; a saved index keeps the rule, not a number."""
    from iffse_lib import index_backends

    assert index_backends.default_nprobe(4096) == 384 and index_backends.default_nprobe(66) == 32
    assert index_backends.default_nprobe(8) == 8
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2_000, 32)).astype(np.float32)
    vectors = centres[rng.integers(0, 2_000, 40_000)] + 0.1 * rng.normal(size=(40_000, 32)).astype(np.float32)
    index = FaceIndex("hand", dim=32, backend="ivfpq")
    index.add(np.arange(40_000), vectors, rows=np.arange(40_000))
    index.build()
    index.attach(vectors)
    ivf = index._ann._ann
    assert ivf.nlist == 800 and index.effective_search_k(10) == 75
    ids, d = index.query(vectors[:200], k=10)
    truth, exact_d = exact_search(vectors[:200], vectors, 10)
    assert ivf.nprobe == 75
    assert np.mean([len(set(g) & set(t)) / 10 for g, t in zip(ids, truth)]) >= 0.95
    np.testing.assert_allclose(d[:, 0], exact_d[:, 0], atol=1e-5)  # re-ranked: exact distances
    index.query(vectors[0], k=10, search_k=5)
    assert ivf.nprobe == 5
    index.save(tmp_path)
    loaded = FaceIndex.load(tmp_path, "hand")
    loaded.attach(vectors)
    assert loaded.effective_search_k(10) == 75 and loaded.query(vectors[0], k=1)[0][0, 0] == 0
