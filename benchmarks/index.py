"""Nearest-neighbour search over face-like vectors: Annoy, faiss, usearch, voyager, hnswlib and exact numpy.

    python benchmarks/index.py [--n 100000 1000000] [--backends ...] [--data DIR] [--queries 1000] [--json]
    nice python benchmarks/index.py --n 10000000 --backends ivfpq --queries 200   # streamed to disk
    python benchmarks/index.py --n 1000000 --backends faiss-hnsw --settings faiss-hnsw=256,384,512

Face-like vectors: identities with 2 to 10 photos each (6 on average). Each identity has a
centre drawn from a Gaussian whose covariance spectrum (a power law, in a random basis) and total
variance match the *between-person* spread of the LFW subset's dlib vectors; each photo adds
noise matching the *within-person* spread. With ``--data DIR`` (a catalogue of the LFW subset,
e.g. ``iffse collect lfw && iffse index``) the constants are measured from it; otherwise the stored
constants below are used (measured the same way on ../shared/data/lfw). Both histograms'
summaries (real when given, and synthetic) are printed.

The vectors are written to a float32 ``.npy`` file in the temporary folder a slice at a time and
memory-mapped, as the catalogue keeps them: 10M faces (4.9 GB) are never all in memory at once
(ivfpq builds from the file; graph backends need their vectors in memory anyway).

Queries are new photos of identities in the index (not themselves in it). For each backend and
setting: build seconds, index size on disk (MB), memory resident after loading it and answering
the queries (MB; for ivfpq this includes the pages of the vector file read to re-rank), queries/s
one at a time on one thread and in one batch (all threads), exact search's single-query rate in
the same run (``exact_qps``; ``speedup`` = qps / exact_qps), recall@10 against exact search, and
same-person recall (of the query person's other faces that exact search puts in the top 10, the
share the index returns too). The backend iffse builds by default for that many faces, at its
default setting, is marked ``"default": true``. ``--json`` prints the rows as one JSON document
on stdout (the tables go to stderr).

Backends iffse can build are measured through FaceIndex; usearch, voyager and hnswlib (when
installed) through their own Python API, for the comparison that chose faiss.

The machine's load average is printed with the figures: other work on the CPUs skews them.
"""

from __future__ import annotations

import os

# One BLAS thread, so that "one thread" holds for the exact baseline too (set before numpy loads).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # faiss's threads sleep, not spin, on a shared machine

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from iffse_lib.embed import MODEL_TAG
from iffse_lib.index import BACKENDS, FaceIndex, default_backend, exact_search
from iffse_lib.index_backends import IVFPQBackend, default_ef, default_nprobe

DIM = 128
#: Measured on the LFW subset (../shared/data/lfw, 2,515 photos, dlib-resnet-v1) with --data:
#: mean squared same-person and different-person distances, and the power-law exponents of the
#: within- and between-person covariance spectra (eigenvalue k ~ k ** -alpha), and the per-photo
#: spread (log-normal sigma) whose same-person distance spread matches LFW's.
CALIBRATION = {"same_d2": 0.2229, "diff_d2": 0.6916, "alpha_within": 0.58, "alpha_between": 0.87, "photo_sigma": 0.4}


# -- calibration -----------------------------------------------------------------------------

def _summary(d: np.ndarray) -> dict[str, float]:
    q = np.percentile(d, [5, 25, 50, 75, 95])
    return {"n": int(len(d)), "mean": float(d.mean()), "std": float(d.std()), "p5": q[0], "p25": q[1],
            "p50": q[2], "p75": q[3], "p95": q[4], "share_below_0.6": float((d < 0.6).mean())}


