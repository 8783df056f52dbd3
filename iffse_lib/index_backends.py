"""The approximate nearest-neighbour structures behind :class:`iffse_lib.index.FaceIndex`, one class each.

Every backend stores items 0..n-1 (FaceIndex keeps the item -> face map), answers one query
vector at a time with euclidean distances (``angular``: Annoy's ``sqrt(2 - 2 cos)``, the
euclidean distance of unit vectors), and writes one file. Chosen by measurement on face-like
vectors (``benchmarks/index.py``; README "Choosing the index backend"):

- ``annoy``: spotify/annoy trees, memory-mapped on load; the small-catalogue default.
- ``faiss-hnsw``: faiss ``IndexHNSWFlat`` (graph; float32 vectors inside, read into memory on
  load); the default from :data:`iffse_lib.index.GRAPH_FROM` faces on, up to
  :data:`iffse_lib.index.COMPRESSED_FROM`.
- ``ivfpq``: faiss ``IndexIVFPQFastScan`` (inverted lists of 32-byte product-quantised codes,
  16x smaller than the vectors, scanned with SIMD). Its candidates are re-ranked with the float32
  vectors memory-mapped from the catalogue, so the distances returned are exact; the default
  from :data:`iffse_lib.index.COMPRESSED_FROM` faces on.
- ``flat``: exact search (numpy) over a copy of the vectors; for shards whose answers must equal
  unsharded exact search.

None of them keeps a removed face's bytes once rebuilt; ``catalog_index.update_index`` rebuilds on
``forget`` (meta key ``index_erase:<model>``) for every backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DependencyMissing, IndexMissing

#: faiss HNSW: links per node, candidates while building, candidates per query (``search_k``).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 100
HNSW_EF = 128
#: From this many faces on, a query takes HNSW_EF_LARGE candidates by default: in a larger graph
#: a query's neighbours lie farther apart. Measured on 1M face-like vectors (benchmarks/index.py,
#: docs/scale.md): efSearch 128 gives recall@10 0.940 and same-person recall 0.983, 352 gives
#: 0.985 and 0.997 at 22x exact search.
HNSW_EF_LARGE_FROM = 1_000_000
HNSW_EF_LARGE = 352
#: faiss HNSW: after building, every node gets at least this many level-0 in-links (see
#: :func:`reinforce_in_links`).
HNSW_MIN_IN_LINKS = 8
#: IVF-PQ: bytes per code (128 dims in 64 sub-quantisers of 4 bits, faiss's fast-scan layout,
#: which scans codes with SIMD), candidates re-ranked per returned match, lists at most.
PQ_BYTES = 32
RERANK_FACTOR = 20
MAX_LISTS = 4096
#: IVF-PQ: a query probes this share of the inverted lists by default, and at least
#: IVF_NPROBE_MIN of them. Measured on 10M face-like vectors in 4,096 lists (benchmarks/index.py,
#: docs/scale.md): 384 lists give same-person recall 0.996 and recall@10 0.975 in 11.7 ms a
#: query; 256 lists 0.988 and 0.963 in 8.5 ms; 128 lists 0.964 and 0.921.
IVF_PROBE_SHARE = 3 / 32
IVF_NPROBE_MIN = 32
#: search_k=-1 inspects this many times Annoy's own default of n_trees * k nodes.
ANNOY_SEARCH_K_FACTOR = 4


def faiss():
    try:
        import faiss as _faiss
    except ImportError:
        raise DependencyMissing("the faiss-hnsw and ivfpq backends need faiss: pip install faiss-cpu "
                                "(or use backend='annoy')") from None
    return _faiss


def _threads(n_jobs: int) -> int:
    return (os.cpu_count() or 1) if n_jobs == -1 else max(1, n_jobs)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


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


class Backend:
    """Items 0..n-1 of one ANN structure. Subclasses set ``name`` and ``suffix``."""

    name = ""
    suffix = ""

    def __init__(self, dim: int, metric: str, settings: dict):
        self.dim, self.metric, self.settings = dim, metric, settings
        self._ann = None

    def _prep(self, v: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(np.atleast_2d(v), dtype=np.float32)
        return _unit(v) if self.metric == "angular" else v

    def build(self, vectors: np.ndarray, n_jobs: int = -1, seed: int = 0) -> None:
        raise NotImplementedError

    def query(self, q: np.ndarray, k: int, search_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Item numbers and distances of the k nearest items to one vector."""
        raise NotImplementedError

    def query_batch(self, queries: np.ndarray, k: int, search_k: int) -> tuple[np.ndarray, np.ndarray]:
        """(items (n, k), distances (n, k)) for many vectors at once; -1 / inf pad short rows."""
        items = np.full((len(queries), k), -1, np.int64)
        dists = np.full((len(queries), k), np.inf, np.float32)
        for row, q in enumerate(queries):
            i, d = self.query(q, k, search_k)
            items[row, :len(i)], dists[row, :len(i)] = i, d
        return items, dists

    def effective_search_k(self, k: int, search_k: int) -> int:
        return max(search_k, k)

    def save(self, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path) -> int:
        """Read ``path``; returns the items it holds."""
        raise NotImplementedError

    def item_vectors(self, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def attach(self, vectors_of_items: Callable[[np.ndarray], np.ndarray]) -> None:
        """Where the float32 vectors of items are read from (for backends that re-rank)."""


class AnnoyBackend(Backend):
    name, suffix = "annoy", ".ann"

    def _new(self):
        from annoy import AnnoyIndex

        return AnnoyIndex(self.dim, self.metric)

    def build(self, vectors, n_jobs=-1, seed=0):
        self._ann = self._new()
        self._ann.set_seed(seed)
        for i, v in enumerate(np.asarray(vectors, np.float32)):
            self._ann.add_item(i, v)
        self._ann.build(self.settings["n_trees"], n_jobs)

    def effective_search_k(self, k, search_k):
        return search_k if search_k > 0 else ANNOY_SEARCH_K_FACTOR * self.settings["n_trees"] * k

    def query(self, q, k, search_k):
        items, dists = self._ann.get_nns_by_vector(q, k, search_k=self.effective_search_k(k, search_k),
                                                   include_distances=True)
        return np.asarray(items, np.int64), np.asarray(dists, np.float32)

    def save(self, path):
        tmp = path.with_name(path.name + ".tmp")
        self._ann.save(str(tmp))
        # Annoy's save() leaves the index loaded from tmp; unload and reload from the final name.
        self._ann.unload()
        os.replace(tmp, path)
        self.load(path)

    def load(self, path):
        self._ann = self._new()
        self._ann.load(str(path))  # memory-mapped
        return self._ann.get_n_items()

    def item_vectors(self, items):
        return np.array([self._ann.get_item_vector(int(i)) for i in items], np.float32).reshape(-1, self.dim)


class FaissBackend(Backend):
    """Saving and loading shared by the faiss indexes."""

    suffix = ".faiss"

    def save(self, path):
        tmp = path.with_name(path.name + ".tmp")
        faiss().write_index(self._ann, str(tmp))
        os.replace(tmp, path)

    def load(self, path):
        self._ann = faiss().read_index(str(path))
        self._configure()
        return int(self._ann.ntotal)

    def _configure(self) -> None:
        pass

    def _search(self, q: np.ndarray, k: int):
        f = faiss()
        f.omp_set_num_threads(1)  # one query: threads cost more than they save
        d, items = self._ann.search(self._prep(q), k)
        return items[0].astype(np.int64), d[0]


class FaissHNSWBackend(FaissBackend):
    name = "faiss-hnsw"

    def build(self, vectors, n_jobs=-1, seed=0):
        f = faiss()
        f.omp_set_num_threads(_threads(n_jobs))
        ann = f.IndexHNSWFlat(self.dim, self.settings["hnsw_m"])
        ann.hnsw.efConstruction = self.settings["hnsw_ef_construction"]
        data = self._prep(vectors)
        ann.add(data)
        reinforce_in_links(ann, data, HNSW_MIN_IN_LINKS)
        self._ann = ann

    def effective_search_k(self, k, search_k):
        return max(search_k if search_k > 0 else default_ef(self._ann.ntotal if self._ann is not None else 0), k)

    def query(self, q, k, search_k):
        self._ann.hnsw.efSearch = self.effective_search_k(k, search_k)
        items, d2 = self._search(q, k)
        ok = items >= 0
        return items[ok], np.sqrt(np.maximum(d2[ok], 0)).astype(np.float32)

    def query_batch(self, queries, k, search_k):
        faiss().omp_set_num_threads(os.cpu_count() or 1)  # a batch: one query per thread
        self._ann.hnsw.efSearch = self.effective_search_k(k, search_k)
        d2, items = self._ann.search(self._prep(queries), k)
        ok = items >= 0
        return np.where(ok, items, -1).astype(np.int64), np.where(ok, np.sqrt(np.maximum(d2, 0)), np.inf).astype(
            np.float32)

    def item_vectors(self, items):
        return np.stack([self._ann.reconstruct(int(i)) for i in items]) if len(items) else np.zeros((0, self.dim),
                                                                                                      np.float32)


def default_nprobe(n_lists: int) -> int:
    """The IVF-PQ index's lists probed when a query gives none, for an index of ``n_lists`` lists."""
    return int(min(n_lists, max(IVF_NPROBE_MIN, round(n_lists * IVF_PROBE_SHARE))))


def default_ef(n: int) -> int:
    """The HNSW graph's efSearch when a query gives none, for a graph of ``n`` faces."""
    return HNSW_EF_LARGE if n >= HNSW_EF_LARGE_FROM else HNSW_EF


def reinforce_in_links(index, vectors: np.ndarray, min_in: int = HNSW_MIN_IN_LINKS) -> int:
    """Give every node of a built faiss HNSW graph (``index``, an ``IndexHNSWFlat`` over
    ``vectors``) at least ``min_in`` level-0 in-links; returns how many links were written.

    A search reaches a node only through links pointing at it. In tight same-person clusters the
    construction's pruning leaves many faces with few in-links, and those are the same-person
    faces a search misses. Each such node's nearest neighbours (found by searching the graph
    for it, nearest first) link to it: in a free slot of their list, else in place of their
    farthest links, never touching the nearer half of a list. Vectorised over the graph's
    public arrays (``hnsw.neighbors``, ``hnsw.offsets``); a list stays filled from its start, as
    faiss reads it.
    """
    f = faiss()
    hnsw = index.hnsw
    n = hnsw.levels.size()
    offsets = f.vector_to_array(hnsw.offsets).astype(np.int64)
    neighbors = f.vector_to_array(hnsw.neighbors)
    width = hnsw.nb_neighbors(0)
    level0 = neighbors[offsets[:n, None] + np.arange(width)]
    filled = level0 >= 0
    count = filled.sum(1)
    need = np.maximum(min_in - np.bincount(level0[filled], minlength=n), 0)
    targets = np.flatnonzero(need)
    if n < 2 or not len(targets):
        return 0
    ef, hnsw.efSearch = hnsw.efSearch, max(hnsw.efSearch, 4 * min_in)
    try:
        _, src = index.search(np.ascontiguousarray(vectors[targets], dtype=np.float32), min(n, 2 * min_in + 1))
    finally:
        hnsw.efSearch = ef
    tgt = np.broadcast_to(targets[:, None], src.shape)
    ok = (src >= 0) & (src != tgt)
    ok &= ~(level0[np.where(ok, src, 0)] == tgt[..., None]).any(-1)  # not linked already
    ok &= np.cumsum(ok, axis=1) - 1 < need[targets, None]
    u, v = src[ok], tgt[ok]
    order = np.argsort(u, kind="stable")
    u, v = u[order], v[order]
    starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
    rank = np.arange(len(u)) - np.repeat(starts, np.diff(np.r_[starts, len(u)]))  # i-th new link of u
    free = width - count[u]
    slot = np.where(rank < free, count[u] + rank, count[u] - 1 - (rank - free))
    keep = (rank < free) | (slot >= width // 2)
    neighbors[offsets[u[keep]] + slot[keep]] = v[keep]
    f.copy_array_to_vector(neighbors, hnsw.neighbors)
    return int(keep.sum())


class IVFPQBackend(FaissBackend):
    """IVF-PQ candidates re-ranked with exact distances from the float32 vectors (``attach``)."""

    name = "ivfpq"

    def __init__(self, dim, metric, settings):
        super().__init__(dim, metric, settings)
        self._vectors_of: Callable[[np.ndarray], np.ndarray] | None = None

    @staticmethod
    def n_lists(n: int) -> int:
        """Inverted lists for n vectors: about 4 sqrt(n), at most n / 39 (faiss wants >= 39 per list)
        and :data:`MAX_LISTS` (training cost grows with lists x training points)."""
        return int(max(1, min(4 * np.sqrt(n), n // 39, MAX_LISTS)))

    def build(self, vectors, n_jobs=-1, seed=0, train_on: int = 200_000):
        f = faiss()
        f.omp_set_num_threads(_threads(n_jobs))
        n = len(vectors)
        nlist = self.n_lists(n)
        m = max(d for d in range(1, min(2 * PQ_BYTES, self.dim) + 1) if self.dim % d == 0)  # 4-bit sub-quantisers
        ann = f.IndexIVFPQFastScan(f.IndexFlatL2(self.dim), self.dim, nlist, m, 4)
        ann.cp.seed = ann.pq.cp.seed = seed
        rng = np.random.default_rng(seed)
        sample = self._prep(np.asarray(vectors[np.sort(rng.choice(n, min(n, max(train_on, 50 * nlist)),
                                                                  replace=False))]))
        if len(sample) < 39 * 16:  # a tiny index repeats its vectors, so that each sub-quantiser's 16
            sample = np.resize(sample, (39 * 16, self.dim))  # centroids get the 39 points faiss asks for
        ann.train(sample)
        for s in range(0, n, 200_000):  # vectors may be a memory map: a slice at a time
            ann.add(self._prep(np.asarray(vectors[s:s + 200_000])))
        self._ann = ann
        self._configure()

    def _configure(self):
        self._ann.nprobe = self.effective_search_k(0, -1)

    def attach(self, vectors_of_items):
        self._vectors_of = vectors_of_items

    def effective_search_k(self, k, search_k):
        return search_k if search_k > 0 else (self.settings.get("nprobe") or default_nprobe(self._ann.nlist))

    def query(self, q, k, search_k):
        if self._vectors_of is None:
            raise IndexMissing("the ivfpq index re-ranks from the catalogue's vectors: load it with "
                               "catalog_index.load_index (or attach the vectors) before querying")
        self._ann.nprobe = self.effective_search_k(k, search_k)
        items, _ = self._search(q, k * self.settings.get("rerank", RERANK_FACTOR))
        items = items[items >= 0]
        order_rows = np.argsort(items)  # read the memory map in file order
        vecs = np.empty((len(items), self.dim), np.float32)
        vecs[order_rows] = self._prep(self._vectors_of(items[order_rows])) if len(items) else vecs[:0]
        d = np.linalg.norm(vecs - self._prep(q)[0], axis=1).astype(np.float32)
        best = np.argsort(d, kind="stable")[:k]
        return items[best], d[best]

    def item_vectors(self, items):
        if self._vectors_of is None:
            raise IndexMissing("the ivfpq index keeps codes, not vectors; attach the catalogue's vectors")
        return self._vectors_of(np.asarray(items, np.int64))


class FlatBackend(Backend):
    """Exact search over a float32 copy of the vectors (``.npy``, memory-mapped on load)."""

    name, suffix = "flat", ".flat.npy"

    def build(self, vectors, n_jobs=-1, seed=0):
        self._ann = self._prep(np.asarray(vectors))

    def query(self, q, k, search_k):
        pos, d = self.query_batch(np.atleast_2d(q), k, search_k)
        ok = pos[0] >= 0
        return pos[0][ok], d[0][ok]

    def query_batch(self, queries, k, search_k):
        return exact_search(queries, self._ann, k, self.metric)

    def save(self, path):
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, self._ann)
        os.replace(tmp, path)

    def load(self, path):
        self._ann = np.load(path, mmap_mode="r")
        return len(self._ann)

    def item_vectors(self, items):
        return np.asarray(self._ann[np.asarray(items, np.int64)], np.float32)


BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (AnnoyBackend, FaissHNSWBackend, IVFPQBackend, FlatBackend)}
