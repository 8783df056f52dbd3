"""The stages over batches of photos: collect, then detect, landmarks, align, embed; then index.

Each batch of photos is one catalogue transaction, so an interrupted run resumes where it
stopped: photos already detected are not detected again, faces that already have a vector of
the embedder's model are not embedded again.

:func:`index_photos` is the one loop that runs the stages and commits their results: a runner
(:mod:`iffse_lib.runners`: this process or a pool of one worker process per core;
:class:`iffse_lib.distributed.DaskRunner`: a Dask cluster) runs work units of a few photos
and yields their results in order; only this process writes the catalogue.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm.auto import tqdm

from . import config, faces, images
from .catalog import Catalog
from .embed import Embedder
from .embedders import get_embedder
from .errors import BadImage, IndexMissing
from .index import FaceIndex
from .records import Detection, PhotoRecord

log = logging.getLogger(__name__)


@dataclass
class StageTimes:
    """Seconds spent per stage, and per-item milliseconds for medians."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    items: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, stage: str, seconds: float, per_item: bool = True) -> None:
        self.seconds[stage] += seconds
        if per_item:
            self.items[stage].append(seconds * 1000.0)

    def median_ms(self) -> dict[str, float]:
        return {k: float(np.median(v)) for k, v in self.items.items() if v}

    def summary(self) -> dict[str, dict[str, float]]:
        med = self.median_ms()
        return {k: {"seconds": round(v, 3), "median_ms": round(med[k], 2) if k in med else None}
                for k, v in self.seconds.items()}


# -- collect ------------------------------------------------------------------------------------

def collect(catalog: Catalog, source: Iterable[PhotoRecord], progress: bool = True) -> dict:
    """Store every photo of ``source`` in the catalogue; returns counts.

    Sources seen before are skipped without reading them; bad files are recorded as errors
    (``catalog.errors()``) and the collection goes on.
    """
    kind = getattr(source, "kind", None)
    known = catalog.source_states(kind) if kind else {}
    counts = Counter()
    t0 = time.perf_counter()
    total = len(source) if hasattr(source, "__len__") else None
    bar = tqdm(source, total=total, desc="collect", unit="photo", disable=not progress)
    for record in bar:
        state = known.get(record.source_id) if kind else catalog.source_state(record.kind, record.source_id)
        if state is not None and not _read_again(state, record):
            counts["skipped"] += 1
            log.debug("skipped %s %s: collected before", record.kind, record.source_id)
            continue
        try:
            data = record.read_bytes()
            image = images.open_image(data)
        except BadImage as exc:
            catalog.reject_source(record, "collect", exc.kind, f"{record.source_id}: {exc}")
            log.info("rejected %s %s: %s (%s)", record.kind, record.source_id, exc.kind, exc)
            counts["errors"] += 1
            continue
        except OSError as exc:
            catalog.reject_source(record, "collect", "unreadable", f"{record.source_id}: {exc}")
            log.info("rejected %s %s: unreadable (%s)", record.kind, record.source_id, exc)
            counts["errors"] += 1
            continue
        _, created = catalog.store_photo(record, data, image.width, image.height, images.guess_extension(data))
        counts["stored" if created else "duplicates"] += 1
        bar.set_postfix(stored=counts["stored"], errors=counts["errors"], refresh=False)
    counts["seconds"] = round(time.perf_counter() - t0, 3)
    log.info("collected %s: %d stored, %d skipped, %d duplicates, %d rejected in %.1f s", kind or "photos",
             counts["stored"], counts["skipped"], counts["duplicates"], counts["errors"], counts["seconds"])
    return dict(counts)


def _read_again(state: tuple[int | None, int | None, bool], record: PhotoRecord) -> bool:
    """Whether a source seen before is read again: its failure may pass now (a file still being
    copied, or gone for a while), or the file changed size or mtime since it was read."""
    size, mtime_ns, retry = state
    if retry:
        return True
    return record.stamp is not None and (size, mtime_ns) != tuple(record.stamp)


# -- detect, landmarks, align, embed ------------------------------------------------------------

def detect_and_landmark(images_: list[np.ndarray], detector: faces.FaceDetector,
                        times: StageTimes | None = None) -> list[list[Detection]]:
    """The detect and landmarks stages for several photos: boxes in one call (batched on the CNN
    detector's device), then dlib's 68-point shape predictor on the CPU, face by face."""
    t = time.perf_counter()
    boxes = detector.detect_batch(images_)
    t2 = time.perf_counter()
    found = [[Detection(box=b, score=s, landmarks=faces.landmarks_for_box(image, b)) for b, s in bs]
             for image, bs in zip(images_, boxes)]
    if times is not None:
        per_photo = (t2 - t) / max(len(images_), 1)
        lm_per_photo = (time.perf_counter() - t2) / max(len(images_), 1)
        for _ in images_:
            times.add("detect", per_photo)
            times.add("landmarks", lm_per_photo)
    return found


