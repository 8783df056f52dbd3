"""Sharded search on a local Dask cluster: N index shards, each kept loaded on a worker.

    python benchmarks/shards.py [--n 1000000] [--shards 4] [--workers 4] [--backend ivfpq]
    nice python benchmarks/shards.py --n 10000000 --shards 4 --workers 4 --queries 200 --json

The face-like vectors are those of ``benchmarks/index.py`` (same generator, same seed for the
same N), written to a ``.npy`` file a slice at a time and memory-mapped, as the catalogue keeps
them. :func:`iffse_lib.shards.build_shards` splits them by face-id hash and builds one
:class:`~iffse_lib.index.FaceIndex` per shard; :class:`iffse_lib.shards.ShardedIndex` loads each
shard once on a worker of a ``LocalCluster`` (one thread per worker) and keeps it there. The
workers re-rank from the same memory-mapped vector file (ivfpq).

It prints, per shard: faces, build seconds, file MB, and the memory its worker holds; and per
search setting: the latency of one query through every shard and the merge (median and 95th
percentile, one query at a time, as a person searching waits), queries/s in one batch (one call
per shard), recall@10 against exact search and same-person recall (as in benchmarks/index.py).
``--json`` prints the rows as one JSON document on stdout (the tables go to stderr).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index import CALIBRATION, FaceLikeGenerator, _size_mb, exact_truth, recall_rows, write_dataset  # noqa: E402

from iffse_lib.distributed import dask_client  # noqa: E402
from iffse_lib.index import BACKENDS, FaceIndex  # noqa: E402
from iffse_lib.shards import ShardedIndex, build_shards  # noqa: E402

MODEL = "bench"
#: search settings measured per backend (ivfpq: lists probed; faiss-hnsw: efSearch)
SETTINGS = {"ivfpq": [32, 64, 128, 256], "faiss-hnsw": [128, 352], "annoy": [-1], "flat": [0]}


def _rss_mb() -> dict[str, float]:
    """This process's resident memory in MB: its own (anonymous) pages, and the pages of files it
    maps (the shard's vector file: the page cache, shared by every worker on the machine)."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0]) / 1024
    return {"own": round(fields.get("RssAnon", 0.0), 1), "mapped": round(fields.get("RssFile", 0.0), 1)}


def build(vectors, n_shards: int, backend: str, directory: Path) -> list[dict]:
    """Build the shards; one row per shard (faces, build seconds, file MB)."""
    face_ids = np.arange(len(vectors), dtype=np.int64)
    t = time.perf_counter()
    manifest = build_shards(directory, MODEL, face_ids, face_ids, lambda ids, rows: np.asarray(vectors[rows]),
                            n_shards, backend=backend, vectors=vectors)
    print(f"built {n_shards} {backend} shards of {len(vectors):,} faces in {time.perf_counter() - t:.0f} s",
          file=sys.stderr, flush=True)
    return [{"shard": s, "faces": manifest["counts"][s], "build_s": manifest["seconds"][s],
             "file_mb": round(_size_mb(directory / f"shard-{s:03d}"), 1)} for s in range(n_shards)]


def worker_memory(client) -> dict[str, dict[str, float]]:
    """Resident MB of each worker process (own and mapped)."""
    return client.run(_rss_mb)


def one_shard_latency(directory: Path, vectors, queries, settings: list[int], k: int) -> dict[int, float]:
    """Median ms of one query on one shard in this process: the search without the cluster."""
    index = FaceIndex.load(directory, MODEL)
    index.attach(vectors)
    out = {}
    for s in settings:
        search_k = s if s else None
        lat = []
        for q in queries:
            t = time.perf_counter()
            index.query(q[None], k, search_k)
            lat.append(time.perf_counter() - t)
        out[s] = round(1000 * float(np.median(lat)), 2)
    return out


def measure(index: ShardedIndex, queries, truth, labels, q_labels, settings: list[int], k: int) -> list[dict]:
    rows = []
    for s in settings:
        search_k = s if s else None
        index.query(queries[:5], k, search_k)  # warm: each worker touches its shard once
        lat, got = [], []
        for q in queries:
            t = time.perf_counter()
            ids, _ = index.query(q[None], k, search_k)
            lat.append(time.perf_counter() - t)
            got.append(ids[0])
        t = time.perf_counter()
        index.query(queries, k, search_k)
        batched = len(queries) / (time.perf_counter() - t)
        recall, same = recall_rows(np.stack(got), truth, labels[truth], q_labels)
        rows.append({"setting": s, "ms_median": round(1000 * float(np.median(lat)), 2),
                     "ms_p95": round(1000 * float(np.percentile(lat, 95)), 2),
                     "qps": round(len(queries) / sum(lat), 1), "qps_batched": round(batched, 1),
                     "recall_at_10": round(recall, 4), "same_person_recall": round(same, 4),
                     "load_average": round(os.getloadavg()[0], 1)})
        r = rows[-1]
        print(f"  setting {s:>5}: {r['ms_median']:7.2f} ms median, {r['ms_p95']:7.2f} ms p95, {r['qps']:7.1f} q/s, "
              f"{r['qps_batched']:7.1f} q/s batched, recall@10 {r['recall_at_10']:.4f}, "
              f"same-person {r['same_person_recall']:.4f}  (load {r['load_average']})", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="faces (default: %(default)s)")
    ap.add_argument("--shards", type=int, default=4, help="index shards (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=4, help="local Dask workers, one thread each (default: %(default)s)")
    ap.add_argument("--backend", default="ivfpq", choices=sorted(BACKENDS), help="each shard's (default: %(default)s)")
    ap.add_argument("--settings", default=None, help="search settings, comma-separated (default: the backend's list)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the vectors and shards (default: a new one)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON document")
    args = ap.parse_args()
    if args.n < 1 or args.shards < 1 or args.workers < 1 or args.queries < 1:
        ap.error("--n, --shards, --workers and --queries must be 1 or more")
    try:
        settings = ([int(v) for v in args.settings.split(",")] if args.settings else SETTINGS[args.backend])
    except ValueError:
        ap.error(f"--settings: whole numbers separated by commas, not {args.settings!r}")
    k = 10
    with tempfile.TemporaryDirectory(prefix="iffse-shards-", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        gen = FaceLikeGenerator(CALIBRATION, seed=args.n)
        vectors, labels, queries, q_labels = write_dataset(gen, args.n, args.queries, tmp / "vectors.npy")
        print(f"N = {args.n:,} faces of {labels.max() + 1:,} people in {time.perf_counter() - t:.0f} s; "
              f"{args.queries} queries; load average {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
        t = time.perf_counter()
        truth = exact_truth(queries, vectors, k)
        exact_s = time.perf_counter() - t
        print(f"exact search, batched: {args.queries / exact_s:.2f} q/s", file=sys.stderr, flush=True)
        shard_rows = build(vectors, args.shards, args.backend, tmp / "shards")
        with dask_client(n_workers=args.workers, dashboard_address=None, progress=False) as client:
            before = worker_memory(client)
            t = time.perf_counter()
            index = ShardedIndex(client, tmp / "shards", MODEL, vector_path=tmp / "vectors.npy")
            load_s = time.perf_counter() - t
            print(f"{args.shards} shards placed on {args.workers} workers in {load_s:.1f} s", file=sys.stderr,
                  flush=True)
            rows = measure(index, queries, truth, labels, q_labels, settings, k)
            after = worker_memory(client)
            where = {s: a.where().result() for s, a in index.actors.items()}
            pids = client.run(os.getpid)
            index.close()
        alone = one_shard_latency(tmp / "shards" / "shard-000", vectors, queries, settings, k)
        for row in rows:
            row["one_shard_ms_median"] = alone[row["setting"]]
            print(f"  setting {row['setting']:>5}: one shard alone, in this process: "
                  f"{row['one_shard_ms_median']:.2f} ms median", file=sys.stderr, flush=True)
        for row in shard_rows:
            addr = next((a for a, p in pids.items() if p == where.get(row["shard"])), None)
            row["worker"] = addr
            row["worker_own_mb"] = after[addr]["own"] if addr else None
            row["worker_own_added_mb"] = round(after[addr]["own"] - before[addr]["own"], 1) if addr else None
            row["worker_mapped_mb"] = after[addr]["mapped"] if addr else None
            print(f"shard {row['shard']}: {row['faces']:,} faces, built in {row['build_s']} s, {row['file_mb']} MB; "
                  f"its worker holds {row['worker_own_mb']} MB of its own ({row['worker_own_added_mb']} MB more than "
                  f"before the shard) and {row['worker_mapped_mb']} MB of mapped files (the vector file's pages "
                  "it read, shared with the other workers)", file=sys.stderr, flush=True)
    doc = {"n": args.n, "shards": args.shards, "workers": args.workers, "backend": args.backend,
           "queries": args.queries, "exact_qps_batched": round(args.queries / exact_s, 2),
           "place_s": round(load_s, 1), "per_shard": shard_rows, "rows": rows}
    if args.json:
        print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
