"""The search index of a catalogue: building it, loading it and keeping it up to date.

:func:`build_index` builds and saves a new index segment over every vector of a model;
:func:`load_index` loads the saved one in line with the catalogue (faces embedded since are
searched exactly, faces that left are never returned); :func:`update_index` keeps the segment
or rebuilds it when needed. :func:`update_shards` and :func:`load_shards` do the same for index
shards kept on Dask workers (:mod:`iffse_lib.shards`). :func:`checked_vectors` refuses damaged
vectors on the way in. The files live in :func:`index_dir`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import config
from .catalog import Catalog
from .embedders import get_embedder
from .errors import IndexMissing
from .index import FaceIndex

log = logging.getLogger(__name__)


def index_dir(catalog: Catalog) -> Path:
    """The folder that holds the catalogue's index segments and shards."""
    return catalog.root / "index"


def build_index(catalog: Catalog, model_tag: str | None = None, n_trees: int = config.DEFAULT_N_TREES,
                progress: bool = True, backend: str | None = None) -> tuple[FaceIndex, dict]:
    """Build and save a new index segment over every vector of ``model_tag`` (read from the memmap).

    ``backend`` None: Annoy below ``index.GRAPH_FROM`` faces, faiss HNSW from there on, IVF-PQ from
    ``index.COMPRESSED_FROM`` on (``index.default_backend``).
    """
    from .index import default_backend

    model_tag = model_tag or get_embedder().model_tag
    t = time.perf_counter()
    face_ids, rows = catalog.vector_rows(model_tag) if catalog.model_info(model_tag) else ([], [])
    if len(face_ids) == 0:
        raise IndexMissing(f"no vectors of model {model_tag!r} to index. Run `iffse index` after collecting photos.")
    memmap = catalog.vector_file(model_tag).array()
    backend = backend or default_backend(len(face_ids))
    index = FaceIndex(model_tag, dim=memmap.shape[1], n_trees=n_trees, backend=backend)
    log.info("building the %s index of %d %s faces", backend, len(face_ids), model_tag)
    step = 100_000  # copy the memmap a slice at a time, not the whole file
    for start in tqdm(range(0, len(face_ids), step), desc="index build", unit="slice", disable=not progress):
        sl = slice(start, start + step)
        index.add(face_ids[sl], checked_vectors(memmap[rows[sl]], face_ids[sl], model_tag), rows[sl])
    index.build()
    index.attach(memmap)  # ivfpq re-ranks from the catalogue's vectors, not a copy
    index.save(index_dir(catalog), catalog_id=catalog.catalog_id)
    catalog.set_meta("index_stale", "0")
    catalog.set_meta(f"index_erase:{model_tag}", "0")
    log.info("built the %s index of %d faces of %s in %.1f s", backend, len(face_ids), model_tag,
             time.perf_counter() - t)
    seconds = time.perf_counter() - t
    log.info("built and saved the %s index of %d faces in %.1f s (%s)", backend, len(face_ids), seconds,
             index_dir(catalog))
    return index, {"faces": len(face_ids), "n_trees": n_trees, "backend": backend, "rebuilt": True,
                   "seconds": round(seconds, 3)}


def load_index(catalog: Catalog, model_tag: str | None = None, sync: bool = True) -> FaceIndex:
    """The saved index of ``model_tag``, brought in line with the catalogue.

    With ``sync`` (the default), faces embedded since the segment was built are searched exactly
    from the catalogue's vector file and faces that left the catalogue are never returned;
    without it, a segment that does not cover exactly the catalogue's faces raises IndexMismatch.
    """
    model_tag = model_tag or get_embedder().model_tag
    with catalog.snapshot():
        ids, rows = catalog.vector_rows(model_tag)
        memmap = catalog.vector_file(model_tag).array() if len(ids) else None
        if not sync:
            index = FaceIndex.load(index_dir(catalog), model_tag, expect_face_ids=ids, catalog_id=catalog.catalog_id)
            if memmap is not None:
                index.attach(memmap)
            return index
        index = FaceIndex.load(index_dir(catalog), model_tag, catalog_id=catalog.catalog_id)
        if memmap is not None:
            index.attach(memmap)
        if len(ids) or index.segment_size:
            index.sync(ids, rows, lambda got, want: checked_vectors(memmap[want], got, model_tag))
    return index


#: The norms a face vector may have: dlib's ResNet gives about 0.9-1.1 on every face measured, so
#: a vector outside this range is damage (a zeroed or overwritten row), never a face.
NORM_RANGE = (0.5, 2.0)


