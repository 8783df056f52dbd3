"""An index split into shards by face id, each searched on a Dask worker that keeps it loaded.

``iffse index --shards N`` writes N :class:`~iffse_lib.index.FaceIndex` segments, face ``f``
going to shard ``shard_of(f, N)`` (a hash, so shards stay even as ids grow)::

    index/<model>.shards/manifest.json     shards, backend, counts, build seconds, fingerprint of the ids, catalogue id
    index/<model>.shards/shard-000/…       a saved FaceIndex (see iffse_lib.index)

:class:`ShardedIndex` puts one :class:`ShardActor` per shard on the cluster's workers (a Dask
actor: the shard is loaded once, on that worker, and stays there across queries). A query
batch goes to every shard in one call; the client merges each row's k nearest. When a worker
dies, its shards are loaded again on the workers left and the call is repeated, so an answer is
always complete. ``Searcher(catalog, client=client)`` uses it.

Shards are rebuilt whole (never patched), so faces removed from the catalogue (``forget``)
leave no bytes behind: :func:`iffse_lib.catalog_index.update_shards` rebuilds them whenever the catalogue's faces differ
from the shards'.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import IndexMismatch, IndexMissing
from .index import FaceIndex, default_backend, fingerprint

log = logging.getLogger(__name__)

#: How many times a shard call is repeated after its worker was lost.
RETRIES = 3
#: Seconds to wait for one shard's answer before loading it elsewhere and asking again.
CALL_TIMEOUT = 300


def shard_of(face_ids: np.ndarray, n_shards: int) -> np.ndarray:
    """The shard of each face id: a 64-bit mix (splitmix64's finaliser) of the id, modulo n_shards."""
    x = np.asarray(face_ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n_shards)).astype(np.int64)


def shards_dir(index_dir: Path, model_tag: str) -> Path:
    return Path(index_dir) / f"{model_tag}.shards"


def read_manifest(directory: Path) -> dict | None:
    path = Path(directory) / "manifest.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexMismatch(f"{path} cannot be read ({exc}). Run `iffse index --shards N`.") from None


def build_shards(directory: Path, model_tag: str, face_ids: np.ndarray, rows: np.ndarray,
                 vectors_of: Callable[[np.ndarray, np.ndarray], np.ndarray], n_shards: int, backend: str | None = None,
                 catalog_id: str | None = None, dim: int = 128, vectors: np.ndarray | None = None,
                 **index_settings) -> dict:
    """Build and save ``n_shards`` shards of these faces in ``directory`` (replacing what was there).

    ``vectors_of(face_ids, rows)`` gives the float32 vectors of these faces (at these vector-file rows); ``vectors`` (the vector
    file, memory-mapped) is attached for backends that re-rank. Returns the manifest.
    """
    if n_shards < 1:
        raise ValueError("n_shards must be >= 1")
    face_ids = np.asarray(face_ids, np.int64)
    rows = np.asarray(rows, np.int64)
    which = shard_of(face_ids, n_shards)
    backend = backend or default_backend(int(np.bincount(which, minlength=n_shards).min()))
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts, seconds = [], []
    for s in range(n_shards):
        mine = np.flatnonzero(which == s)
        counts.append(len(mine))
        seconds.append(0.0)
        if not len(mine):
            continue
        t = time.perf_counter()
        index = FaceIndex(model_tag, dim=dim, backend=backend, **index_settings)
        index.add(face_ids[mine], vectors_of(face_ids[mine], rows[mine]), rows[mine])
        index.build()
        if vectors is not None:
            index.attach(vectors)
        index.save(tmp / f"shard-{s:03d}", catalog_id=catalog_id)
        seconds[-1] = round(time.perf_counter() - t, 1)
        log.info("built shard %d of %d (%d faces) in %.1f s", s + 1, n_shards, len(mine), seconds[-1])
    manifest = {"model_tag": model_tag, "shards": n_shards, "backend": backend, "count": int(len(face_ids)),
                "counts": counts, "seconds": seconds, "fingerprint": fingerprint(face_ids), "catalog_id": catalog_id,
                "dim": dim}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)  # the old shards' vectors go with them
    return manifest


