"""Nearest-neighbour search over a million face-like vectors: Annoy, hnswlib and exact numpy.

    python benchmarks/index.py [--n 100000 1000000] [--data DIR] [--queries 1000]

Face-like vectors: identities with 2 to 10 photos each (6 on average). Each identity has a
centre drawn from a Gaussian whose covariance spectrum (a power law, in a random basis) and total
variance match the *between-person* spread of the LFW subset's dlib vectors; each photo adds
noise matching the *within-person* spread. With ``--data DIR`` (a catalogue of the LFW subset,
e.g. ``iffse collect lfw && iffse index``) the constants are measured from it; otherwise the stored
constants below are used (measured the same way on ../shared/data/lfw). Both histograms'
summaries (real when given, and synthetic) are printed.

Queries are new photos of identities in the index (not themselves in it). For each method:
build seconds, index size on disk, memory added, queries/s one query at a time on one thread,
recall@10 against exact search, and same-person recall (of the query person's other faces that
exact search puts in the top 10, the share the index returns too).

The machine's load average is printed with the figures: other work on the CPUs skews them.
"""

from __future__ import annotations

import os

# One BLAS thread, so that "one thread" holds for the exact baseline too (set before numpy loads).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from iffse_lib.index import FaceIndex, exact_search

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


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir()) / 2**20


def recall_rows(got: np.ndarray, truth: np.ndarray, truth_labels: np.ndarray, q_labels: np.ndarray) -> tuple[float, float]:
    recall = float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, truth)]))
    found = total = 0
    for g, t, tl, ql in zip(got, truth, truth_labels, q_labels):
        same = set(t[tl == ql].tolist())
        total += len(same)
        found += len(same & set(g.tolist()))
    return recall, (found / total if total else float("nan"))


def run_one(name: str, index: FaceIndex, vectors, tmp: Path, queries, truth, labels, q_labels, k: int,
            settings: list[dict]) -> list[dict]:
    rss0 = _rss_mb()
    t = time.perf_counter()
    index.add(np.arange(len(vectors)), vectors)
    index.build()
    build_s = time.perf_counter() - t
    folder = tmp / name
    index.save(folder)
    size = _dir_mb(folder)
    loaded = FaceIndex.load(folder, index.model_tag)
    mem = _rss_mb() - rss0
    del index
    rows = []
    for s in settings:
        t = time.perf_counter()
        got = np.stack([loaded.query(q, k, search_k=s["search_k"])[0][0] for q in queries])
        qps = len(queries) / (time.perf_counter() - t)
        recall, same = recall_rows(got, truth, labels[truth], q_labels)
        rows.append({"method": name, **s, "build_s": round(build_s, 1), "size_mb": round(size, 1),
                     "mem_mb": round(mem, 1), "qps": round(qps, 1), "recall@10": round(recall, 4),
                     "same_person_recall": round(same, 4)})
        print_row(rows[-1])
    shutil.rmtree(folder, ignore_errors=True)
    return rows


HEADER = f"{'method':<24}{'setting':<14}{'build s':>9}{'size MB':>9}{'mem MB':>8}{'q/s':>9}{'recall@10':>11}{'same-person':>13}"


def print_row(r: dict) -> None:
    print(f"{r['method']:<24}{r['label']:<14}{r['build_s']:>9.1f}{r['size_mb']:>9.1f}{r['mem_mb']:>8.0f}"
          f"{r['qps']:>9.1f}{r['recall@10']:>11.4f}{r['same_person_recall']:>13.4f}", flush=True)