def pair_distances(vectors: np.ndarray, labels: np.ndarray, n_diff: int = 20_000, max_same: int = 200_000,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Same-person distances (all pairs, capped) and random different-person distances."""
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    labels_s = labels[order]
    starts = np.flatnonzero(np.r_[True, labels_s[1:] != labels_s[:-1]])
    ends = np.r_[starts[1:], len(labels_s)]
    same = []
    for s, e in zip(starts, ends):
        if e - s >= 2:
            v = vectors[order[s:e]]
            i, j = np.triu_indices(e - s, 1)
            same.append(np.linalg.norm(v[i] - v[j], axis=1))
        if sum(map(len, same)) > max_same:
            break
    a = rng.integers(0, len(vectors), n_diff * 2)
    b = rng.integers(0, len(vectors), n_diff * 2)
    keep = labels[a] != labels[b]
    a, b = a[keep][:n_diff], b[keep][:n_diff]
    return np.concatenate(same), np.linalg.norm(vectors[a] - vectors[b], axis=1)


def _alpha(eig: np.ndarray, top: int = 64) -> float:
    eig = np.sort(eig)[::-1][:top]
    eig = eig[eig > 0]
    k = np.arange(1, len(eig) + 1)
    return float(-np.polyfit(np.log(k), np.log(eig), 1)[0])


def measure_calibration(data: Path, model: str) -> tuple[dict, np.ndarray, np.ndarray]:
    from iffse_lib.catalog import Catalog

    with Catalog(data, create=False) as cat:
        faces = cat.faces(model)
        face_ids, vectors = cat.vectors(model)
    ident = dict(zip(faces["face_id"], faces["identity"].fillna("")))
    names = np.array([ident.get(int(f), "") for f in face_ids])
    keep = names != ""
    vectors, names = vectors[keep], names[keep]
    _, labels = np.unique(names, return_inverse=True)
    same, diff = pair_distances(vectors, labels)
    # within-person covariance from deviations to identity means (identities with >= 2 faces)
    counts = np.bincount(labels)
    means = np.zeros((labels.max() + 1, vectors.shape[1]))
    np.add.at(means, labels, vectors)
    means /= counts[:, None]
    multi = counts[labels] >= 2
    dev = (vectors - means[labels])[multi] * np.sqrt(counts[labels][multi] / (counts[labels][multi] - 1))[:, None]
    within = np.linalg.eigvalsh(np.cov(dev.T))
    between = np.linalg.eigvalsh(np.cov(means[counts >= 1].T))
    cal = {"same_d2": round(float(np.mean(same ** 2)), 4), "diff_d2": round(float(np.mean(diff ** 2)), 4),
           "alpha_within": round(_alpha(within), 2), "alpha_between": round(_alpha(between), 2)}
    # the per-photo spread whose same-person distance spread is closest to the real one
    best = None
    for sigma in np.arange(0.0, 0.85, 0.05):
        v, lab, _, _ = FaceLikeGenerator({**cal, "photo_sigma": sigma}, seed=1).dataset(5_000, 1)
        err = abs(pair_distances(v, lab, n_diff=10)[0].std() - same.std())
        if best is None or err < best[0]:
            best = (err, round(float(sigma), 2))
    cal["photo_sigma"] = best[1]
    return cal, same, diff


def _spectrum(alpha: float, total: float, dim: int = DIM) -> np.ndarray:
    lam = np.arange(1, dim + 1, dtype=np.float64) ** -alpha
    return lam * (total / lam.sum())


def _basis(rng, dim: int = DIM) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


class FaceLikeGenerator:
    """Identity centres and photos with the calibrated between- and within-person spectra."""

    def __init__(self, cal: dict, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        # E|x - y|^2 = 2 tr(S_within) for one person, 2 tr(S_within + S_between) for two.
        self.sd_within = np.sqrt(_spectrum(cal["alpha_within"], cal["same_d2"] / 2))
        self.sd_between = np.sqrt(_spectrum(cal["alpha_between"], (cal["diff_d2"] - cal["same_d2"]) / 2))
        self.b_within = _basis(self.rng).astype(np.float32)
        self.b_between = _basis(self.rng).astype(np.float32)
        self.offset = self.rng.normal(size=DIM).astype(np.float32) * 0.05  # dlib vectors are not centred
        # Photos vary in how far they stray from their person (pose, light, blur): a log-normal
        # scale per photo with E[scale^2] = 1 widens the same-person distances as in LFW.
        self.photo_sigma = cal.get("photo_sigma", 0.0)

    def centres(self, n: int) -> np.ndarray:
        return (self.rng.normal(size=(n, DIM)) * self.sd_between).astype(np.float32) @ self.b_between + self.offset

    def photos(self, centres: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = np.empty((len(labels), DIM), np.float32)
        for s in range(0, len(labels), 200_000):
            lab = labels[s:s + 200_000]
            noise = (self.rng.normal(size=(len(lab), DIM)) * self.sd_within).astype(np.float32) @ self.b_within
            if self.photo_sigma:
                z = self.rng.normal(size=(len(lab), 1))
                noise *= np.exp(self.photo_sigma * z - self.photo_sigma ** 2).astype(np.float32)
            out[s:s + len(lab)] = centres[lab] + noise
        return out

    def dataset(self, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vectors, labels) of n photos and (queries, query labels): new photos of indexed people."""
        sizes = self.rng.integers(2, 11, size=n // 2 + 1)
        sizes = sizes[:np.searchsorted(np.cumsum(sizes), n) + 1]
        labels = np.repeat(np.arange(len(sizes)), sizes)[:n]
        centres = self.centres(len(sizes))
        vectors = self.photos(centres, labels)
        q_labels = self.rng.choice(labels, n_queries, replace=False)
        return vectors, labels, self.photos(centres, q_labels), q_labels


# -- measuring -------------------------------------------------------------------------------

def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def recall_rows(got: np.ndarray, truth: np.ndarray, truth_labels: np.ndarray, q_labels: np.ndarray) -> tuple[float, float]:
    recall = float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, truth)]))
    found = total = 0
    for g, t, tl, ql in zip(got, truth, truth_labels, q_labels):
        same = set(t[tl == ql].tolist())
        total += len(same)
        found += len(same & set(g.tolist()))
    return recall, (found / total if total else float("nan"))


