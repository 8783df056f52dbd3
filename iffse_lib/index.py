"""FaceIndex: an approximate nearest-neighbour segment, an exact buffer, the id map and the model tag.

Metric: euclidean distance (dlib's face ResNet is trained for it; 0.6 is its same-person
threshold). :func:`exact_search` is the brute-force baseline (numpy, batched) used to check recall.

Backends (``backend=``, one class each in :mod:`iffse_lib.index_backends`):

- ``"annoy"`` (default below :data:`GRAPH_FROM` faces): spotify/annoy. ``n_trees=50`` and
  ``search_k = -1``, which here means ``index_backends.ANNOY_SEARCH_K_FACTOR * n_trees * k`` nodes inspected per
  query: 4x Annoy's own default, because on the LFW subset's real vectors Annoy's default finds
  only 92% of the exact top 10 and 4x finds 98% (tests/test_index.py). Memory-mapped on load.
- ``"faiss-hnsw"`` (default from :data:`GRAPH_FROM` to :data:`COMPRESSED_FROM` faces): faiss's
  HNSW graph (``hnsw_m=32`` links per node, ``hnsw_ef_construction=100``; ``search_k`` is
  ``efSearch``, default 128, 352 from 1M faces on: ``index_backends.default_ef``). Read into
  memory on load.
- ``"ivfpq"`` (default from :data:`COMPRESSED_FROM` faces on): faiss fast-scan IVF-PQ codes (32
  bytes a face) whose candidates are re-ranked with the catalogue's float32 vectors,
  memory-mapped (:meth:`FaceIndex.attach`): exact distances, a fraction of the memory;
  ``search_k`` is the lists probed, default 3/32 of them (``index_backends.default_nprobe``).
- ``"flat"``: exact search over a copy of the vectors (shards that must equal exact search).

See ``benchmarks/index.py`` for the trade-off measured on face-like vectors, and the README
("Choosing the index backend") for which one ``iffse index`` builds.

An index that grows. No backend is rebuilt when a few faces arrive: the built *segment*
stays, faces added after :meth:`FaceIndex.build` go to an exact brute-force *buffer*, and a
query merges both. Faces that left the catalogue are masked out of the segment and are never
returned (:meth:`FaceIndex.sync` brings an index in line with the catalogue's current faces).
:meth:`FaceIndex.needs_rebuild` says when the buffer plus the masked faces pass
:func:`rebuild_threshold` (10% of the segment, at least 1,000 and at most 50,000 faces);
``iffse index`` then rebuilds, or on ``--rebuild``, or when forgotten faces must be erased.

Backends store integer ids 0..n-1 only; the index keeps ``face_ids[i]`` for item ``i``
and ``rows[i]``, the row of the face's vector in the catalogue's vector file (rows are never
reused, face ids may be, so a face id with a new row is a new face). A saved index is four files
in one folder; the buffer is not saved, it is rebuilt from the catalogue on load::

    index/<model>.ann        Annoy's file, memory-mapped on load   (<model>.faiss for faiss, .npy flat)
    index/<model>.ids.npy    int64 face ids, one per item
    index/<model>.rows.npy   int64 vector-file rows, one per item (-1: unknown)
    index/<model>.json       model tag, backend, dim, metric, settings, count, fingerprint of the ids
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from . import config
from .errors import IndexAlreadyBuilt, IndexMismatch, IndexMissing, ModelMismatch
from .index_backends import (BACKENDS as BACKEND_CLASSES, HNSW_EF_CONSTRUCTION, HNSW_M,
                             RERANK_FACTOR, exact_search)

METRICS = ("euclidean", "angular")
BACKENDS = tuple(BACKEND_CLASSES)
#: ``iffse index`` builds a faiss HNSW graph from this many faces on, Annoy trees below it, and
#: IVF-PQ codes from COMPRESSED_FROM faces on (see :func:`default_backend` and the README's
#: "Choosing the index backend").
GRAPH_FROM = 100_000
COMPRESSED_FROM = 1_000_000
#: Every file name a segment has had (one is kept, the others are deleted on save).
SEGMENT_SUFFIXES = (".ann", ".hnsw", ".faiss", ".flat.npy")
#: Older index descriptions name backends this way.
OLD_NAMES = {"hnsw": "faiss-hnsw"}

#: The buffer (plus masked faces) may grow to this share of the segment before a rebuild …
REBUILD_FRACTION = 0.10
#: … but a rebuild is never asked for below this many faces (exact search over them is cheap) …
REBUILD_MIN = 1_000
#: … and always above this many (exact search over 50k x 128 costs ~5 ms a query on one core).
REBUILD_MAX = 50_000

log = logging.getLogger(__name__)


def default_backend(n_faces: int) -> str:
    """The backend ``iffse index`` builds for ``n_faces`` when none is asked for.

    Below :data:`GRAPH_FROM` faces Annoy (memory-mapped and shared between processes, seeded, built
    in seconds; 98% recall@10 on the LFW subset); from there on faiss's HNSW graph, the fastest
    of the graph libraries measured at equal recall on 100k and 1M face-like vectors; from
    :data:`COMPRESSED_FROM` faces on faiss's IVF-PQ, which on 1M face-like vectors in the same run
    as the graph matched its recall at a higher speed (recall@10 0.986, same-person 0.998, 24x
    exact search at 384 lists, against 0.985, 0.997, 20x at efSearch 352), built in 51 s instead
    of 746 s, in a 58 MB file instead of 763 MB (benchmarks/index.py, README "Choosing the index
    backend").
    """
    if n_faces >= COMPRESSED_FROM:
        return "ivfpq"
    return "faiss-hnsw" if n_faces >= GRAPH_FROM else "annoy"


def rebuild_threshold(segment_size: int) -> int:
    """How many buffered plus removed faces a segment of this size tolerates before a rebuild."""
    return int(min(max(REBUILD_FRACTION * segment_size, REBUILD_MIN), REBUILD_MAX))


def fingerprint(face_ids: np.ndarray) -> str:
    """A short hash of a set of face ids (order-independent)."""
    return hashlib.sha256(np.sort(np.asarray(face_ids, dtype="<i8")).tobytes()).hexdigest()[:16]


class FaceIndex:
    """Approximate nearest neighbours over face vectors of one model, plus an exact buffer.

    >>> index = FaceIndex("dlib-resnet-v1", dim=128)
    >>> index.add(face_ids, vectors); index.build(); index.save("data/index")
    >>> index.add(new_ids, new_vectors)      # after build: into the exact buffer
    >>> ids, dists = index.query(vector, k=10)
    """

    def __init__(self, model_tag: str, dim: int = 128, metric: str = "euclidean",
                 n_trees: int = config.DEFAULT_N_TREES, search_k: int = -1, seed: int = 0,
                 backend: str = "annoy", hnsw_m: int = HNSW_M, hnsw_ef_construction: int = HNSW_EF_CONSTRUCTION,
                 nprobe: int | None = None, rerank: int = RERANK_FACTOR):
        backend = OLD_NAMES.get(backend, backend)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        if n_trees < 1 or hnsw_m < 2 or hnsw_ef_construction < 1 or (nprobe is not None and nprobe < 1) or rerank < 1:
            raise ValueError("n_trees, nprobe and rerank must be >= 1, hnsw_m >= 2")
        if dim < 1:
            raise ValueError("dim must be >= 1")
        self.model_tag = model_tag
        self.dim = dim
        self.metric = metric
        self.n_trees = n_trees
        self.search_k = search_k
        self.seed = seed
        self.backend = backend
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self.nprobe = nprobe
        self.rerank = rerank
        self._ann = BACKEND_CLASSES[backend](dim, metric, self._settings())
        self._built = False
        self._pending: list[np.ndarray] = []  # vectors waiting for build()
        #: the segment: face id and vector-file row of each item
        self.face_ids = np.zeros(0, dtype=np.int64)
        self.rows = np.zeros(0, dtype=np.int64)
        self._dead = np.zeros(0, dtype=bool)
        self._n_dead = 0
        #: the exact buffer
        self.buffer_ids = np.zeros(0, dtype=np.int64)
        self.buffer_rows = np.zeros(0, dtype=np.int64)
        self.buffer_vectors = np.zeros((0, dim), dtype=np.float32)

    def _settings(self) -> dict:
        return {"n_trees": self.n_trees, "hnsw_m": self.hnsw_m, "hnsw_ef_construction": self.hnsw_ef_construction,
                "nprobe": self.nprobe, "rerank": self.rerank}

    def attach(self, vectors: np.ndarray) -> None:
        """Read segment items' float32 vectors from ``vectors`` (the catalogue's memory-mapped vector
        file, indexed by :attr:`rows`); the ``ivfpq`` backend re-ranks its candidates with them."""
        rows = self.rows

        def vectors_of(items: np.ndarray) -> np.ndarray:
            r = rows[items]
            if (r < 0).any():
                raise IndexMismatch("this index does not know the vector-file rows of its faces. "
                                    "Run `iffse index --rebuild`.")
            return np.asarray(vectors[r], dtype=np.float32)

        self._ann.attach(vectors_of)

    # -- sizes -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Faces a query can return: live segment items plus the buffer."""
        return len(self.face_ids) - self._n_dead + len(self.buffer_ids)

    @property
    def segment_size(self) -> int:
        return len(self.face_ids)

    @property
    def removed(self) -> int:
        """Segment items masked out because their faces left the catalogue."""
        return self._n_dead

    def __repr__(self) -> str:
        return (f"FaceIndex({self.model_tag!r}, backend={self.backend!r}, segment={self.segment_size}, "
                f"buffer={len(self.buffer_ids)}, removed={self._n_dead}, metric={self.metric!r}, "
                f"n_trees={self.n_trees}, built={self._built})")

    def effective_search_k(self, k: int, search_k: int | None = None) -> int:
        """What a query inspects: Annoy's nodes, faiss HNSW's ``efSearch``, IVF's lists probed."""
        return self._ann.effective_search_k(k, self.search_k if search_k is None else search_k)

    def needs_rebuild(self) -> bool:
        """True when the buffer plus the removed faces pass :func:`rebuild_threshold`."""
        return len(self.buffer_ids) + self._n_dead > rebuild_threshold(self.segment_size)

    # -- adding ------------------------------------------------------------------------------
    def _check(self, face_ids, vectors, rows):
        face_ids = np.asarray(face_ids, dtype=np.int64).ravel()
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(face_ids):
            raise ValueError(f"expected {len(face_ids)} vectors of dimension {self.dim}, got {vectors.shape}")
        rows = np.full(len(face_ids), -1, np.int64) if rows is None else np.asarray(rows, np.int64).ravel()
        if len(rows) != len(face_ids):
            raise ValueError(f"expected {len(face_ids)} rows, got {len(rows)}")
        return face_ids, vectors, rows

    def add(self, face_ids: np.ndarray, vectors: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Add faces. Before :meth:`build` they go into the segment, after it into the exact buffer.

        Face ids must be unique among the faces a query can return. ``rows`` (optional) are the
        vectors' rows in the catalogue's vector file, used by :meth:`sync`.
        """
        face_ids, vectors, rows = self._check(face_ids, vectors, rows)
        if self._built:
            live = self.face_ids[~self._dead] if self._n_dead else self.face_ids
            taken = np.concatenate([live, self.buffer_ids])
            if len(np.unique(face_ids)) != len(face_ids) or np.isin(face_ids, taken).any():
                raise ValueError("face ids added to a FaceIndex must be unique")
            self.buffer_ids = np.concatenate([self.buffer_ids, face_ids])
            self.buffer_rows = np.concatenate([self.buffer_rows, rows])
            self.buffer_vectors = np.concatenate([self.buffer_vectors, vectors])
            return
        all_ids = np.concatenate([self.face_ids, face_ids])
        if len(np.unique(all_ids)) != len(all_ids):
            raise ValueError("face ids added to a FaceIndex must be unique")
        self._pending.append(vectors)
        self.face_ids = all_ids
        self.rows = np.concatenate([self.rows, rows])

    def build(self, n_jobs: int = -1) -> "FaceIndex":
        """Build the segment over the faces added so far."""
        if self._built:
            raise IndexAlreadyBuilt("this index is built already; faces added now go to its exact buffer")
        if len(self.face_ids) == 0:
            raise IndexMissing("nothing to index: add vectors first")
        data = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)  # no copy of one
        self._pending = []
        self._ann.build(data, n_jobs, self.seed)
        if self.backend == "ivfpq" and self._ann._vectors_of is None:
            self._ann.attach(lambda items: data[items])  # until attach(): the vectors it was built from
        self._dead = np.zeros(len(self.face_ids), dtype=bool)
        self._n_dead = 0
        self._built = True
        return self

    # -- keeping in line with the catalogue --------------------------------------------------
    def remove(self, face_ids: np.ndarray) -> int:
        """Never return these faces again (masked in the segment, dropped from the buffer)."""
        face_ids = np.asarray(face_ids, dtype=np.int64).ravel()
        in_seg = np.isin(self.face_ids, face_ids) & ~self._dead
        self._dead |= in_seg
        self._n_dead = int(self._dead.sum())
        keep = ~np.isin(self.buffer_ids, face_ids)
        gone = int(in_seg.sum()) + int((~keep).sum())
        self.buffer_ids, self.buffer_rows = self.buffer_ids[keep], self.buffer_rows[keep]
        self.buffer_vectors = self.buffer_vectors[keep]
        return gone

    def sync(self, face_ids: np.ndarray, rows: np.ndarray | None,
             vectors_of: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[str, int]:
        """Match the index to the catalogue's current faces of this model.

        ``face_ids`` (and their vector-file ``rows``) are every face that should be searchable;
        segment items whose face is gone (or whose face id now has another row) are masked, and
        faces the index lacks are fetched with ``vectors_of(face_ids, rows) -> (n, dim)`` into the buffer.
        Returns counts ``{"added": …, "removed": …}``.
        """
        if not self._built:
            raise IndexMissing("build or load the index before syncing it")
        face_ids = np.asarray(face_ids, dtype=np.int64).ravel()
        rows = np.full(len(face_ids), -1, np.int64) if rows is None else np.asarray(rows, np.int64).ravel()
        order = np.argsort(face_ids, kind="stable")
        cur_ids, cur_rows = face_ids[order], rows[order]
        known_ids = np.concatenate([self.face_ids, self.buffer_ids])
        known_rows = np.concatenate([self.rows, self.buffer_rows])
        known_live = np.concatenate([~self._dead, np.ones(len(self.buffer_ids), bool)])
        # A (face id, row) pair identifies a vector; row -1 (unknown) matches any row.
        at = np.minimum(np.searchsorted(cur_ids, known_ids), max(len(cur_ids) - 1, 0))
        if len(cur_ids):
            r = cur_rows[at]
            present = (cur_ids[at] == known_ids) & ((r < 0) | (known_rows < 0) | (r == known_rows))
        else:
            present = np.zeros(len(known_ids), bool)
        stale = known_live & ~present
        n_seg = len(self.face_ids)
        self._dead |= stale[:n_seg]
        self._n_dead = int(self._dead.sum())
        keep = ~stale[n_seg:]
        self.buffer_ids, self.buffer_rows = self.buffer_ids[keep], self.buffer_rows[keep]
        self.buffer_vectors = self.buffer_vectors[keep]
        need = ~np.isin(cur_ids, known_ids[known_live & present])
        missing, missing_rows = cur_ids[need], cur_rows[need]
        if len(missing):
            self.add(missing, vectors_of(missing, missing_rows), missing_rows)
        return {"added": int(len(missing)), "removed": int(stale.sum()),
                "buffer": int(len(self.buffer_ids)), "masked": self._n_dead}

    def dead_items(self) -> np.ndarray:
        """Per segment item: True when its face left the catalogue (masked, never returned)."""
        return self._dead.copy()

    def item_vectors(self, items: np.ndarray) -> np.ndarray:
        """The vectors the segment stores for these item numbers (to check them against the catalogue)."""
        return self._ann.item_vectors(np.asarray(items, dtype=np.int64))

    # -- files -------------------------------------------------------------------------------
    def _paths(self, directory: str | Path) -> dict[str, Path]:
        d = Path(directory)
        return {"segment": d / f"{self.model_tag}{BACKEND_CLASSES[self.backend].suffix}",
                "others": [d / f"{self.model_tag}{suffix}" for suffix in SEGMENT_SUFFIXES],
                "ids": d / f"{self.model_tag}.ids.npy", "rows": d / f"{self.model_tag}.rows.npy",
                "meta": d / f"{self.model_tag}.json"}

    def save(self, directory: str | Path, catalog_id: str | None = None) -> Path:
        """Write the segment into ``directory``; files are replaced atomically, the json last.

        ``catalog_id`` records the catalogue the index belongs to (:meth:`load` refuses it for
        another one). The buffer is not written: :meth:`sync` refills it from the catalogue after
        :meth:`load`. A file of the other backend is deleted, so no old vectors stay behind.
        """
        if not self._built:
            raise IndexMissing("build the index before saving it")
        paths = self._paths(directory)
        ann = paths["segment"]
        ann.parent.mkdir(parents=True, exist_ok=True)
        self._ann.save(ann)
        for key, arr in (("ids", self.face_ids), ("rows", self.rows)):
            np.save(paths[key].with_suffix(".tmp.npy"), arr)
            os.replace(paths[key].with_suffix(".tmp.npy"), paths[key])
        info = {"model_tag": self.model_tag, "backend": self.backend, "dim": self.dim, "metric": self.metric,
                "search_k": self.search_k, **self._settings(), "count": self.segment_size,
                "fingerprint": fingerprint(self.face_ids), "catalog_id": catalog_id,
                "rows_fingerprint": fingerprint(self.rows)}
        meta = paths["meta"]
        meta.with_suffix(".json.tmp").write_text(json.dumps(info, indent=2))
        os.replace(meta.with_suffix(".json.tmp"), meta)
        for other in paths["others"]:  # no file of another backend keeps old vectors
            if other != ann and other.exists():
                other.unlink()
        return ann

    @classmethod
    def load(cls, directory: str | Path, model_tag: str, expect_face_ids: np.ndarray | None = None,
             search_k: int | None = None, catalog_id: str | None = None) -> "FaceIndex":
        """Load a saved segment (Annoy memory-maps its file); the buffer starts empty.

        With ``catalog_id``, an index saved for another catalogue (or with no record of its
        catalogue) raises IndexMismatch. With ``expect_face_ids`` (the catalogue's faces that have
        vectors of ``model_tag``), a segment built over other faces raises IndexMismatch. To accept
        a grown or shrunk catalogue instead, load without it and call :meth:`sync`.
        """
        paths = cls(model_tag)._paths(directory)
        meta = paths["meta"]
        if not meta.exists():
            raise IndexMissing(f"no index for model {model_tag!r} in {directory}. Run `iffse index`.")
        try:
            info = json.loads(meta.read_text())
            info["model_tag"], info["count"], info["dim"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexMismatch(f"{meta} is not an index description ({exc}). Run `iffse index --rebuild`.") from None
        if info["model_tag"] != model_tag:
            raise ModelMismatch(f"{meta} was built for model {info['model_tag']!r}, not {model_tag!r}")
        if catalog_id is not None and info.get("catalog_id") != catalog_id:
            raise IndexMismatch(f"the index in {directory} belongs to another catalogue (or records none). "
                                "Run `iffse index --rebuild`.")
        backend = OLD_NAMES.get(info.get("backend", "annoy"), info.get("backend"))
        if backend not in BACKENDS:
            raise IndexMismatch(f"{meta} names the index backend {backend!r}, which this iffse does not know. "
                                "Run `iffse index --rebuild`.")
        settings = {key: info[key] for key in ("n_trees", "hnsw_m", "hnsw_ef_construction", "nprobe", "rerank")
                    if key in info}
        index = cls(model_tag, dim=info["dim"], metric=info["metric"],
                    search_k=info["search_k"] if search_k is None else search_k, backend=backend, **settings)
        ann = index._paths(directory)["segment"]
        if not ann.exists():
            raise IndexMissing(f"{ann} is missing. Run `iffse index --rebuild`.")
        try:
            index.face_ids = np.load(paths["ids"])
            index.rows = (np.load(paths["rows"]) if paths["rows"].exists()
                          else np.full(len(index.face_ids), -1, np.int64))
        except (OSError, ValueError, EOFError) as exc:
            raise IndexMismatch(f"{paths['ids']} cannot be read ({exc}). Run `iffse index --rebuild`.") from None
        if len(index.face_ids) != info["count"] or len(index.rows) != info["count"]:
            raise IndexMismatch(f"{paths['ids']} holds {len(index.face_ids)} ids, {meta} says {info['count']}. "
                                "Run `iffse index --rebuild`.")
        if expect_face_ids is not None:
            expect_face_ids = np.asarray(expect_face_ids, dtype=np.int64)
            if len(expect_face_ids) != info["count"] or fingerprint(expect_face_ids) != info["fingerprint"]:
                raise IndexMismatch(
                    f"the index in {directory} covers {info['count']} faces of {model_tag!r} but the catalogue "
                    f"has {len(expect_face_ids)} other or more faces. Run `iffse index` to bring it up to date.")
        try:
            n_items = index._ann.load(ann)
        except (OSError, RuntimeError, ValueError) as exc:
            raise IndexMismatch(f"{ann} cannot be read ({exc}). Run `iffse index --rebuild`.") from None
        if n_items != info["count"]:
            raise IndexMismatch(f"{ann} holds {n_items} items, {meta} says {info['count']}. "
                                "Run `iffse index --rebuild`.")
        index._dead = np.zeros(info["count"], dtype=bool)
        index._built = True
        return index

    # -- queries -----------------------------------------------------------------------------
    def _segment_query(self, q: np.ndarray, k: int, sk: int) -> tuple[np.ndarray, np.ndarray]:
        """Item numbers and distances of the segment's k nearest items for one query vector."""
        return self._ann.query(q, k, sk)

    def query(self, vectors: np.ndarray, k: int = config.DEFAULT_K,
              search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(face_ids (n, k), distances (n, k)) for each query vector; -1 / inf pad short rows.

        Merges the segment's approximate neighbours (removed faces left out) with the buffer's
        exact ones.
        """
        if not self._built:
            raise IndexMissing("build or load the index before querying it")
        queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise ModelMismatch(f"query vectors have dimension {queries.shape[1]}, the index {self.dim}")
        sk = self.search_k if search_k is None else search_k
        n_seg = self.segment_size
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_d = np.full((len(queries), k), np.inf, dtype=np.float32)
        if len(self.buffer_ids):
            bpos, bdist = exact_search(queries, self.buffer_vectors, k, self.metric)
        if n_seg and k > 0:  # the whole batch in one call, then rows short of live faces again
            want = min(n_seg, k + min(self._n_dead, k))
            seg_items, seg_d = self._ann.query_batch(queries, want, sk)
        for row, q in enumerate(queries):
            ids = np.zeros(0, np.int64)
            dists = np.zeros(0, np.float32)
            if n_seg and k > 0:
                items, dists = seg_items[row], seg_d[row]
                ok = items >= 0
                items, dists = items[ok], dists[ok]
                want = min(n_seg, k + min(self._n_dead, k))
                while True:
                    if self._n_dead:
                        live = ~self._dead[items]
                        items, dists = items[live], dists[live]
                    if len(items) >= k or want >= n_seg:
                        break
                    want = min(n_seg, want * 2)
                    items, dists = self._segment_query(q, want, sk)
                ids = self.face_ids[items]
            if len(self.buffer_ids):
                ok = bpos[row] >= 0
                ids = np.concatenate([ids, self.buffer_ids[bpos[row][ok]]])
                dists = np.concatenate([dists, bdist[row][ok]])
                order = np.argsort(dists, kind="stable")
                ids, dists = ids[order], dists[order]
            m = min(k, len(ids))
            out_ids[row, :m] = ids[:m]
            out_d[row, :m] = dists[:m]
        return out_ids, out_d
