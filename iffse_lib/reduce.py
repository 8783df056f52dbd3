"""The face vectors seen from above: UMAP to 2-D, clustering into people, and the measurements the
notebooks plot (same/different-person distances, index recall, stage timings).

- :func:`umap_2d` and :func:`trustworthiness`: a 2-D map of the vectors and how well it keeps
  each point's neighbours (scikit-learn's trustworthiness, 1.0 = every 2-D neighbour is a true one).
- :func:`chinese_whispers` (dlib's C++ face clustering, run on the k-NN graph, exact or by
  pynndescent, with edges under the same-person threshold) and :func:`hdbscan` (scikit-learn's
  HDBSCAN, noise points become singletons); :func:`cluster_scores` rates either against identity
  labels.
- :func:`pair_distances`: distances of same-person and different-person pairs, for histograms.
- :func:`index_recall`: recall@k of the Annoy index against exact search.
- :func:`stage_timings`: detect, landmarks, align and embed timed on a sample of catalogued photos.

Nothing here writes to the catalogue.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import config

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


# -- UMAP ---------------------------------------------------------------------------------------

def umap_2d(vectors: np.ndarray, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "euclidean",
            seed: int | None = 0) -> np.ndarray:
    """UMAP of ``vectors`` to (n, 2) float32. A ``seed`` makes it reproducible (and single-threaded)."""
    import umap

    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) < 4:
        raise ValueError(f"UMAP needs at least 4 vectors, got {len(vectors)}")
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(vectors) - 1), min_dist=min_dist,
                        metric=metric, random_state=seed, n_jobs=1 if seed is not None else -1)
    return np.asarray(reducer.fit_transform(vectors), dtype=np.float32)


def trustworthiness(vectors: np.ndarray, embedding: np.ndarray, n_neighbors: int = 10) -> float:
    """scikit-learn's trustworthiness of a 2-D embedding (1.0: no false neighbours in 2-D)."""
    from sklearn.manifold import trustworthiness as _trust

    n_neighbors = min(n_neighbors, len(vectors) // 2 - 1)
    return float(_trust(np.asarray(vectors), np.asarray(embedding), n_neighbors=n_neighbors))


# -- clustering ---------------------------------------------------------------------------------

#: Below this many vectors the clustering k-NN graph is exact (brute force, as UMAP does below
#: 4,096 points); from there on it is pynndescent's approximate graph, which scales past O(n^2).
EXACT_KNN_BELOW = 4096


def knn_graph(vectors: np.ndarray, k: int = 10, exact_below: int = EXACT_KNN_BELOW,
              seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest neighbours of every vector, itself left out: (positions (n, k), distances (n, k)).

    Exact below ``exact_below`` vectors; from there on pynndescent's NN-descent (UMAP's own
    neighbour search), seeded by ``seed``. Missing neighbours are -1 at distance inf.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n < exact_below:
        from .index import exact_search

        pos, dist = exact_search(vectors, vectors, min(k + 1, n))
    else:
        from pynndescent import NNDescent

        log.info("k-NN graph of %d vectors by NN-descent (k=%d)", n, k)
        pos, dist = NNDescent(vectors, n_neighbors=k + 1, metric="euclidean", random_state=seed,
                              low_memory=True).neighbor_graph
    pos, dist = np.asarray(pos, dtype=np.int64), np.asarray(dist, dtype=np.float32)
    # Leave each vector itself out (wherever it ranks; duplicates may come first), keep the first k.
    others = (pos != np.arange(n)[:, None]) & (pos >= 0)
    order = np.argsort(~others, axis=1, kind="stable")
    pos, dist, others = (np.take_along_axis(a, order, axis=1) for a in (pos, dist, others))
    out_p = np.full((n, k), -1, dtype=np.int64)
    out_d = np.full((n, k), np.inf, dtype=np.float32)
    width = min(k, pos.shape[1])
    keep = others[:, :width]
    out_p[:, :width] = np.where(keep, pos[:, :width], -1)
    out_d[:, :width] = np.where(keep, dist[:, :width], np.inf)
    return out_p, out_d


def chinese_whispers(vectors: np.ndarray, threshold: float = config.DEFAULT_THRESHOLD, k: int = 10,
                     seed: int | None = 0, exact_below: int = EXACT_KNN_BELOW) -> np.ndarray:
    """Cluster labels (0..c-1) by dlib's Chinese whispers on the k-NN graph.

    Edges join each vector to its ``k`` nearest neighbours closer than ``threshold`` (dlib's
    same-person distance), weighted ``1 - d / threshold`` so closer faces pull harder; an edge
    both ends list counts once. ``dlib.chinese_whispers`` (Biemann 2006, in C++, 100 passes in a
    fixed random order) then lets every node take the label with the largest summed edge weight
    among its neighbours. The graph comes from :func:`knn_graph` (``seed`` and ``exact_below``).
    """
    import dlib

    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pos, dist = knn_graph(vectors, min(k, max(n - 1, 1)), exact_below=exact_below, seed=seed)
    i = np.repeat(np.arange(n), pos.shape[1])
    j, d = pos.ravel(), dist.ravel()
    near = (j >= 0) & (d < threshold)
    a, b = np.minimum(i[near], j[near]), np.maximum(i[near], j[near])
    w = 1.0 - d[near] / threshold
    # One edge per pair, with the larger weight when both ends list it.
    order = np.lexsort((-w, b, a))
    a, b, w = a[order], b[order], w[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    a, b, w = a[first], b[first], w[first]
    # A node without edges is still a vertex (dlib numbers vertices up to the largest index seen).
    lonely = np.setdiff1d(np.arange(n), np.concatenate([a, b]))
    edges = list(zip(a.tolist(), b.tolist(), w.tolist())) + [(v, v, 0.0) for v in lonely.tolist()]
    labels = np.asarray(dlib.chinese_whispers(edges), dtype=np.int64)
    _, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64)


def hdbscan(vectors: np.ndarray, min_cluster_size: int = 2, min_samples: int | None = 1,
            cluster_selection_epsilon: float = 0.0) -> np.ndarray:
    """Cluster labels from scikit-learn's HDBSCAN; its noise points (-1) become singleton clusters."""
    from sklearn.cluster import HDBSCAN

    labels = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                     cluster_selection_epsilon=cluster_selection_epsilon).fit_predict(np.asarray(vectors))
    labels = np.asarray(labels, dtype=np.int64)
    noise = labels < 0
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(noise.sum())
    return labels


