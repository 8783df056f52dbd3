"""The driver: collect photos into the catalogue, then index them, batch by batch.

:func:`collect` stores the photos of a source. :func:`index_photos` is the one loop that runs
the stages (:mod:`iffse_lib.stages`: detect, landmarks, align, embed) and commits their
results: a runner (:mod:`iffse_lib.runners`: this process or a pool of one worker process per
core; :class:`iffse_lib.distributed.DaskRunner`: a Dask cluster) runs work units of a few photos
and yields their results in order; only this process writes the catalogue.

Each batch of photos is one catalogue transaction, so an interrupted run resumes where it
stopped: photos already detected are not detected again, faces that already have a vector of
the embedder's model are not embedded again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from collections import Counter
from typing import Callable, Iterable

from tqdm.auto import tqdm

from . import config, faces, images
from .catalog import Catalog
from .embed import Embedder
from .embedders import get_embedder
from .errors import BadImage
from .records import PhotoRecord
from .stages import StageTimes, commit_batch, finish_counts, on_gpu, pending_batches, run_batches

log = logging.getLogger(__name__)


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


def index_photos(catalog: Catalog, embedder: Embedder | None = None, batch_size: int = config.DEFAULT_BATCH,
                 progress: bool = True, limit: int | None = None, times: StageTimes | None = None,
                 scheduler: str | None = None, workers: int | None = None,
                 detector: faces.FaceDetector | None = None, redetect: bool = False,
                 loaders: int | None = None, detect_new: bool = True, jobs: int | None = None,
                 runner=None, on_commit: Callable[[int, dict], None] | None = None) -> dict:
    """Detect, align and embed every photo that still needs it; returns counts and stage times.

    ``embedder`` (default: ``get_embedder()``) makes the vectors; ``detector`` (default:
    :func:`iffse_lib.faces.default_detector`) finds the faces of photos not yet detected. Photos
    detected before by another detector keep their faces (counted as ``other_detector``) unless
    ``redetect`` is set: then they are detected again and their old faces and vectors are
    replaced. ``detect_new=False`` only embeds faces already found that lack a vector.

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
    detector = detector if detector is not None else faces.default_detector()
    embedder = embedder if embedder is not None else get_embedder()
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
            if result.model_tag != embedder.model_tag:
                from .errors import ModelMismatch

                raise ModelMismatch(f"the workers embed with {result.model_tag!r}, this process expects "
                                    f"{embedder.model_tag!r}: give workers the same environment (README: "
                                    "Running on a cluster)")
            commit_batch(catalog, result, times, counts)
            processes.update(result.processes)
            threads.update(result.threads)
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
    preload = ["numpy", "PIL.Image", "dlib", "iffse_lib.stages"]
    if importlib.util.find_spec("torch") is not None and (detector.kind == "cnn" or not on_gpu(embedder)):
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