def checked_vectors(vectors: np.ndarray, face_ids: np.ndarray, model_tag: str) -> np.ndarray:
    """``vectors`` as float32, or CatalogDamaged when any is not finite or has an implausible norm."""
    out = np.asarray(vectors, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(out, axis=1)
    bad = ~(np.isfinite(out).all(axis=1) & (norms >= NORM_RANGE[0]) & (norms <= NORM_RANGE[1]))
    if bad.any():
        from .errors import CatalogDamaged

        some = ", ".join(str(int(f)) for f in np.asarray(face_ids)[bad][:5])
        raise CatalogDamaged(f"{int(bad.sum())} vectors of model {model_tag!r} are damaged (not finite, or of "
                             f"implausible length), e.g. of faces {some}. Run `iffse check --repair` to compute them "
                             "again from the raw photos.")
    return out


def chosen_backend(catalog: Catalog, model_tag: str, backend: str | None) -> str | None:
    """The backend for ``model_tag``'s index: ``backend`` when given (remembered for later
    rebuilds, meta key ``index_backend:<model>``), else the one given before; ``"auto"`` forgets
    the choice and gives the default for the catalogue's size; None when none was ever given."""
    from .index import default_backend

    key = f"index_backend:{model_tag}"
    if backend is None:
        return catalog.get_meta(key) or None
    catalog.set_meta(key, "" if backend == "auto" else backend)
    if backend != "auto":
        return backend
    return default_backend(len(catalog.vector_rows(model_tag)[0])) if catalog.model_info(model_tag) else None


def update_index(catalog: Catalog, model_tag: str | None = None, n_trees: int = config.DEFAULT_N_TREES,
                 rebuild: bool = False, backend: str | None = None,
                 progress: bool = True) -> tuple[FaceIndex, dict]:
    """Make every face of ``model_tag`` searchable, rebuilding only when needed.

    The saved segment is kept, with the faces added since searched exactly (see
    :mod:`iffse_lib.index`), unless ``rebuild`` is set, no usable segment exists, ``backend``
    differs from the segment's, or the buffer plus removed faces pass
    :func:`iffse_lib.index.rebuild_threshold` (10% of the segment, 1,000 to 50,000 faces).

    A ``backend`` given is kept for later rebuilds (after ``forget``, or as the catalogue grows;
    meta key ``index_backend:<model>``) until another is given; ``"auto"`` returns to the
    default for the catalogue's size (:func:`iffse_lib.index.default_backend`).
    """
    from .errors import IffseError
    from .index import rebuild_threshold

    model_tag = model_tag or get_embedder().model_tag
    backend = chosen_backend(catalog, model_tag, backend)
    t = time.perf_counter()
    reason = "--rebuild" if rebuild else None
    index = None
    if reason is None:
        try:
            index = load_index(catalog, model_tag)
        except IffseError as exc:
            reason = f"no usable index ({exc.__class__.__name__})"
    if index is not None and reason is None:
        if catalog.get_meta(f"index_erase:{model_tag}") == "1" and index.removed:
            reason = f"{index.removed} removed faces are erased from the index"
        elif backend is not None and index.backend != backend:
            reason = f"backend {index.backend} -> {backend}"
        elif index.needs_rebuild():
            reason = (f"{len(index.buffer_ids)} new + {index.removed} removed faces > "
                      f"{rebuild_threshold(index.segment_size)}")
    if reason is not None:
        log.info("rebuilding the index: %s", reason)
        index, info = build_index(catalog, model_tag, n_trees=n_trees, progress=progress, backend=backend)
        info["reason"] = reason
        return index, info
    catalog.set_meta("index_stale", "0")
    log.info("kept the index segment of %d faces; %d new faces searched exactly, %d removed",
             index.segment_size, len(index.buffer_ids), index.removed)
    return index, {"faces": len(index), "segment": index.segment_size, "buffer": len(index.buffer_ids),
                   "removed": index.removed, "rebuilt": False, "backend": index.backend,
                   "rebuild_at": rebuild_threshold(index.segment_size), "seconds": round(time.perf_counter() - t, 3)}


# -- shards -------------------------------------------------------------------------------------

def update_shards(catalog: Catalog, model_tag: str | None = None, n_shards: int | None = None,
                  backend: str | None = None) -> dict | None:
    """Build ``n_shards`` index shards (see :mod:`iffse_lib.shards`), or rebuild the existing ones
    when the catalogue's faces changed since (so forgotten faces leave them). None when there are
    no shards and none were asked for; otherwise the manifest, with ``"rebuilt"``."""
    from .shards import build_shards, read_manifest, shards_dir
    from .index import fingerprint

    model_tag = model_tag or get_embedder().model_tag
    directory = shards_dir(index_dir(catalog), model_tag)
    old = read_manifest(directory)
    if n_shards is None and old is None:
        return None
    face_ids, rows = catalog.vector_rows(model_tag) if catalog.model_info(model_tag) else ([], [])
    if len(face_ids) == 0:
        raise IndexMissing(f"no vectors of model {model_tag!r} to index. Run `iffse index` after collecting photos.")
    want = n_shards or old["shards"]
    if (old is not None and old["shards"] == want and (backend is None or old["backend"] == backend)
            and old["fingerprint"] == fingerprint(face_ids) and old.get("catalog_id") == catalog.catalog_id):
        return {**old, "rebuilt": False}
    memmap = catalog.vector_file(model_tag).array()
    t = time.perf_counter()
    manifest = build_shards(directory, model_tag, face_ids, rows,
                            lambda ids, r: checked_vectors(memmap[r], ids, model_tag), want,
                            backend=backend or (old["backend"] if old is not None and n_shards is None else None),
                            catalog_id=catalog.catalog_id, dim=memmap.shape[1], vectors=memmap)
    log.info("built %d index shards of %d faces in %.1f s", want, len(face_ids), time.perf_counter() - t)
    return {**manifest, "rebuilt": True}


def load_shards(client, catalog: Catalog, model_tag: str | None = None):
    """The catalogue's index shards, each loaded on a worker of ``client`` (a ShardedIndex)."""
    from .shards import ShardedIndex, shards_dir

    model_tag = model_tag or get_embedder().model_tag
    with catalog.snapshot():
        ids, _ = catalog.vector_rows(model_tag)
        vf = catalog.vector_file(model_tag) if len(ids) else None
    return ShardedIndex(client, shards_dir(index_dir(catalog), model_tag), model_tag,
                        vector_path=None if vf is None else vf.path, catalog_id=catalog.catalog_id,
                        expect_face_ids=ids)
