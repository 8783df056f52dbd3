"""FaceIndex: an approximate nearest-neighbour segment, an exact buffer, the id map and the model tag.

Metric: euclidean distance (dlib's face ResNet is trained for it; 0.6 is its same-person
threshold). :func:`exact_search` is the brute-force baseline (numpy, batched) used to check recall.

Backends (``backend=``):

- ``"annoy"`` (default): spotify/annoy. ``n_trees=50`` (build time and index size grow linearly
  with it; recall rises with it) and ``search_k = -1``, which here means
  ``ANNOY_SEARCH_K_FACTOR * n_trees * k`` nodes inspected per query: 4x Annoy's own default,
  because on the LFW subset's real vectors Annoy's default (``n_trees * k``) finds only 92% of
  the exact top 10 and 4x finds 98% (tests/test_index.py). The file is memory-mapped on load,
  so several processes share it.
- ``"hnsw"``: nmslib/hnswlib (graph index; ``hnsw_m=32`` links per node, ``hnsw_ef_construction=100``;
  then every node given >= 8 in-links, see ``reinforce_hnsw``; ``search_k`` is hnswlib's ``ef``,
  candidates kept per query, default 512). The whole graph is
  read into memory on load. See ``benchmarks/index.py`` for the trade-off measured on face-like
  vectors, and the README ("Choosing the index backend") for which one ``iffse index`` builds.

An index that grows. Neither backend is rebuilt when a few faces arrive: the built *segment*
stays, faces added after :meth:`FaceIndex.build` go to an exact brute-force *buffer*, and a
query merges both. Faces that left the catalogue are masked out of the segment and are never
returned (:meth:`FaceIndex.sync` brings an index in line with the catalogue's current faces).
:meth:`FaceIndex.needs_rebuild` says when the buffer plus the masked faces pass
:func:`rebuild_threshold` (10% of the segment, at least 1,000 and at most 50,000 faces);
``iffse index`` then rebuilds, or on ``--rebuild``.

Annoy and hnswlib store integer ids 0..n-1 only; the index keeps ``face_ids[i]`` for item ``i``
and ``rows[i]``, the row of the face's vector in the catalogue's vector file (rows are never
reused, face ids may be, so a face id with a new row is a new face). A saved index is four files
in one folder; the buffer is not saved, it is rebuilt from the catalogue on load::

    index/<model>.ann        Annoy's file, memory-mapped on load   (<model>.hnsw for hnswlib)
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
from .errors import DependencyMissing, IndexMismatch, IndexMissing, ModelMismatch

METRICS = ("euclidean", "angular")
BACKENDS = ("annoy", "hnsw")
#: ``iffse index`` builds an hnswlib graph from this many faces on, Annoy trees below it (see
#: :func:`default_backend` and the README's "Choosing the index backend").
HNSW_FROM = 100_000

#: The buffer (plus masked faces) may grow to this share of the segment before a rebuild …
REBUILD_FRACTION = 0.10
#: … but a rebuild is never asked for below this many faces (exact search over them is cheap) …
REBUILD_MIN = 1_000
#: … and always above this many (exact search over 50k x 128 costs ~5 ms a query on one core).
REBUILD_MAX = 50_000

#: search_k=-1 inspects this many times Annoy's own default of n_trees * k nodes.
ANNOY_SEARCH_K_FACTOR = 4

#: hnswlib defaults: links per node, construction candidates, query candidates. Measured on a
#: million face-like vectors (benchmarks/index.py, README "Choosing the index backend"): with
#: the graph reinforced (>= 8 in-links), ef=512 gives recall@10 0.987 and same-person recall
#: 0.992 at 13x exact search's single-query speed (ef=256: 0.974 / 0.986 at 28x).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 100
HNSW_EF = 512
#: after the build, nodes with fewer links pointing at them get more (reinforce_hnsw)
HNSW_MIN_IN_LINKS = 8
#: The hnswlib releases whose private serialised layout reinforce_hnsw knows.
HNSW_LAYOUT_RELEASES = "0.8."

log = logging.getLogger(__name__)


def hnswlib_version() -> str | None:
    """The installed hnswlib's version (it has no ``__version__``), or None when unknown."""
    from importlib import metadata

    try:
        return metadata.version("hnswlib")
    except metadata.PackageNotFoundError:
        return None


