"""FaceIndex: Annoy over face vectors, the map from Annoy ids to face ids, and the model tag.

Metric: euclidean distance (dlib's face ResNet is trained for it; 0.6 is its same-person
threshold). Defaults: ``n_trees=50`` (build time and index size grow linearly with it; recall
rises with it) and ``search_k = -1``, which Annoy reads as ``n_trees * k`` nodes inspected per
query. :func:`exact_search` is the brute-force baseline (numpy, batched) used to check recall.

Annoy stores integer ids 0..n-1 only; the index keeps ``face_ids[i]`` for Annoy item ``i``. A saved
index is three files in one folder::

    index/<model>.ann        Annoy's file, memory-mapped on load
    index/<model>.ids.npy    int64 face ids, one per Annoy item
    index/<model>.json       model tag, dim, metric, n_trees, count and a fingerprint of the face ids
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import config
from .errors import IndexMismatch, IndexMissing, ModelMismatch

METRICS = ("euclidean", "angular")


def fingerprint(face_ids: np.ndarray) -> str:
    """A short hash of a set of face ids (order-independent)."""
    return hashlib.sha256(np.sort(np.asarray(face_ids, dtype="<i8")).tobytes()).hexdigest()[:16]


def exact_search(queries: np.ndarray, vectors: np.ndarray, k: int, metric: str = "euclidean",
                 batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: (positions (n, k), distances (n, k)) of each query's k nearest rows of ``vectors``."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    k_eff = min(k, n)
    pos = np.full((len(queries), k), -1, dtype=np.int64)
    dist = np.full((len(queries), k), np.inf, dtype=np.float32)
    if k_eff == 0:
        return pos, dist
    if metric == "angular":
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    sq = np.einsum("ij,ij->i", vectors, vectors)
    for start in range(0, len(queries), batch):
        q = queries[start:start + batch]
        d2 = sq[None, :] - 2.0 * (q @ vectors.T) + np.einsum("ij,ij->i", q, q)[:, None]
        np.maximum(d2, 0, out=d2)
        part = np.argpartition(d2, k_eff - 1, axis=1)[:, :k_eff] if k_eff < n else np.tile(np.arange(n), (len(q), 1))
        part_d = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(part_d, axis=1, kind="stable")
        pos[start:start + len(q), :k_eff] = np.take_along_axis(part, order, axis=1)
        dist[start:start + len(q), :k_eff] = np.sqrt(np.take_along_axis(part_d, order, axis=1))
    return pos, dist


class FaceIndex:
    """Approximate nearest neighbours over face vectors of one model.

    >>> index = FaceIndex("dlib-resnet-v1", dim=128)
    >>> index.add(face_ids, vectors); index.build(); index.save("data/index")
    >>> ids, dists = index.query(vector, k=10)
    """

    def __init__(self, model_tag: str, dim: int = 128, metric: str = "euclidean",
                 n_trees: int = config.DEFAULT_N_TREES, search_k: int = -1, seed: int = 0):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
        if n_trees < 1:
            raise ValueError("n_trees must be >= 1")
        self.model_tag = model_tag
        self.dim = dim
        self.metric = metric
        self.n_trees = n_trees
        self.search_k = search_k
        self.seed = seed
        self._annoy = None
        self._built = False
        self._ids: list[np.ndarray] = []
        self.face_ids = np.zeros(0, dtype=np.int64)
        self._vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.face_ids)

    def __repr__(self) -> str:
        return (f"FaceIndex({self.model_tag!r}, n={len(self)}, metric={self.metric!r}, "
                f"n_trees={self.n_trees}, built={self._built})")

    def _new_annoy(self):
        from annoy import AnnoyIndex

        return AnnoyIndex(self.dim, self.metric)

    def add(self, face_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add faces before :meth:`build`. Face ids must be unique."""
        if self._built:
            raise IndexMismatch("this index is built; Annoy cannot add items after build (make a new FaceIndex)")
        face_ids = np.asarray(face_ids, dtype=np.int64).ravel()
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(face_ids):
            raise ValueError(f"expected {len(face_ids)} vectors of dimension {self.dim}, got {vectors.shape}")
        if self._annoy is None:
            self._annoy = self._new_annoy()
            self._annoy.set_seed(self.seed)
        base = len(self.face_ids)
        for i, v in enumerate(vectors):
            self._annoy.add_item(base + i, v)
        self.face_ids = np.concatenate([self.face_ids, face_ids])
        self._vectors = vectors if self._vectors is None else np.vstack([self._vectors, vectors])
        if len(np.unique(self.face_ids)) != len(self.face_ids):
            raise ValueError("face ids added to a FaceIndex must be unique")

    def build(self, n_jobs: int = -1) -> "FaceIndex":
        if self._annoy is None:
            raise IndexMissing("nothing to index: add vectors first")
        self._annoy.build(self.n_trees, n_jobs)
        self._built = True
        return self

    def _paths(self, directory: str | Path) -> tuple[Path, Path, Path]:
        d = Path(directory)
        return d / f"{self.model_tag}.ann", d / f"{self.model_tag}.ids.npy", d / f"{self.model_tag}.json"

    def save(self, directory: str | Path) -> Path:
        """Write the index into ``directory``; files are replaced atomically."""
        if not self._built:
            raise IndexMissing("build the index before saving it")
        ann, ids, meta = self._paths(directory)
        ann.parent.mkdir(parents=True, exist_ok=True)
        tmp = ann.with_suffix(".ann.tmp")
        self._annoy.save(str(tmp))
        # Annoy's save() leaves the index loaded from tmp; unload and reload from the final name.
        self._annoy.unload()
        os.replace(tmp, ann)
        np.save(ids.with_suffix(".tmp.npy"), self.face_ids)
        os.replace(ids.with_suffix(".tmp.npy"), ids)
        info = {"model_tag": self.model_tag, "dim": self.dim, "metric": self.metric, "n_trees": self.n_trees,
                "search_k": self.search_k, "count": len(self), "fingerprint": fingerprint(self.face_ids)}
        meta.with_suffix(".json.tmp").write_text(json.dumps(info, indent=2))
        os.replace(meta.with_suffix(".json.tmp"), meta)
        self._annoy = self._new_annoy()
        self._annoy.load(str(ann))
        return ann

    @classmethod
    def load(cls, directory: str | Path, model_tag: str, expect_face_ids: np.ndarray | None = None,
             search_k: int | None = None) -> "FaceIndex":
        """Load a saved index (Annoy memory-maps its file).

        With ``expect_face_ids`` (the catalogue's faces that have vectors of ``model_tag``), an
        index built over other faces raises IndexMismatch.
        """
        probe = cls(model_tag)
        ann, ids, meta = probe._paths(directory)
        if not meta.exists() or not ann.exists():
            raise IndexMissing(f"no index for model {model_tag!r} in {directory}. Run `iffse index`.")
        info = json.loads(meta.read_text())
        if info["model_tag"] != model_tag:
            raise ModelMismatch(f"{meta} was built for model {info['model_tag']!r}, not {model_tag!r}")
        index = cls(model_tag, dim=info["dim"], metric=info["metric"], n_trees=info["n_trees"],
                    search_k=info["search_k"] if search_k is None else search_k)
        index.face_ids = np.load(ids)
        if len(index.face_ids) != info["count"]:
            raise IndexMismatch(f"{ids} holds {len(index.face_ids)} ids, {meta} says {info['count']}")
        if expect_face_ids is not None:
            expect_face_ids = np.asarray(expect_face_ids, dtype=np.int64)
            if len(expect_face_ids) != info["count"] or fingerprint(expect_face_ids) != info["fingerprint"]:
                raise IndexMismatch(
                    f"the index in {directory} covers {info['count']} faces of {model_tag!r} but the catalogue "
                    f"has {len(expect_face_ids)} other or more faces. Run `iffse index` to rebuild it.")
        index._annoy = index._new_annoy()
        index._annoy.load(str(ann))
        if index._annoy.get_n_items() != info["count"]:
            raise IndexMismatch(f"{ann} holds {index._annoy.get_n_items()} items, {meta} says {info['count']}")
        index._built = True
        return index

    def query(self, vectors: np.ndarray, k: int = config.DEFAULT_K,
              search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(face_ids (n, k), distances (n, k)) for each query vector; -1 / inf pad short rows."""
        if not self._built:
            raise IndexMissing("build or load the index before querying it")
        queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise ModelMismatch(f"query vectors have dimension {queries.shape[1]}, the index {self.dim}")
        sk = self.search_k if search_k is None else search_k
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
        for row, q in enumerate(queries):
            items, dists = self._annoy.get_nns_by_vector(q, k, search_k=sk, include_distances=True)
            out_ids[row, :len(items)] = self.face_ids[items]
            out_d[row, :len(items)] = dists
        return out_ids, out_d