SLICE = 250_000


def write_dataset(gen: FaceLikeGenerator, n: int, n_queries: int, path: Path):
    """(vectors memory-mapped from ``path``, labels, queries, query labels), written a slice at a time."""
    sizes = gen.rng.integers(2, 11, size=n // 2 + 1)
    sizes = sizes[:np.searchsorted(np.cumsum(sizes), n) + 1]
    labels = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)[:n]
    centres = gen.centres(len(sizes))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for s in range(0, n, SLICE):
        out[s:s + SLICE] = gen.photos(centres, labels[s:s + SLICE])
    out.flush()
    del out
    q_labels = gen.rng.choice(labels, n_queries, replace=False)
    queries = gen.photos(centres, q_labels)
    return np.load(path, mmap_mode="r"), labels, queries, q_labels


def exact_truth(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k positions, a slice of the (memory-mapped) vectors at a time."""
    best_pos = np.full((len(queries), 0), -1, np.int64)
    best_d = np.zeros((len(queries), 0), np.float32)
    for s in range(0, len(vectors), SLICE):
        pos, d = exact_search(queries, np.asarray(vectors[s:s + SLICE]), k, batch=64)
        pos = np.concatenate([best_pos, pos + s], axis=1)
        d = np.concatenate([best_d, d], axis=1)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        best_pos, best_d = np.take_along_axis(pos, order, 1), np.take_along_axis(d, order, 1)
    return best_pos


def exact_single_qps(queries: np.ndarray, vectors: np.ndarray, k: int, seconds: float = 20.0) -> float:
    """Exact search one query at a time, one thread, over vectors resident in memory when they fit
    (norms computed once, as a resident exact index would keep them), else streamed from the file."""
    done, t = 0, time.perf_counter()
    if len(vectors) <= 2_000_000:
        vectors = np.asarray(vectors)
        sq = np.einsum("ij,ij->i", vectors, vectors)
        for q in queries:
            d2 = sq - 2.0 * (vectors @ q)
            top = np.argpartition(d2, k)[:k]
            top[np.argsort(d2[top])]
            done += 1
            if done >= 20 and time.perf_counter() - t > seconds:
                break
    else:
        for q in queries[:3]:
            exact_truth(q[None], vectors, k)
            done += 1
    return done / (time.perf_counter() - t)


def _library_ops(name: str, dim: int, params: dict):
    """(build, save, load, single, batch) for usearch, voyager or hnswlib."""
    threads = os.cpu_count() or 1
    if name == "usearch":
        from usearch.index import Index

        def build(v):
            ix = Index(ndim=dim, metric="l2sq", dtype="f32", connectivity=params["m"], expansion_add=params["efc"])
            ix.add(np.arange(len(v)), np.asarray(v), threads=threads)
            return ix

        def load(path):
            return Index.restore(str(path), view=False)

        def single(ix, q, k, s):
            ix.expansion_search = s
            return ix.search(q, k, threads=1).keys

        def batch(ix, Q, k, s):
            ix.expansion_search = s
            return ix.search(Q, k, threads=threads).keys
        return build, lambda ix, path: ix.save(str(path)), load, single, batch
    if name == "voyager":
        import voyager

        def build(v):
            ix = voyager.Index(voyager.Space.Euclidean, num_dimensions=dim, M=params["m"],
                               ef_construction=params["efc"])
            ix.add_items(np.array(v, np.float32), num_threads=threads)
            return ix
        return (build, lambda ix, path: ix.save(str(path)), lambda path: voyager.Index.load(str(path)),
                lambda ix, q, k, s: ix.query(q, k, query_ef=s)[0],
                lambda ix, Q, k, s: ix.query(Q, k, num_threads=threads, query_ef=s)[0])
    if name == "hnswlib":
        import hnswlib

        def build(v):
            ix = hnswlib.Index(space="l2", dim=dim)
            ix.init_index(max_elements=len(v), ef_construction=params["efc"], M=params["m"], random_seed=0)
            ix.set_num_threads(threads)
            ix.add_items(np.array(v, np.float32), np.arange(len(v)))
            return ix

        def load(path):
            ix = hnswlib.Index(space="l2", dim=dim)
            ix.load_index(str(path))
            return ix

        def single(ix, q, k, s):
            ix.set_ef(s)
            return ix.knn_query(q[None], k, num_threads=1)[0][0]

        def batch(ix, Q, k, s):
            ix.set_ef(s)
            return ix.knn_query(Q, k, num_threads=threads)[0]
        return build, lambda ix, path: ix.save_index(str(path)), load, single, batch
    raise ValueError(name)


def measure(backend: str, settings: list[int], vectors, tmp: Path, queries, truth, labels, q_labels, k: int,
            exact_qps: float, params: dict) -> list[dict]:
    """Rows for one backend: built once, saved, loaded into this process, queried per setting."""
    n = len(vectors)
    t = time.perf_counter()
    if backend in BACKENDS:
        index = FaceIndex("bench", DIM, backend=backend, **params)
        index.add(np.arange(n), vectors, rows=np.arange(n))
        index.build()
        build_s = time.perf_counter() - t
        index.save(tmp / backend)
        path = tmp / backend
        del index
        gc.collect()
        rss0 = _rss_mb()
        index = FaceIndex.load(path, "bench")
        index.attach(vectors)

        def single(q, s):
            return index.query(q, k, search_k=s)[0][0]

        def batch(Q, s):
            return index.query(Q, k, search_k=s)[0]
    else:
        build, save, load, lib_single, lib_batch = _library_ops(backend, DIM, params)
        index = build(vectors)
        build_s = time.perf_counter() - t
        path = tmp / f"{backend}.bin"
        save(index, path)
        del index
        gc.collect()
        rss0 = _rss_mb()
        index = load(path)

        def single(q, s):
            return lib_single(index, q, k, s)

        def batch(Q, s):
            return lib_batch(index, Q, k, s)
    rows = []
    for s in settings:
        t = time.perf_counter()
        got = np.stack([np.asarray(single(q, s), np.int64) for q in queries])
        lat = time.perf_counter() - t
        t = time.perf_counter()
        batch(queries, s)
        qps_batched = len(queries) / (time.perf_counter() - t)
        recall, same = recall_rows(got, truth, labels[truth], q_labels)
        shown = default_setting(backend, n) if s == -1 and backend in ("faiss-hnsw", "ivfpq") else s
        rows.append({"backend": backend, "setting": f"{SETTING_NAMES.get(backend, 'ef')}={shown}", "n": n,
                     "build_s": round(build_s, 1), "file_mb": round(_size_mb(path), 1),
                     "resident_mb": round(_rss_mb() - rss0, 1), "qps": round(len(queries) / lat, 1),
                     "qps_batched": round(qps_batched, 1), "exact_qps": round(exact_qps, 2),
                     "speedup": round(len(queries) / lat / exact_qps, 1), "recall_at_10": round(recall, 4),
                     "same_person_recall": round(same, 4), "params": params,
                     "load_average": round(os.getloadavg()[0], 1),
                     "default": backend == default_backend(n) and s in (-1, default_setting(backend, n))})
        print_row(rows[-1])
    del index
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    gc.collect()
    return rows


SETTING_NAMES = {"annoy": "search_k", "ivfpq": "nprobe"}


def default_setting(backend: str, n: int) -> int | None:
    """FaceIndex's default search_k for ``backend`` at ``n`` faces (-1: Annoy's 4 x n_trees x k)."""
    return {"annoy": -1, "faiss-hnsw": default_ef(n), "ivfpq": default_nprobe(IVFPQBackend.n_lists(n))}.get(backend)


#: settings measured per backend, and build parameters
SETTINGS = {"annoy": [-1], "faiss-hnsw": [64, 128, 256, 352], "ivfpq": [32, 128, 256, 384], "flat": [0],
            "usearch": [32, 64, 128], "voyager": [64, 128], "hnswlib": [128, 512]}
PARAMS = {"annoy": {"n_trees": 50}, "faiss-hnsw": {}, "ivfpq": {}, "flat": {},
          "usearch": {"m": 32, "efc": 128}, "voyager": {"m": 32, "efc": 100}, "hnswlib": {"m": 32, "efc": 100}}

HEADER = (f"{'backend':<12}{'setting':<14}{'build s':>9}{'file MB':>9}{'res MB':>8}{'q/s':>9}{'q/s batch':>11}"
          f"{'x exact':>9}{'recall@10':>11}{'same-person':>13}{'load':>6}")


def print_row(r: dict) -> None:
    print(f"{r['backend']:<12}{r['setting']:<14}{r['build_s']:>9.1f}{r['file_mb']:>9.1f}{r['resident_mb']:>8.0f}"
          f"{r['qps']:>9.1f}{r['qps_batched']:>11.1f}{r['speedup']:>9.1f}{r['recall_at_10']:>11.4f}"
          f"{r['same_person_recall']:>13.4f}{r['load_average']:>6.1f}" + ("  (default)" if r["default"] else ""),
          flush=True)


def bench(n: int, cal: dict, n_queries: int, backends: list[str], tmp: Path, k: int = 10) -> list[dict]:
    gen = FaceLikeGenerator(cal, seed=n)
    t = time.perf_counter()
    vectors, labels, queries, q_labels = write_dataset(gen, n, n_queries, tmp / "vectors.npy")
    print(f"\nN = {n:,} faces of {labels.max() + 1:,} people ({time.perf_counter() - t:.1f} s to generate, "
          f"{_size_mb(tmp / 'vectors.npy'):.0f} MB on disk); {n_queries} queries (new photos of indexed people); "
          f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    sample = np.flatnonzero(labels < labels[min(n, 200_000) - 1])
    print_summaries("synthetic", *pair_distances(np.asarray(vectors[sample]), labels[sample], max_same=100_000))
    t = time.perf_counter()
    truth = exact_truth(queries, vectors, k)
    exact_batched = n_queries / (time.perf_counter() - t)
    exact_qps = exact_single_qps(queries, vectors, k)
    print(f"exact numpy: {exact_qps:.2f} q/s one at a time, {exact_batched:.1f} q/s batched", flush=True)
    print(HEADER, flush=True)
    rows = []
    for backend in backends:
        try:
            rows += measure(backend, SETTINGS[backend], vectors, tmp, queries, truth, labels, q_labels, k,
                            exact_qps, PARAMS[backend])
        except ImportError as exc:
            print(f"{backend}: skipped ({exc})", flush=True)
    for r in rows:
        r["exact_qps_batched"] = round(exact_batched, 1)
    del vectors
    (tmp / "vectors.npy").unlink()
    return rows


def print_summaries(kind: str, same: np.ndarray, diff: np.ndarray) -> None:
    for name, d in (("same person", same), ("different people", diff)):
        s = _summary(d)
        print(f"  {kind:<10} {name:<17} n={s['n']:>7}  mean {s['mean']:.3f}  std {s['std']:.3f}  "
              f"p5 {s['p5']:.3f}  p25 {s['p25']:.3f}  p50 {s['p50']:.3f}  p75 {s['p75']:.3f}  p95 {s['p95']:.3f}  "
              f"<0.6: {s['share_below_0.6']:.3f}")


def _settings(text: str) -> tuple[str, list[int]]:
    """``faiss-hnsw=256,384`` -> ("faiss-hnsw", [256, 384]) (argparse rejects anything else)."""
    backend, _, values = text.partition("=")
    try:
        settings = [int(v) for v in values.split(",")]
    except ValueError:
        settings = []
    if backend not in SETTINGS or not settings or any(v < 1 and v != -1 for v in settings):
        raise argparse.ArgumentTypeError(f"{text!r}: give BACKEND=N,N,… with BACKEND one of {sorted(SETTINGS)} "
                                         "and whole numbers >= 1 (-1: the backend's default)")
    return backend, settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--backends", nargs="+", default=["annoy", "faiss-hnsw", "ivfpq", "usearch", "voyager", "hnswlib"],
                    choices=sorted(SETTINGS), help="what to measure (usearch, voyager, hnswlib: when installed)")
    ap.add_argument("--data", type=Path, default=None, help="a catalogue of the LFW subset to calibrate from")
    ap.add_argument("--model", default=MODEL_TAG)
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the vectors and indexes (default: a new one in "
                                                           "the system's temporary folder)")
    ap.add_argument("--json", action="store_true", help="print the rows as one JSON document (tables go to stderr)")
    ap.add_argument("--settings", type=_settings, action="append", default=[], metavar="BACKEND=S,S,…",
                    help="search settings to measure for a backend instead of its usual ones, e.g. "
                         "faiss-hnsw=256,384,512 (efSearch) or ivfpq=128,256 (nprobe); may repeat")
    args = ap.parse_args()
    for backend, values in args.settings:
        SETTINGS[backend] = values
    if args.json:
        sys.stdout = sys.stderr
    out = sys.__stdout__

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; one thread per single query")
    if args.data is not None:
        cal, same, diff = measure_calibration(args.data, args.model)
        print(f"calibration measured on {args.data}: {json.dumps(cal)}")
        print_summaries("real", same, diff)
    else:
        cal = CALIBRATION
        print(f"stored calibration (LFW subset, dlib-resnet-v1): {json.dumps(cal)}")
    # The same generator at a small N, to compare with the real summaries above.
    gen = FaceLikeGenerator(cal, seed=1)
    v, lab, _, _ = gen.dataset(2_500, 1)
    print_summaries("synthetic", *pair_distances(v, lab))

    tmp = Path(tempfile.mkdtemp(prefix="iffse-index-bench-", dir=args.tmp))
    rows = []
    try:
        for n in args.n:
            rows += bench(n, cal, args.queries, args.backends, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        out.write(json.dumps(rows, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
