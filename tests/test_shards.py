"""Index shards on a real Dask LocalCluster: exact shards answer as exact search over everything,
ANN shards keep the recall of one index, a worker killed mid-query costs nothing, and the
`iffse index --shards` / `iffse search --workers` commands agree with unsharded search."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from iffse_lib import shards
from iffse_lib.catalog import Catalog
from iffse_lib.index import FaceIndex, exact_search

from conftest import iffse, one_line_error

#: real Dask LocalClusters, a worker killed mid-query; make test-fast leaves these out
pytestmark = pytest.mark.slow

MODEL = "dlib-resnet-v1"


@pytest.fixture(scope="module")
def client():
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture(scope="module")
def face_vectors():
    """Face-like vectors: 3,000 photos of 500 people (tight clusters, norms near 1), odd face ids."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 0.09, (500, 128)) + rng.normal(0, 0.05, 128)
    people = rng.integers(0, 500, 3000)
    vectors = (centres[people] + rng.normal(0, 0.03, (3000, 128))).astype(np.float32)
    return np.arange(3000) * 3 + 7, vectors


def _sharded(client, tmp_path, face_ids, vectors, n_shards, backend):
    directory = tmp_path / f"{backend}-{n_shards}"
    np.save(tmp_path / "vectors.npy", vectors)
    rows = np.arange(len(face_ids))
    manifest = shards.build_shards(directory, MODEL, face_ids, rows, lambda ids, r: vectors[r], n_shards,
                                   backend=backend)
    assert sum(manifest["counts"]) == len(face_ids) and min(manifest["counts"]) > 0
    return shards.ShardedIndex(client, directory, MODEL, vector_path=tmp_path / "vectors.npy")


def _recall(got, truth):
    return np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, truth)])


def test_shard_of_spreads_ids_evenly_and_is_stable():
    ids = np.arange(100_000) * 7 + 3
    counts = np.bincount(shards.shard_of(ids, 8), minlength=8)
    assert counts.min() > 0.95 * len(ids) / 8
    np.testing.assert_array_equal(shards.shard_of(ids, 8), shards.shard_of(ids.copy(), 8))


def test_exact_shards_answer_as_exact_search_over_all_faces(client, face_vectors, tmp_path):
    face_ids, vectors = face_vectors
    sharded = _sharded(client, tmp_path, face_ids, vectors, 3, "flat")
    assert len(sharded) == len(face_ids)
    # each shard lives on a worker, loaded once
    homes = {s: a.where().result() for s, a in sharded.actors.items()}
    assert len(homes) == 3 and len(set(homes.values())) == 2
    queries = vectors[::7] + np.float32(0.01)
    got, got_d = sharded.query(queries, k=10)  # the whole batch: one call per shard
    pos, exact_d = exact_search(queries, vectors, 10)
    np.testing.assert_array_equal(got, face_ids[pos])
    np.testing.assert_allclose(got_d, exact_d, atol=1e-5)
    # asked for more than a shard holds: padded, nearest first
    got, got_d = sharded.query(vectors[:2], k=len(face_ids) + 5)
    assert (got[:, -5:] == -1).all() and np.isinf(got_d[:, -5:]).all()
    assert sorted(got[0, :-5].tolist()) == sorted(face_ids.tolist())
    assert {s: a.where().result() for s, a in sharded.actors.items()} == homes  # nothing was reloaded


def test_ann_shards_keep_the_recall_of_one_index(client, face_vectors, tmp_path):
    face_ids, vectors = face_vectors
    queries = vectors[::5] + np.float32(0.02)
    truth = face_ids[exact_search(queries, vectors, 10)[0]]
    for backend in ("faiss-hnsw", "annoy", "ivfpq"):
        whole = FaceIndex(MODEL, backend=backend)
        whole.add(face_ids, vectors, rows=np.arange(len(face_ids)))
        whole.build()
        whole.attach(vectors)  # ivfpq re-ranks from the vectors, as the shards do from the file
        one = _recall(whole.query(queries, 10)[0], truth)
        sharded = _sharded(client, tmp_path, face_ids, vectors, 4, backend)
        got, got_d = sharded.query(queries, k=10)
        assert (np.diff(got_d, axis=1) >= 0).all()
        assert _recall(got, truth) >= one - 0.01, (backend, _recall(got, truth), one)


def test_a_worker_killed_mid_query_is_replaced_and_the_answer_is_complete(client, face_vectors, tmp_path):
    face_ids, vectors = face_vectors
    sharded = _sharded(client, tmp_path, face_ids, vectors, 2, "flat")
    rng = np.random.default_rng(0)
    queries = (np.tile(vectors, (60, 1)) + rng.normal(0, 0.01, (60 * len(vectors), vectors.shape[1]))).astype(
        np.float32)  # ~150,000 queries: each shard works for a while
    victim = sharded.actors[0].where().result()
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(zip(("ids", "d"), sharded.query(queries, k=5))))
    thread.start()
    time.sleep(0.3)
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive() and sharded.retries >= 1
    assert sharded.actors[0].where().result() != victim
    pos, exact_d = exact_search(queries[::97], vectors, 5)
    np.testing.assert_array_equal(answer["ids"][::97], face_ids[pos])
    np.testing.assert_allclose(answer["d"][::97], exact_d, atol=1e-5)


def test_index_shards_and_search_workers_commands(small_copy, lfw_dir):
    photo = next(p for p in sorted(lfw_dir.rglob("*.jpg")))
    whole = json.loads(iffse("search", photo, "-k", "5", "--json", data=small_copy, check=0).stdout)
    out = iffse("index", "--shards", "2", "--backend", "flat", data=small_copy, check=0).stdout
    assert "2 index shards" in out and "rebuilt" in out
    assert "up to date" in iffse("index", data=small_copy, check=0).stdout  # kept while the faces are the same
    sharded = json.loads(iffse("search", photo, "-k", "5", "--workers", "2", "--json", data=small_copy,
                               check=0).stdout)

    def matches(report):
        return [[(m["face_id"], round(m["distance"], 5)) for m in face["matches"]] for face in report]
    assert matches(sharded) == matches(whole) and matches(whole)[0]
    with Catalog(small_copy, readonly=True) as cat:
        first = int(cat.faces(MODEL)["photo_id"].iloc[0])
    iffse("forget", "--photo", first, data=small_copy, check=0)
    line = one_line_error(iffse("search", photo, "--workers", "1", data=small_copy))
    assert "iffse index --shards 2" in line
    assert "rebuilt" in iffse("index", data=small_copy, check=0).stdout.split("index shards")[1]
    assert iffse("search", "--workers", "0", photo, data=small_copy).returncode == 2