def reinforce_hnsw(ann, min_in_links: int):
    """hnswlib's graph with every node given at least ``min_in_links`` links *into* it on level 0.

    hnswlib keeps a node's out-links diverse (its neighbour-selection heuristic), which on face
    vectors, where each person is a tight cluster, leaves many photos with a single out-link to
    their person's most central photo and one or no links pointing at them: a search can only
    reach them through those few links, so it misses them even when they are the query's nearest
    faces and ``ef`` is large (on 100k face-like vectors, 0.6% of the nodes had no in-link and a
    third of the misses at ``ef=1024`` were those). This adds, for each such node, links from its
    nearest 1- and 2-hop graph neighbours that have room (level 0 holds up to ``2*M`` links and
    most nodes use far fewer), nearest first, as the reverse edges that NSG and Vamana add for
    connectivity. It works on hnswlib's own serialised state and returns a new index.

    That state is private: with an hnswlib release other than 0.8.x, the graph is returned as
    hnswlib built it, with a logged warning.
    """
    version = hnswlib_version()
    if version is None or not version.startswith(HNSW_LAYOUT_RELEASES):
        log.warning("hnswlib %s: not reinforcing the graph's in-links (reinforce_hnsw knows the private "
                    "layout of hnswlib %sx only); some faces may be harder to reach at low ef",
                    version or "of unknown version", HNSW_LAYOUT_RELEASES)
        return ann
    hnswlib = _hnswlib()
    state = ann.__getstate__()[0]
    size, m0, count, dim = (state["size_data_per_element"], state["max_M0"], state["cur_element_count"],
                            state["dim"])
    table = np.asarray(state["data_level0"])[:count * size].reshape(count, size)
    # per node: uint16 link count (then 2 flag bytes), max_M0 uint32 links, the vector, the label
    counts = table[:, :2].copy().view(np.uint16)[:, 0].astype(np.int64)
    links = table[:, 4:4 + 4 * m0].copy().view(np.uint32)
    vecs = table[:, state["offset_data"]:state["offset_data"] + 4 * dim].copy().view(np.float32)
    indeg = np.bincount(links[np.arange(m0)[None, :] < counts[:, None]], minlength=count)
    for x in np.nonzero(indeg < min_in_links)[0]:
        out = links[x, :counts[x]]
        cand = np.unique(np.concatenate([out] + [links[y, :counts[y]] for y in out[:8]]))
        cand = cand[(cand != x) & (counts[cand] < m0)]
        if not len(cand):
            continue
        need = min_in_links - indeg[x]
        for y in cand[np.argsort(((vecs[cand] - vecs[x]) ** 2).sum(1))]:
            if (links[y, :counts[y]] == x).any():
                continue
            links[y, counts[y]] = x
            counts[y] += 1
            need -= 1
            if need <= 0:
                break
    table[:, 4:4 + 4 * m0] = links.view(np.int8).reshape(count, -1)
    table[:, :2] = counts.astype(np.uint16)[:, None].view(np.int8)
    out_index = hnswlib.Index.__new__(hnswlib.Index)
    out_index.__setstate__((state,))
    return out_index


def default_backend(n_faces: int) -> str:
    """The backend ``iffse index`` builds for ``n_faces`` when none is asked for.

    Below :data:`HNSW_FROM` faces Annoy (memory-mapped and shared between processes, seeded, built
    in seconds; 98% recall@10 on the LFW subset); from there on hnswlib, which at equal recall
    answers 4-5x more queries per second than Annoy on 100k and 1M face-like vectors, and is
    the one of the two that reaches recall@10 >= 0.95 at 10x exact speed on a million
    (benchmarks/index.py).
    """
    return "hnsw" if n_faces >= HNSW_FROM else "annoy"


def rebuild_threshold(segment_size: int) -> int:
    """How many buffered plus removed faces a segment of this size tolerates before a rebuild."""
    return int(min(max(REBUILD_FRACTION * segment_size, REBUILD_MIN), REBUILD_MAX))


def fingerprint(face_ids: np.ndarray) -> str:
    """A short hash of a set of face ids (order-independent)."""
    return hashlib.sha256(np.sort(np.asarray(face_ids, dtype="<i8")).tobytes()).hexdigest()[:16]