Item = tuple  # (photo_id, absolute path, stored faces still to embed as [(landmarks, idx, box, detector)] or None)


def pending_batches(catalog: Catalog, model_tag: str, batch_size: int, limit: int | None = None,
                    redetect: str | None = None, detect_new: bool = True) -> tuple[int, list[list[Item]]]:
    """The photos that still need work, cut into batches of items for :func:`run_batch`.

    An item is ``(photo_id, absolute path, stored)``: ``stored`` None means detect the photo; a
    list of ``(landmarks, face index, box, detector tag)`` means it was detected before and these
    faces still need a ``model_tag`` vector. With ``redetect`` (a detector tag), photos detected by another detector
    are detected again (their old faces and vectors are replaced when the batch commits).
    ``detect_new=False`` leaves out the photos that need detecting.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    pending = catalog.pending_photos(model_tag, redetect)
    if not detect_new:  # only faces already found that lack a vector
        pending = [p for p in pending if p[2]]
    if limit is not None:
        pending = pending[:limit]
    stored = catalog.faces_to_embed([pid for pid, _, detected in pending if detected], model_tag)
    batches = [[(pid, str(path), stored[pid] if detected else None)
                for pid, path, detected in pending[start:start + batch_size]]
               for start in range(0, len(pending), batch_size)]
    return len(pending), batches


def _load_all(items: list[Item], loaders: int) -> list:
    """Decode a batch's photos, on ``loaders`` threads (PIL releases the GIL while decoding)."""
    def load(item):
        t = time.perf_counter()
        try:
            return images.load_image(item[1]), time.perf_counter() - t
        except BadImage as exc:
            return exc, 0.0

    if loaders <= 1 or len(items) <= 1:
        return [load(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(loaders, len(items))) as pool:
        return list(pool.map(load, items))


def _on_gpu(embedder: Embedder) -> bool:
    return str(getattr(embedder, "device", "cpu")).startswith("cuda")


ALIGNERS = ("dlib", "torch")


def run_batch(items: list[Item], detector: faces.FaceDetector | int, embedder: Embedder | None,
              loaders: int = 1, align: str | None = None) -> dict:
    """The stages for one batch: load, detect, landmarks, align, embed. Reads files, writes nothing.

    ``detector`` is a :class:`~iffse_lib.faces.FaceDetector` (an int means HOG at that
    upsampling). ``align`` ``"torch"`` cuts the chips from the landmarks in PyTorch on the
    embedder's device (:func:`iffse_lib.cnn_detector.face_chips`: dlib's alignment in
    ``grid_sample``), so that they never leave a GPU; ``"dlib"`` cuts them with dlib's
    ``get_face_chips`` on the CPU. None: torch for an embedder on a GPU, else dlib.
    ``loaders`` threads decode. Chips are cut from :func:`iffse_lib.faces.chip_points` (the 68
    landmarks in a HOG box, the 5-point predictor's points in a CNN box), for faces found now and
    faces found before alike.

    Returns the detections (or a load-error kind) per photo, the load errors, the vectors and,
    row by row, the ``(photo_id, face index)`` each vector belongs to, counts and stage times.
    With ``embedder`` None the chips come back instead of vectors (``"chips"``: dlib's, uint8),
    for an embedder elsewhere (see :func:`run_batches`). It runs in this process or in a worker
    process (:mod:`iffse_lib.runners`, ``distributed.py``); ``"processes"`` and ``"threads"`` say
    which process ran it and how many threads torch had there.
    """
    detector = faces.as_detector(detector)
    times = StageTimes()
    cpu0 = time.process_time()
    detected: dict[int, list[Detection] | str] = {}
    errors: list[tuple[int, str, str]] = []
    loaded = []
    t_load = time.perf_counter()
    results = _load_all(items, loaders)
    wall_load = time.perf_counter() - t_load
    for (photo_id, _path, stored), (image, secs) in zip(items, results):
        if isinstance(image, BadImage):
            errors.append((photo_id, image.kind, str(image)))
            detected[photo_id] = image.kind
            continue
        times.items["load"].append(secs * 1000.0)
        loaded.append((photo_id, image, stored))
    times.seconds["load"] += wall_load
    fresh = [(photo_id, image) for photo_id, image, stored in loaded if stored is None]
    n_faces = n_empty = 0
    if fresh:
        for (photo_id, _), found in zip(fresh, detect_and_landmark([im for _, im in fresh], detector, times)):
            detected[photo_id] = found
            n_faces += len(found)
            n_empty += not found
    align = align or ("torch" if embedder is not None and _on_gpu(embedder) else "dlib")
    if align not in ALIGNERS:
        raise ValueError(f"align must be one of {ALIGNERS}, not {align!r}")
    gpu = align == "torch"
    chips: list = []
    keys: list[tuple[int, int]] = []
    for photo_id, image, stored in loaded:
        todo = ([(d.landmarks, i, d.box, detector.tag) for i, d in enumerate(detected[photo_id])]
                if stored is None else list(stored))
        if todo:
            t = time.perf_counter()
            points = [faces.chip_points(image, box, lm, tag) for lm, _, box, tag in todo]
            if gpu:
                from .cnn_detector import face_chips as gpu_chips

                chips.append(gpu_chips(image, points, device=getattr(embedder, "device", "cpu")))
            else:
                chips.append(faces.face_chips(image, points))
            times.add("align", time.perf_counter() - t)
            keys += [(photo_id, i) for _, i, _, _ in todo]
    vectors = batch = None
    if chips:
        if gpu:
            import torch

            batch = torch.cat(chips)
        else:
            batch = np.concatenate(chips)
        if embedder is not None:
            vectors = _embed_timed(embedder, batch, times)
    torch = sys.modules.get("torch")
    return {"detected": detected, "errors": errors, "vectors": vectors, "keys": keys,
            "chips": batch if embedder is None else None,
            "model_tag": embedder.model_tag if embedder is not None else None, "detector": detector.tag,
            "faces": n_faces, "photos_without_faces": n_empty, "photos": len(items),
            "seconds": dict(times.seconds), "items": {k: list(v) for k, v in times.items.items()},
            "processes": [os.getpid()], "threads": [torch.get_num_threads()] if torch is not None else [],
            "cpu_seconds": time.process_time() - cpu0}


def _embed_timed(embedder: Embedder, chips, times: StageTimes) -> np.ndarray:
    t = time.perf_counter()
    vectors = embedder.embed(chips)
    dt = time.perf_counter() - t
    times.add("embed", dt, per_item=False)
    times.items["embed"].append(dt * 1000.0 / len(chips))  # per face
    return vectors


def merge_results(results: list[dict]) -> dict:
    """One result from the :func:`run_batch` results of a batch's work units, in order."""
    if len(results) == 1:
        return results[0]
    tags = {r["model_tag"] for r in results}  # more than one: workers that differ (ModelMismatch)
    out = {"detected": {}, "errors": [], "keys": [], "seconds": defaultdict(float), "items": defaultdict(list),
           "model_tag": tags.pop() if len(tags) == 1 else ", ".join(sorted(map(str, tags))),
           "detector": results[0]["detector"]}
    for r in results:
        out["detected"].update(r["detected"])
        out["errors"] += r["errors"]
        out["keys"] += r["keys"]
        for k in ("faces", "photos_without_faces", "photos", "cpu_seconds"):
            out[k] = out.get(k, 0) + r[k]
        for stage, secs in r["seconds"].items():
            out["seconds"][stage] += secs
        for stage, ms in r["items"].items():
            out["items"][stage].extend(ms)
    for key in ("processes", "threads"):
        out[key] = sorted({n for r in results for n in r[key]})
    for key in ("vectors", "chips"):
        parts = [r[key] for r in results if r[key] is not None]
        out[key] = np.concatenate(parts) if parts else None
    return out


def unit_size(batch_size: int, slots: int) -> int:
    """Photos per work unit: small enough that every worker stays busy to the end (the last
    units take about as long as one photo), large enough that a unit is worth sending."""
    return max(1, min(8, batch_size // (8 * slots)))


def run_batches(batches: list[list[Item]], runner, detector: faces.FaceDetector, embedder: Embedder,
                loaders: int = 1, embed_here: bool | None = None) -> Iterator[tuple[list[Item], dict]]:
    """``(items, result)`` for each commit batch, in order, the stages run by ``runner``.

    An in-process runner runs each batch whole (``loaders`` threads decode). Otherwise each batch
    is cut into work units (:func:`unit_size`) that the runner's workers take in turn, across
    batch boundaries, and their results are merged back into the batch's. Workers on a CPU embed
    their own chips; for an embedder on a GPU they return dlib's chips and this process embeds a
    whole batch's at once (``embed_here``; None: when the embedder is on a GPU of this machine, so
    never on Dask, whose workers have their own GPUs).
    """
    if runner.in_process:
        work = functools.partial(run_batch, detector=detector, embedder=embedder, loaders=loaders)
        yield from zip(batches, runner.map(work, batches))
        return
    gpu = (runner.kind == "local" and _on_gpu(embedder)) if embed_here is None else embed_here
    size = unit_size(max(map(len, batches), default=1), runner.slots)
    work = functools.partial(run_batch, detector=detector, embedder=None if gpu else embedder,
                             align="dlib" if gpu else None)
    units = [[items[i:i + size] for i in range(0, len(items), size)] for items in batches]
    results = runner.map(work, (unit for parts in units for unit in parts))
    for items, parts in zip(batches, units):
        result = merge_results([next(results) for _ in parts])
        if gpu:
            times = StageTimes()
            result["vectors"] = _embed_timed(embedder, result["chips"], times) if result["keys"] else None
            result["model_tag"] = embedder.model_tag
            result["chips"] = None
            result["seconds"]["embed"] = result["seconds"].get("embed", 0.0) + times.seconds.get("embed", 0.0)
            result["items"].setdefault("embed", []).extend(times.items.get("embed", []))
        yield items, result


def commit_batch(catalog: Catalog, result: dict, times: StageTimes, counts: Counter) -> None:
    """Write one :func:`run_batch` result to the catalogue in one transaction; add up its counts."""
    for photo_id, kind, message in result["errors"]:
        catalog.record_error("load", kind, message, photo_id=photo_id)
        log.info("rejected photo %s: %s (%s)", photo_id, kind, message)
    t = time.perf_counter()
    catalog.save_batch(result["detector"], result["detected"], result["model_tag"], result["vectors"], result["keys"])
    times.add("commit", time.perf_counter() - t, per_item=False)
    for stage, secs in result["seconds"].items():
        times.seconds[stage] += secs
    for stage, ms in result["items"].items():
        times.items[stage].extend(ms)
    counts["photos"] += result["photos"]
    counts["faces"] += result["faces"]
    counts["photos_without_faces"] += result["photos_without_faces"]
    counts["load_errors"] += len(result["errors"])
    counts["vectors"] += len(result["keys"])
    counts["cpu_seconds"] += result.get("cpu_seconds", 0.0)


def finish_counts(counts: Counter, times: StageTimes, elapsed: float) -> dict:
    out = dict(counts)
    out["seconds"] = round(elapsed, 3)
    if "cpu_seconds" in out:  # CPU time of the stages, summed over the processes that ran them
        out["cpu_seconds"] = round(out["cpu_seconds"], 3)
    out["photos_per_s"] = round(counts["photos"] / elapsed, 2) if elapsed > 0 and counts["photos"] else 0.0
    out["stages"] = times.summary()
    return out


def index_photos(catalog: Catalog, embedder: Embedder | str | None = None,
                 upsample: int = config.DEFAULT_UPSAMPLE, batch_size: int = config.DEFAULT_BATCH,
                 progress: bool = True, limit: int | None = None, times: StageTimes | None = None,
                 scheduler: str | None = None, workers: int | None = None,
                 detector: faces.FaceDetector | None = None, redetect: bool = False,
                 loaders: int | None = None, detect_new: bool = True, jobs: int | None = None,
                 runner=None, on_commit: Callable[[int, dict], None] | None = None) -> dict:
    """Detect, align and embed every photo that still needs it; returns counts and stage times.

    ``detector`` (default: dlib's HOG at ``upsample``) finds the faces of photos not yet
    detected. Photos detected before by another detector keep their faces (counted as
    ``other_detector``) unless ``redetect`` is set: then they are detected again and their old
    faces and vectors are replaced. ``detect_new=False`` only embeds faces already found that
    lack a vector.

    Where the stages run (the commits are always here, batch by batch, in order):

    - ``jobs`` worker processes on this machine (:class:`iffse_lib.runners.ProcessPool`); None:
      one per core this process may use, one when the detector is on a GPU. ``jobs=1`` runs
      everything in this process, ``loaders`` threads decoding (default: up to 4).
    - ``scheduler`` (``tcp://HOST:PORT``) or ``workers`` (a local cluster of that many
      processes): on Dask (:mod:`iffse_lib.distributed`).
    - ``runner``: any runner of :mod:`iffse_lib.runners` (or ``distributed.DaskRunner``), used
      as it is.

    ``on_commit(batch_number, counts)`` is called after each batch is committed.
    """
    detector = detector or faces.FaceDetector("hog", upsample)
    embedder = get_embedder(embedder) if isinstance(embedder, (str, type(None))) else embedder
    times = times if times is not None else StageTimes()
    n_photos, batches = pending_batches(catalog, embedder.model_tag, batch_size, limit,
                                        redetect=detector.tag if redetect else None, detect_new=detect_new)
    counts = Counter()
    counts["other_detector"] = other_detector_photos(catalog, detector.tag) if not redetect else 0
    processes: set[int] = set()
    threads: set[int] = set()
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if runner is None:
            runner = stack.enter_context(_runner(jobs, scheduler, workers, detector, embedder, progress,
                                                 n_photos))
        loaders = (default_loaders() if loaders is None else loaders) if runner.in_process else 1
        where = "" if runner.in_process else f", {runner.slots} {'processes' if runner.kind == 'local' else 'dask'}"
        bar = stack.enter_context(tqdm(total=n_photos, desc=f"index ({detector.tag}, {embedder.model_tag}{where})",
                                       unit="photo", disable=not progress))
        for number, (items, result) in enumerate(run_batches(batches, runner, detector, embedder, loaders)):
            if result["model_tag"] != embedder.model_tag:
                from .errors import ModelMismatch

                raise ModelMismatch(f"the workers embed with {result['model_tag']!r}, this process expects "
                                    f"{embedder.model_tag!r}: give workers the same environment (README: "
                                    "Running on a cluster)")
            commit_batch(catalog, result, times, counts)
            processes.update(result["processes"])
            threads.update(result["threads"])
            bar.update(len(items))
            bar.set_postfix(faces=counts["faces"], refresh=False)
            if on_commit is not None:
                on_commit(number, dict(counts))
    out = finish_counts(counts, times, time.perf_counter() - t_start)
    out["jobs"] = runner.slots
    if runner.kind == "dask":
        out["workers"] = runner.slots
    out["processes"] = sorted(processes)
    out["threads"] = sorted(threads)
    return out


def _runner(jobs: int | None, scheduler: str | None, workers: int | None, detector: faces.FaceDetector,
            embedder: Embedder, progress: bool, n_photos: int):
    """The runner that index_photos' options ask for (a context manager)."""
    from . import runners

    if scheduler is not None or workers is not None:
        if jobs is not None:
            raise ValueError("jobs runs processes on this machine; scheduler and workers run Dask: give one")
        from .distributed import dask_runner

        return dask_runner(scheduler, workers, progress=progress)
    jobs = runners.default_jobs(on_gpu=str(detector.device).startswith("cuda")) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be 1 or more, not {jobs}")
    if jobs == 1 or n_photos <= 1:
        return runners.InProcess()
    preload = ["numpy", "PIL.Image", "dlib", "iffse_lib.pipeline"]
    if importlib.util.find_spec("torch") is not None and (detector.kind == "cnn" or not _on_gpu(embedder)):
        preload.append("torch")  # the workers embed (or detect) in torch: imported once, not once each
    return runners.ProcessPool(min(jobs, n_photos), preload=preload)


def default_loaders() -> int:
    """Threads that decode photos: one per core beyond the first, at most 4 (decoding is ~3% of
    a CPU pipeline's time, more of a GPU one's)."""
    from .runners import available_cores

    return max(1, min(4, available_cores() - 1))


def other_detector_photos(catalog: Catalog, tag: str) -> int:
    """Photos whose faces were found by a detector other than ``tag`` (see ``redetect``)."""
    return catalog.other_detector_photos(tag)


# -- index --------------------------------------------------------------------------------------

def index_dir(catalog: Catalog) -> Path:
    return catalog.root / "index"


def build_index(catalog: Catalog, model_tag: str | None = None, n_trees: int = config.DEFAULT_N_TREES,
                progress: bool = True, backend: str | None = None) -> tuple[FaceIndex, dict]:
    """Build and save a new index segment over every vector of ``model_tag`` (read from the memmap).

    ``backend`` None: Annoy below ``index.GRAPH_FROM`` faces, faiss HNSW from there on (``index.default_backend``).
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


def update_index(catalog: Catalog, model_tag: str | None = None, n_trees: int = config.DEFAULT_N_TREES,
                 rebuild: bool = False, backend: str | None = None,
                 progress: bool = True) -> tuple[FaceIndex, dict]:
    """Make every face of ``model_tag`` searchable, rebuilding only when needed.

    The saved segment is kept, with the faces added since searched exactly (see
    :mod:`iffse_lib.index`), unless ``rebuild`` is set, no usable segment exists, ``backend``
    differs from the segment's, or the buffer plus removed faces pass
    :func:`iffse_lib.index.rebuild_threshold` (10% of the segment, 1,000 to 50,000 faces).
    """
    from .errors import IffseError
    from .index import rebuild_threshold

    model_tag = model_tag or get_embedder().model_tag
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