def cluster(vectors: np.ndarray, method: str = "chinese_whispers", threshold: float = config.DEFAULT_THRESHOLD,
            seed: int | None = 0, **kwargs) -> np.ndarray:
    """Cluster labels by ``method``: :func:`chinese_whispers` (with ``threshold`` and ``seed``) or
    :func:`hdbscan` (which has neither: it cuts no distance and draws nothing at random, so they
    are not used). Other keywords go to the method."""
    methods = {"chinese_whispers": chinese_whispers, "hdbscan": hdbscan}
    if method not in methods:
        raise ValueError(f"method must be one of {sorted(methods)}, not {method!r}")
    if method == "chinese_whispers":
        kwargs.update(threshold=threshold, seed=seed)
    return methods[method](vectors, **kwargs)


def cluster_scores(identities: Sequence, labels: Sequence) -> dict[str, float]:
    """How well clusters match identity labels.

    Faces without an identity (None, NaN) are left out of the scores.
    ``purity``: the share of faces whose cluster's majority identity is their own (1.0: no cluster
    mixes people). ``completeness`` (scikit-learn, entropy based): 1.0 when each person's faces
    all fall in one cluster. Also homogeneity, V-measure, adjusted Rand index, the number of
    clusters and of singletons, and the share of faces in clusters of two or more.
    """
    from sklearn import metrics

    if len(identities) != len(labels):
        raise ValueError(f"{len(identities)} identities but {len(labels)} cluster labels")
    keep = labelled(identities)  # unlabelled faces are clustered but not scored
    ident = np.asarray([str(i) for i in np.asarray(identities, dtype=object)[keep]])
    labels = np.asarray(labels)[keep]
    if len(ident) == 0:
        raise ValueError("nothing to score")
    majority = 0
    sizes = []
    for c in np.unique(labels):
        members = ident[labels == c]
        _, counts = np.unique(members, return_counts=True)
        majority += counts.max()
        sizes.append(len(members))
    sizes = np.asarray(sizes)
    return {
        "purity": float(majority / len(ident)),
        "completeness": float(metrics.completeness_score(ident, labels)),
        "homogeneity": float(metrics.homogeneity_score(ident, labels)),
        "v_measure": float(metrics.v_measure_score(ident, labels)),
        "adjusted_rand": float(metrics.adjusted_rand_score(ident, labels)),
        "n_faces": int(len(ident)),
        "n_identities": int(len(np.unique(ident))),
        "n_clusters": int(len(sizes)),
        "n_singletons": int((sizes == 1).sum()),
        "clustered_share": float(sizes[sizes > 1].sum() / len(ident)),
    }


