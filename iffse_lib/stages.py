"""The batch engine: the stages over one batch of photos, and their results committed in order.

:func:`run_batch` runs load, detect, landmarks, align and embed over a few photos and returns a
:class:`BatchResult`; it reads files and writes nothing, so it runs in this process or in a
worker (:mod:`iffse_lib.runners`, :mod:`iffse_lib.distributed`). :func:`pending_batches` cuts
the photos that still need work into batches, :func:`run_batches` hands them to a runner (cut
into work units and merged back with :func:`merge_results`), and :func:`commit_batch` writes one
batch's result to the catalogue. :class:`StageTimes` adds up the time each stage took. The
driver loop over all of this is :func:`iffse_lib.pipeline.index_photos`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from . import faces, images
from .catalog import Catalog
from .embed import Embedder
from .errors import BadImage
from .records import Detection

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



@dataclass(frozen=True, eq=False)
class BatchResult:
    """What :func:`run_batch` returns for a batch (or a work unit) of photos; nothing written yet.

    ``detected``: per photo id, its detections, or a load-error kind for a photo that failed to
    load (``errors`` holds those as ``(photo_id, kind, message)``). ``vectors`` row by row belong
    to ``keys`` (``(photo_id, face index)``); ``chips`` are dlib's chips (uint8) instead of
    vectors when no embedder ran there (then ``model_tag`` is None). ``faces``,
    ``photos_without_faces`` and ``photos`` count this batch; ``seconds`` and ``items`` are its
    stage times (:class:`StageTimes`); ``processes`` and ``threads`` say which processes ran it
    and how many threads torch had there; ``cpu_seconds`` is their CPU time.
    """

    detected: dict[int, list[Detection] | str]
    errors: list[tuple[int, str, str]]
    vectors: np.ndarray | None
    keys: list[tuple[int, int]]
    chips: Any
    model_tag: str | None
    detector: str
    faces: int
    photos_without_faces: int
    photos: int
    seconds: dict[str, float]
    items: dict[str, list[float]]
    processes: list[int]
    threads: list[int]
    cpu_seconds: float


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


def on_gpu(embedder: Embedder) -> bool:
    """Whether ``embedder`` runs on a GPU (its ``device`` is a CUDA one)."""
    return str(getattr(embedder, "device", "cpu")).startswith("cuda")


ALIGNERS = ("dlib", "torch")


def run_batch(items: list[Item], detector: faces.FaceDetector, embedder: Embedder | None,
              loaders: int = 1, align: str | None = None) -> BatchResult:
    """The stages for one batch: load, detect, landmarks, align, embed. Reads files, writes nothing.

    ``detector`` (a :class:`~iffse_lib.faces.FaceDetector`) finds the faces of photos not yet
    detected. ``align`` ``"torch"`` cuts the chips from the landmarks in PyTorch on the
    embedder's device (:func:`iffse_lib.align_torch.face_chips`: dlib's alignment in
    ``grid_sample``), so that they never leave a GPU; ``"dlib"`` cuts them with dlib's
    ``get_face_chips`` on the CPU. None: torch for an embedder on a GPU, else dlib.
    ``loaders`` threads decode. Chips are cut from :func:`iffse_lib.faces.chip_points` (the 68
    landmarks in a HOG box, the 5-point predictor's points in a CNN box), for faces found now and
    faces found before alike.

    Returns a :class:`BatchResult`: the detections (or a load-error kind) per photo, the load
    errors, the vectors and, row by row, the ``(photo_id, face index)`` each vector belongs to,
    counts and stage times. With ``embedder`` None the chips come back instead of vectors
    (``chips``: dlib's, uint8), for an embedder elsewhere (see :func:`run_batches`). It runs in
    this process or in a worker process (:mod:`iffse_lib.runners`, ``distributed.py``);
    ``processes`` and ``threads`` say which process ran it and how many threads torch had there.
    """
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
    align = align or ("torch" if embedder is not None and on_gpu(embedder) else "dlib")
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
                from .align_torch import face_chips as gpu_chips

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
    return BatchResult(detected=detected, errors=errors, vectors=vectors, keys=keys,
                       chips=batch if embedder is None else None,
                       model_tag=embedder.model_tag if embedder is not None else None, detector=detector.tag,
                       faces=n_faces, photos_without_faces=n_empty, photos=len(items),
                       seconds=dict(times.seconds), items={k: list(v) for k, v in times.items.items()},
                       processes=[os.getpid()], threads=[torch.get_num_threads()] if torch is not None else [],
                       cpu_seconds=time.process_time() - cpu0)


def _embed_timed(embedder: Embedder, chips, times: StageTimes) -> np.ndarray:
    t = time.perf_counter()
    vectors = embedder.embed(chips)
    dt = time.perf_counter() - t
    times.add("embed", dt, per_item=False)
    times.items["embed"].append(dt * 1000.0 / len(chips))  # per face
    return vectors


def merge_results(results: list[BatchResult]) -> BatchResult:
    """One result from the :func:`run_batch` results of a batch's work units, in order."""
    if len(results) == 1:
        return results[0]
    tags = {r.model_tag for r in results}  # more than one: workers that differ (ModelMismatch)
    seconds: dict[str, float] = defaultdict(float)
    items: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for stage, secs in r.seconds.items():
            seconds[stage] += secs
        for stage, ms in r.items.items():
            items[stage].extend(ms)

    def stacked(parts):
        parts = [p for p in parts if p is not None]
        return np.concatenate(parts) if parts else None

    return BatchResult(
        detected={photo_id: d for r in results for photo_id, d in r.detected.items()},
        errors=[e for r in results for e in r.errors],
        vectors=stacked(r.vectors for r in results),
        keys=[k for r in results for k in r.keys],
        chips=stacked(r.chips for r in results),
        model_tag=tags.pop() if len(tags) == 1 else ", ".join(sorted(map(str, tags))),
        detector=results[0].detector,
        faces=sum(r.faces for r in results),
        photos_without_faces=sum(r.photos_without_faces for r in results),
        photos=sum(r.photos for r in results),
        seconds=seconds, items=items,
        processes=sorted({n for r in results for n in r.processes}),
        threads=sorted({n for r in results for n in r.threads}),
        cpu_seconds=sum(r.cpu_seconds for r in results))


def unit_size(batch_size: int, slots: int) -> int:
    """Photos per work unit: small enough that every worker stays busy to the end, large enough
    that a unit is worth sending."""
    return max(1, min(8, batch_size // (8 * slots)))


def work_units(batches: list[list[Item]], size: int, slots: int) -> list[list[list[Item]]]:
    """Each batch cut into units of ``size`` photos, but for the run's last ``size * slots``
    photos: one photo per unit, so that the workers finish within about one photo of each other."""
    tail = size * slots if size > 1 else 0
    left = sum(map(len, batches))
    units = []
    for items in batches:
        parts, i = [], 0
        while i < len(items):
            step = 1 if left - i <= tail else min(size, len(items) - i, left - i - tail)
            parts.append(items[i:i + step])
            i += step
        left -= len(items)
        units.append(parts)
    return units


def run_batches(batches: list[list[Item]], runner, detector: faces.FaceDetector, embedder: Embedder,
                loaders: int = 1, embed_here: bool | None = None) -> Iterator[tuple[list[Item], BatchResult]]:
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
    gpu = (runner.kind == "local" and on_gpu(embedder)) if embed_here is None else embed_here
    size = unit_size(max(map(len, batches), default=1), runner.slots)
    work = functools.partial(run_batch, detector=detector, embedder=None if gpu else embedder,
                             align="dlib" if gpu else None)
    units = work_units(batches, size, runner.slots)
    results = runner.map(work, (unit for parts in units for unit in parts))
    for items, parts in zip(batches, units):
        result = merge_results([next(results) for _ in parts])
        if gpu:
            result = _embedded_here(result, embedder)
        yield items, result


def _embedded_here(result: BatchResult, embedder: Embedder) -> BatchResult:
    """``result`` with its chips embedded in this process: vectors in their place, the embed time added."""
    times = StageTimes()
    vectors = _embed_timed(embedder, result.chips, times) if result.keys else None
    seconds = {**result.seconds, "embed": result.seconds.get("embed", 0.0) + times.seconds.get("embed", 0.0)}
    items = {**result.items, "embed": [*result.items.get("embed", []), *times.items.get("embed", [])]}
    return dataclasses.replace(result, vectors=vectors, model_tag=embedder.model_tag, chips=None,
                               seconds=seconds, items=items)


def commit_batch(catalog: Catalog, result: BatchResult, times: StageTimes, counts: Counter) -> None:
    """Write one :func:`run_batch` result to the catalogue in one transaction; add up its counts."""
    for photo_id, kind, message in result.errors:
        catalog.record_error("load", kind, message, photo_id=photo_id)
        log.info("rejected photo %s: %s (%s)", photo_id, kind, message)
    t = time.perf_counter()
    catalog.save_batch(result.detector, result.detected, result.model_tag, result.vectors, result.keys)
    times.add("commit", time.perf_counter() - t, per_item=False)
    for stage, secs in result.seconds.items():
        times.seconds[stage] += secs
    for stage, ms in result.items.items():
        times.items[stage].extend(ms)
    counts["photos"] += result.photos
    counts["faces"] += result.faces
    counts["photos_without_faces"] += result.photos_without_faces
    counts["load_errors"] += len(result.errors)
    counts["vectors"] += len(result.keys)
    counts["cpu_seconds"] += result.cpu_seconds


def finish_counts(counts: Counter, times: StageTimes, elapsed: float) -> dict:
    out = dict(counts)
    out["seconds"] = round(elapsed, 3)
    if "cpu_seconds" in out:  # CPU time of the stages, summed over the processes that ran them
        out["cpu_seconds"] = round(out["cpu_seconds"], 3)
    out["photos_per_s"] = round(counts["photos"] / elapsed, 2) if elapsed > 0 and counts["photos"] else 0.0
    out["stages"] = times.summary()
    return out