def bench(n: int, cal: dict, n_queries: int, trees: list[int], hnsw_efc: list[int], tmp: Path,
          hnsw_m: int = 16, hnsw_ef: tuple[int, ...] = (16, 32, 64, 128, 256),
          annoy_x: tuple[int, ...] = (1, 2, 4, 8), k: int = 10, hnsw_min_in: tuple[int, ...] = (0,)) -> list[dict]:
    gen = FaceLikeGenerator(cal, seed=n)
    t = time.perf_counter()
    vectors, labels, queries, q_labels = gen.dataset(n, n_queries)
    print(f"\nN = {n:,} faces of {labels.max() + 1:,} people ({time.perf_counter() - t:.1f} s to generate); "
          f"{n_queries} queries (new photos of indexed people); load average {os.getloadavg()[0]:.1f}", flush=True)
    same, diff = pair_distances(vectors, labels, max_same=100_000)
    print_summaries("synthetic", same, diff)
    t = time.perf_counter()
    truth, _ = exact_search(queries, vectors, k, batch=64)
    batched_qps = n_queries / (time.perf_counter() - t)
    n_single = min(n_queries, 200 if n > 200_000 else 1000)
    sq = np.einsum("ij,ij->i", vectors, vectors)  # norms once, as a resident exact index would keep them
    t = time.perf_counter()
    for q in queries[:n_single]:
        d2 = sq - 2.0 * (vectors @ q)
        top = np.argpartition(d2, k)[:k]
        top[np.argsort(d2[top])]
    single_qps = n_single / (time.perf_counter() - t)
    print(HEADER)
    rows = [{"method": "exact numpy", "label": "single", "build_s": 0.0, "size_mb": vectors.nbytes / 2**20,
             "mem_mb": vectors.nbytes / 2**20, "qps": round(single_qps, 1), "recall@10": 1.0, "same_person_recall": 1.0},
            {"method": "exact numpy", "label": "batched (64)", "build_s": 0.0, "size_mb": vectors.nbytes / 2**20,
             "mem_mb": vectors.nbytes / 2**20, "qps": round(batched_qps, 1), "recall@10": 1.0,
             "same_person_recall": 1.0}]
    for r in rows:
        print_row(r)
    for nt in trees:
        settings = [{"label": f"search_k={m}x", "search_k": nt * k * m} for m in annoy_x]
        rows += run_one(f"annoy n_trees={nt}", FaceIndex("bench", DIM, n_trees=nt), vectors, tmp, queries, truth,
                        labels, q_labels, k, settings)
    for efc in hnsw_efc:
        for min_in in hnsw_min_in:
            settings = [{"label": f"ef={ef}", "search_k": ef} for ef in hnsw_ef]
            rows += run_one(f"hnsw M={hnsw_m} efC={efc}" + (f" in>={min_in}" if min_in else ""),
                            FaceIndex("bench", DIM, backend="hnsw", hnsw_m=hnsw_m, hnsw_ef_construction=efc,
                                      hnsw_min_in_links=min_in),
                            vectors, tmp, queries, truth, labels, q_labels, k, settings)
    for r in rows:
        r["n"] = n
        r["speedup_vs_exact_single"] = round(r["qps"] / single_qps, 1)
    return rows


def print_summaries(kind: str, same: np.ndarray, diff: np.ndarray) -> None:
    for name, d in (("same person", same), ("different people", diff)):
        s = _summary(d)
        print(f"  {kind:<10} {name:<17} n={s['n']:>7}  mean {s['mean']:.3f}  std {s['std']:.3f}  "
              f"p5 {s['p5']:.3f}  p25 {s['p25']:.3f}  p50 {s['p50']:.3f}  p75 {s['p75']:.3f}  p95 {s['p95']:.3f}  "
              f"<0.6: {s['share_below_0.6']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--trees", type=int, nargs="*", default=[10, 50, 100], help="Annoy n_trees (none: skip Annoy)")
    ap.add_argument("--hnsw-efc", type=int, nargs="*", default=[100],
                    help="hnswlib ef_construction values to build with (none: skip hnswlib)")
    ap.add_argument("--hnsw-m", type=int, default=32, help="hnswlib links per node")
    ap.add_argument("--hnsw-min-in", type=int, nargs="+", default=[0, 8],
                    help="hnswlib: give each node at least this many in-links after building (0: hnswlib's graph "
                         "as built; see iffse_lib.index.reinforce_hnsw)")
    ap.add_argument("--annoy-x", type=int, nargs="+", default=[1, 2, 4, 8, 16],
                    help="Annoy search_k as multiples of n_trees * k (Annoy's own default is 1x, FaceIndex's 4x)")
    ap.add_argument("--hnsw-ef", type=int, nargs="+", default=[64, 128, 256, 512, 1024], help="hnswlib ef at query time")
    ap.add_argument("--data", type=Path, default=None, help="a catalogue of the LFW subset to calibrate from")
    ap.add_argument("--model", default="dlib-resnet-v1")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; one thread per query")
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

    tmp = Path(tempfile.mkdtemp(prefix="iffse-index-bench-"))
    rows = []
    try:
        for n in args.n:
            rows += bench(n, cal, args.queries, args.trees, args.hnsw_efc, tmp, args.hnsw_m, tuple(args.hnsw_ef),
                          tuple(args.annoy_x), hnsw_min_in=tuple(args.hnsw_min_in))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