class ShardActor:
    """One shard, loaded on the worker that holds this actor."""

    def __init__(self, directory: str, model_tag: str, vector_path: str | None = None):
        self.index = FaceIndex.load(directory, model_tag)
        if vector_path is not None:
            self.index.attach(np.load(vector_path, mmap_mode="r"))
        self.pid = os.getpid()

    def query(self, vectors: np.ndarray, k: int, search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.index.query(vectors, k, search_k)

    def where(self) -> int:
        return self.pid


def merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest over the shards' answers (ids -1 / distance inf pad short rows)."""
    ids = np.concatenate([p[0] for p in parts], axis=1)
    dists = np.concatenate([p[1] for p in parts], axis=1)
    dists = np.where(ids >= 0, dists, np.inf)
    order = np.argsort(dists, axis=1, kind="stable")[:, :k]
    ids, dists = np.take_along_axis(ids, order, 1), np.take_along_axis(dists, order, 1)
    short = k - ids.shape[1]
    if short > 0:
        ids = np.pad(ids, ((0, 0), (0, short)), constant_values=-1)
        dists = np.pad(dists, ((0, 0), (0, short)), constant_values=np.inf)
    return ids, dists.astype(np.float32)


class ShardedIndex:
    """The shards in ``directory`` searched on a Dask cluster; answers like ``FaceIndex.query``.

    >>> with distributed.dask_client(n_workers=4) as client:
    ...     index = ShardedIndex(client, "data/index/dlib-resnet-v1.shards", "dlib-resnet-v1")
    ...     ids, dists = index.query(vectors, k=10)      # one call per shard for the whole batch
    """

    def __init__(self, client, directory: str | Path, model_tag: str, vector_path: str | Path | None = None,
                 catalog_id: str | None = None, expect_face_ids: np.ndarray | None = None):
        self.client = client
        self.directory = Path(directory)
        self.model_tag = model_tag
        self.vector_path = None if vector_path is None else str(vector_path)
        manifest = read_manifest(self.directory)
        if manifest is None:
            raise IndexMissing(f"no index shards of model {model_tag!r} in {self.directory}. "
                               "Run `iffse index --shards N`.")
        if manifest.get("model_tag") != model_tag:
            raise IndexMismatch(f"{self.directory} holds shards of {manifest.get('model_tag')!r}, not {model_tag!r}")
        if catalog_id is not None and manifest.get("catalog_id") != catalog_id:
            raise IndexMismatch(f"the shards in {self.directory} belong to another catalogue. "
                                "Run `iffse index --shards N`.")
        if expect_face_ids is not None and fingerprint(expect_face_ids) != manifest["fingerprint"]:
            raise IndexMismatch(f"the shards in {self.directory} cover {manifest['count']} faces, the catalogue has "
                                f"{len(expect_face_ids)} other or more. Run `iffse index --shards {manifest['shards']}`.")
        self.manifest = manifest
        self.backend = manifest["backend"]
        self.dim = manifest.get("dim", 128)
        #: shard number -> its actor; repeated calls after a lost worker
        self.actors: dict[int, object] = {}
        self.retries = 0
        for s in self._present():
            self.actors[s] = self._place(s)

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __repr__(self) -> str:
        return f"ShardedIndex({self.model_tag!r}, shards={self.manifest['shards']}, backend={self.backend!r})"

    def _present(self) -> list[int]:
        return [s for s, c in enumerate(self.manifest["counts"]) if c]

    def _place(self, s: int):
        workers = sorted(self.client.scheduler_info()["workers"])
        where = [workers[s % len(workers)]] if workers else None
        future = self.client.submit(ShardActor, str(self.directory / f"shard-{s:03d}"), self.model_tag,
                                    self.vector_path, actor=True, workers=where, allow_other_workers=True,
                                    pure=False)
        return future.result()

    def query(self, vectors: np.ndarray, k: int = 10, search_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(face_ids (n, k), distances (n, k)) over all shards; a lost worker's shards are reloaded."""
        queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        pending = {s: actor.query(queries, k, search_k) for s, actor in self.actors.items()}
        parts = {}
        for s in sorted(pending):
            for attempt in range(RETRIES + 1):
                try:
                    parts[s] = pending[s].result(timeout=CALL_TIMEOUT)  # raises when its worker dies
                    break
                except Exception as exc:  # the worker holding the shard left: load it elsewhere
                    if attempt == RETRIES:
                        raise
                    log.warning("shard %d: %s; loading it on another worker", s, exc.__class__.__name__)
                    self.retries += 1
                    self.actors[s] = self._place(s)
                    pending[s] = self.actors[s].query(queries, k, search_k)
        if not parts:
            return (np.full((len(queries), k), -1, np.int64), np.full((len(queries), k), np.inf, np.float32))
        return merge([parts[s] for s in sorted(parts)], k)

    def close(self) -> None:
        self.actors.clear()