def exact_search(queries: np.ndarray, vectors: np.ndarray, k: int, metric: str = "euclidean",
                 batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: (positions (n, k), distances (n, k)) of each query's k nearest rows of ``vectors``.

    Angular distances are Annoy's: ``sqrt(2 - 2 cos)``. Rows short of k are padded with -1 / inf.
    """
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
        # |q|^2 - 2 q.v + |v|^2 loses ~1e-3 to cancellation near 0: recompute the k winners directly.
        part_d = np.linalg.norm(vectors[part] - q[:, None, :], axis=2)
        order = np.argsort(part_d, axis=1, kind="stable")
        pos[start:start + len(q), :k_eff] = np.take_along_axis(part, order, axis=1)
        dist[start:start + len(q), :k_eff] = np.take_along_axis(part_d, order, axis=1)
    return pos, dist


def _hnswlib():
    try:
        import hnswlib
    except ImportError:
        raise DependencyMissing("the hnsw backend needs hnswlib: HNSWLIB_NO_NATIVE=1 pip install hnswlib "
                                "(or use backend='annoy')") from None
    return hnswlib


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
                 hnsw_min_in_links: int = HNSW_MIN_IN_LINKS):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        if n_trees < 1:
            raise ValueError("n_trees must be >= 1")
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
        if hnsw_min_in_links < 0:
            raise ValueError("hnsw_min_in_links must be >= 0")
        #: after building, every hnswlib node gets at least this many in-links (see reinforce_hnsw)
        self.hnsw_min_in_links = hnsw_min_in_links
        self._ann = None
        self._built = False
        self._pending: list[np.ndarray] = []  # hnsw: vectors waiting for build()
        #: the segment: face id and vector-file row of each item
        self.face_ids = np.zeros(0, dtype=np.int64)
        self.rows = np.zeros(0, dtype=np.int64)
        self._dead = np.zeros(0, dtype=bool)
        self._n_dead = 0
        #: the exact buffer
        self.buffer_ids = np.zeros(0, dtype=np.int64)
        self.buffer_rows = np.zeros(0, dtype=np.int64)
        self.buffer_vectors = np.zeros((0, dim), dtype=np.float32)

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
        """What a query inspects: Annoy's nodes per query, or hnswlib's ``ef``."""
        sk = self.search_k if search_k is None else search_k
        if self.backend == "annoy":
            return sk if sk > 0 else ANNOY_SEARCH_K_FACTOR * self.n_trees * k
        return max(sk if sk > 0 else HNSW_EF, k)

    def needs_rebuild(self) -> bool:
        """True when the buffer plus the removed faces pass :func:`rebuild_threshold`."""
        return len(self.buffer_ids) + self._n_dead > rebuild_threshold(self.segment_size)

    # -- adding ------------------------------------------------------------------------------
    def _new_annoy(self):
        from annoy import AnnoyIndex

        return AnnoyIndex(self.dim, self.metric)

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
        if self.backend == "annoy":
            if self._ann is None:
                self._ann = self._new_annoy()
                self._ann.set_seed(self.seed)
            base = len(self.face_ids)
            for i, v in enumerate(vectors):
                self._ann.add_item(base + i, v)
        else:
            self._pending.append(vectors)
        self.face_ids = all_ids
        self.rows = np.concatenate([self.rows, rows])

    def build(self, n_jobs: int = -1) -> "FaceIndex":
        """Build the segment over the faces added so far."""
        if self._built:
            raise IndexMismatch("this index is built already; faces added now go to its exact buffer")
        if len(self.face_ids) == 0:
            raise IndexMissing("nothing to index: add vectors first")
        if self.backend == "annoy":
            self._ann.build(self.n_trees, n_jobs)
        else:
            hnswlib = _hnswlib()
            data = np.concatenate(self._pending)
            self._pending = []
            ann = hnswlib.Index(space="l2" if self.metric == "euclidean" else "cosine", dim=self.dim)
            ann.init_index(max_elements=len(data), ef_construction=self.hnsw_ef_construction, M=self.hnsw_m,
                           random_seed=self.seed)
            ann.set_num_threads((os.cpu_count() or 1) if n_jobs == -1 else n_jobs)
            ann.add_items(data, np.arange(len(data)))
            if self.hnsw_min_in_links:
                ann = reinforce_hnsw(ann, self.hnsw_min_in_links)
            self._ann = ann
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
        items = np.asarray(items, dtype=np.int64)
        if self.backend == "annoy":
            return np.array([self._ann.get_item_vector(int(i)) for i in items], dtype=np.float32).reshape(-1, self.dim)
        return np.asarray(self._ann.get_items(items), dtype=np.float32).reshape(-1, self.dim)

    # -- files -------------------------------------------------------------------------------
    def _paths(self, directory: str | Path) -> dict[str, Path]:
        d = Path(directory)
        return {"annoy": d / f"{self.model_tag}.ann", "hnsw": d / f"{self.model_tag}.hnsw",
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
        ann = paths[self.backend]
        ann.parent.mkdir(parents=True, exist_ok=True)
        tmp = ann.with_name(ann.name + ".tmp")
        if self.backend == "annoy":
            self._ann.save(str(tmp))
            # Annoy's save() leaves the index loaded from tmp; unload and reload from the final name.
            self._ann.unload()
            os.replace(tmp, ann)
            self._ann = self._new_annoy()
            self._ann.load(str(ann))
        else:
            self._ann.save_index(str(tmp))
            os.replace(tmp, ann)
        for key, arr in (("ids", self.face_ids), ("rows", self.rows)):
            np.save(paths[key].with_suffix(".tmp.npy"), arr)
            os.replace(paths[key].with_suffix(".tmp.npy"), paths[key])
        info = {"model_tag": self.model_tag, "backend": self.backend, "dim": self.dim, "metric": self.metric,
                "n_trees": self.n_trees, "search_k": self.search_k, "hnsw_m": self.hnsw_m,
                "hnsw_ef_construction": self.hnsw_ef_construction,
                "hnsw_min_in_links": self.hnsw_min_in_links, "count": self.segment_size,
                "fingerprint": fingerprint(self.face_ids), "catalog_id": catalog_id,
                "rows_fingerprint": fingerprint(self.rows)}
        meta = paths["meta"]
        meta.with_suffix(".json.tmp").write_text(json.dumps(info, indent=2))
        os.replace(meta.with_suffix(".json.tmp"), meta)
        for other in BACKENDS:
            if other != self.backend and paths[other].exists():
                paths[other].unlink()
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
        backend = info.get("backend", "annoy")
        index = cls(model_tag, dim=info["dim"], metric=info["metric"], n_trees=info["n_trees"],
                    search_k=info["search_k"] if search_k is None else search_k, backend=backend,
                    hnsw_m=info.get("hnsw_m", HNSW_M), hnsw_ef_construction=info.get("hnsw_ef_construction",
                                                                                    HNSW_EF_CONSTRUCTION),
                    hnsw_min_in_links=info.get("hnsw_min_in_links", 0))
        ann = paths[backend]
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
        if backend == "annoy":
            index._ann = index._new_annoy()
            index._ann.load(str(ann))
            n_items = index._ann.get_n_items()
        else:
            hnswlib = _hnswlib()
            index._ann = hnswlib.Index(space="l2" if index.metric == "euclidean" else "cosine", dim=index.dim)
            index._ann.load_index(str(ann), max_elements=info["count"])
            n_items = index._ann.get_current_count()
        if n_items != info["count"]:
            raise IndexMismatch(f"{ann} holds {n_items} items, {meta} says {info['count']}. "
                                "Run `iffse index --rebuild`.")
        index._dead = np.zeros(info["count"], dtype=bool)
        index._built = True
        return index

    # -- queries -----------------------------------------------------------------------------
    def _segment_query(self, q: np.ndarray, k: int, sk: int) -> tuple[np.ndarray, np.ndarray]:
        """Item numbers and distances of the segment's k nearest items for one query vector."""
        if self.backend == "annoy":
            items, dists = self._ann.get_nns_by_vector(q, k, search_k=self.effective_search_k(k, sk),
                                                       include_distances=True)
            return np.asarray(items, np.int64), np.asarray(dists, np.float32)
        self._ann.set_ef(self.effective_search_k(k, sk))
        items, d = self._ann.knn_query(q[None, :], k=k, num_threads=1)
        d = np.maximum(d[0], 0)
        d = np.sqrt(d) if self.metric == "euclidean" else np.sqrt(2.0 * d)  # cosine 1-cos -> Annoy's angular
        return items[0].astype(np.int64), d.astype(np.float32)

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
        for row, q in enumerate(queries):
            ids = np.zeros(0, np.int64)
            dists = np.zeros(0, np.float32)
            if n_seg and k > 0:
                want = min(n_seg, k + min(self._n_dead, k))
                while True:
                    items, dists = self._segment_query(q, want, sk)
                    if self._n_dead:
                        live = ~self._dead[items]
                        items, dists = items[live], dists[live]
                    if len(items) >= k or want >= n_seg:
                        break
                    want = min(n_seg, want * 2)
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