# -- distances ----------------------------------------------------------------------------------

def labelled(identities: Sequence) -> np.ndarray:
    """Boolean mask of the faces that carry an identity (a non-empty string; None and NaN are
    unlabelled faces, e.g. bystanders in a labelled photo; numbers are labels too)."""
    def is_label(i) -> bool:
        if i is None or (isinstance(i, (float, np.floating)) and np.isnan(i)):
            return False
        return str(i) != ""

    return np.array([is_label(i) for i in identities], dtype=bool)


def pair_distances(vectors: np.ndarray, identities: Sequence, max_pairs: int = 20000,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances of (same-person pairs, different-person pairs).

    Every same-person pair is used (up to ``max_pairs``, then a random sample); as many
    different-person pairs are drawn at random (at least 1,000 when there are that many).
    Unlabelled faces (None, NaN: bystanders, unknown people) take part in neither.
    """
    keep = labelled(identities)
    vectors = np.asarray(vectors, dtype=np.float32)[keep]
    ident = np.asarray([str(i) for i in np.asarray(identities, dtype=object)[keep]])
    rng = np.random.default_rng(seed)
    same_i, same_j = [], []
    for name in np.unique(ident):
        idx = np.flatnonzero(ident == name)
        if len(idx) > 1:
            a, b = np.triu_indices(len(idx), 1)
            same_i.append(idx[a])
            same_j.append(idx[b])
    if same_i:
        si, sj = np.concatenate(same_i), np.concatenate(same_j)
        if len(si) > max_pairs:
            pick = rng.choice(len(si), max_pairs, replace=False)
            si, sj = si[pick], sj[pick]
    else:
        si = sj = np.zeros(0, dtype=np.int64)
    n_diff = min(max(len(si), 1000), max_pairs)
    di, dj = rng.integers(0, len(vectors), (2, n_diff * 2)) if len(vectors) > 1 else (np.zeros(0, int),) * 2
    keep = ident[di] != ident[dj]
    di, dj = di[keep][:n_diff], dj[keep][:n_diff]
    same = np.linalg.norm(vectors[si] - vectors[sj], axis=1)
    diff = np.linalg.norm(vectors[di] - vectors[dj], axis=1)
    return same, diff


def threshold_errors(same: np.ndarray, different: np.ndarray, threshold: float) -> dict[str, float]:
    """At ``threshold``: the share of same-person pairs rejected and of different-person pairs accepted."""
    same, different = np.asarray(same), np.asarray(different)
    return {"threshold": float(threshold),
            "false_reject": float((same > threshold).mean()) if len(same) else float("nan"),
            "false_accept": float((different <= threshold).mean()) if len(different) else float("nan"),
            "accuracy": float(((same <= threshold).sum() + (different > threshold).sum())
                              / max(len(same) + len(different), 1))}


# -- index --------------------------------------------------------------------------------------

def index_recall(index, face_ids: np.ndarray, vectors: np.ndarray, k: int = 10,
                 search_ks: Sequence[int] = (-1,), n_queries: int = 500, seed: int = 0) -> pd.DataFrame:
    """Recall@k of an Annoy :class:`~iffse_lib.index.FaceIndex` against exact search.

    Queries are ``n_queries`` catalogued vectors chosen at random; recall is the share of the exact
    k nearest faces that the index returns, averaged over queries, for each ``search_k``
    (-1: the index's default, ``FaceIndex.effective_search_k``). Returns a DataFrame with the query time per query.
    """
    import pandas as pd

    from .index import exact_search

    face_ids = np.asarray(face_ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    rng = np.random.default_rng(seed)
    q = rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False)
    t = time.perf_counter()
    pos, _ = exact_search(vectors[q], vectors, k)
    exact_ms = (time.perf_counter() - t) * 1000 / len(q)
    truth = face_ids[pos]
    rows = []
    for sk in search_ks:
        t = time.perf_counter()
        got, _ = index.query(vectors[q], k, search_k=sk)
        ms = (time.perf_counter() - t) * 1000 / len(q)
        hits = [len(set(g[g >= 0]) & set(tr[tr >= 0])) / max((tr >= 0).sum(), 1) for g, tr in zip(got, truth)]
        rows.append({"search_k": index.effective_search_k(k, sk), "k": k, "recall": float(np.mean(hits)),
                     "ms_per_query": ms, "exact_ms_per_query": exact_ms, "queries": len(q)})
    return pd.DataFrame(rows)


# -- timings ------------------------------------------------------------------------------------

def stage_timings(catalog, n_photos: int = 16, embedder=None, seed: int = 0, detector=None) -> pd.DataFrame:
    """Time load, detect, landmarks, align and embed on ``n_photos`` random catalogued photos.

    ``detector``: a :class:`~iffse_lib.faces.FaceDetector` (None:
    :func:`~iffse_lib.faces.default_detector`).
    Nothing is written; the figures hold whether or not the catalogue is already indexed. The
    models are loaded first, on one photo timed apart (``attrs["load_s"]``), so that the stages and
    the throughput are warm: what every photo after the first costs. Returns a DataFrame (one row
    per stage: total seconds, ms per photo) with ``attrs`` holding the photo and face counts,
    photos per second and faces per second, and the load time.
    """
    import pandas as pd

    from .embedders import get_embedder
    from .faces import default_detector
    from .stages import run_batch

    embedder = embedder or get_embedder()
    detector = detector if detector is not None else default_detector()
    photos = catalog.photos()
    if photos.empty:
        raise ValueError(f"no photos in {catalog.root}; collect some first")
    sample = photos.sample(min(n_photos, len(photos)), random_state=seed)
    t_load = time.perf_counter()  # the detector, landmark and embedding models load on first use
    run_batch([(int(sample["photo_id"].iloc[0]), sample["path"].iloc[0], None)], detector, embedder)
    load_s = time.perf_counter() - t_load
    t_all = time.perf_counter()
    # The pipeline's own batch function, detecting every sampled photo afresh; nothing is committed.
    result = run_batch([(pid, path, None) for pid, path in zip(sample["photo_id"], sample["path"])],
                       detector, embedder)
    total = time.perf_counter() - t_all
    n, n_faces = len(sample), result.faces
    df = pd.DataFrame([{"stage": k, "seconds": v, "ms_per_photo": v * 1000 / n}
                       for k, v in result.seconds.items()])
    df.attrs.update({"photos": n, "faces": n_faces, "seconds": total, "photos_per_s": n / total,
                     "faces_per_s": n_faces / total, "embedder": embedder.model_tag, "load_s": load_s})
    return df


# -- clusters, one by one -----------------------------------------------------------------------

def cluster_table(identities: Sequence, labels: Sequence) -> pd.DataFrame:
    """One row per cluster: ``size``, ``majority`` identity (None when no face of it is labelled),
    ``purity`` (share of its labelled faces that are the majority's), ``unlabelled`` faces,
    ``splits`` (the other clusters holding the majority's faces, as {cluster: count}) and
    ``merged`` (the other identities in it with their counts, largest first). Sorted largest first."""
    import pandas as pd

    ident = np.asarray(identities, dtype=object)
    labels = np.asarray(labels)
    known = labelled(ident)
    per_identity: dict[str, dict[int, int]] = {}
    for name, c in zip(ident[known], labels[known]):
        d = per_identity.setdefault(name, {})
        d[int(c)] = d.get(int(c), 0) + 1
    rows = []
    for c in np.unique(labels):
        members = labels == c
        names = pd.Series(ident[members & known]).value_counts()
        majority = names.index[0] if len(names) else None
        rows.append({"cluster": int(c), "size": int(members.sum()), "majority": majority,
                     "purity": float(names.iloc[0] / names.sum()) if len(names) else float("nan"),
                     "unlabelled": int((members & ~known).sum()),
                     "splits": {k: v for k, v in sorted(per_identity.get(majority, {}).items(), key=lambda kv: -kv[1])
                                if k != int(c)} if majority else {},
                     "merged": {n: int(k) for n, k in names.iloc[1:].items()}})
    table = pd.DataFrame(rows).sort_values(["size", "cluster"], ascending=[False, True]).reset_index(drop=True)
    table["majority"] = pd.Series([r if isinstance(r, str) else None for r in table["majority"]], dtype=object)
    return table
