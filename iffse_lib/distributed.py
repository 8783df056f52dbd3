"""The pipeline stages (load, detect, landmarks, align, embed) as tasks on a ``dask.distributed`` cluster.

The client cuts the photos that still need work into batches and submits one task per batch;
each task loads its photos from the shared data folder, detects faces and their landmarks (or
takes the landmarks already stored), aligns and embeds them, and returns detections and vectors.
Only the client writes the catalogue, batch by batch *in order*, with the same
:meth:`~iffse_lib.catalog.Catalog.save_batch` as the one-process pipeline, so an interrupted run
leaves a consistent catalogue and resumes where it stopped.

Tasks are pure functions of their batch, so a worker that dies loses no work: the scheduler
runs its tasks again elsewhere (``distributed.scheduler.allowed-failures`` times at most).
Workers load the models once each (module-level caches in each worker process).

>>> from iffse_lib import distributed, catalog
>>> with distributed.dask_client() as client:                     # LocalCluster: one process per core
...     distributed.index_photos_dask(catalog.Catalog("data"), client=client)
>>> with distributed.dask_client("tcp://10.0.0.5:8786") as client:  # an existing cluster
...     ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections import Counter
from typing import Callable, Iterator

import numpy as np
from tqdm.auto import tqdm

from . import config
from .catalog import Catalog
from .embed import Embedder, get_embedder
from .errors import DependencyMissing, IffseError, ModelMismatch
from .faces import FaceDetector

log = logging.getLogger(__name__)


def _distributed():
    try:
        import distributed
    except ImportError:
        raise DependencyMissing("the Dask pipeline needs dask.distributed: pip install 'dask[distributed]'") from None
    return distributed


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None, dashboard_address: str | None = ":8787",
                progress: bool = True, out=sys.stderr) -> Iterator:
    """A ``dask.distributed.Client``: on ``scheduler`` (``tcp://HOST:PORT``) when given, else on a
    new ``LocalCluster`` of ``n_workers`` processes (default: one per CPU core) with one thread each.

    Prints the dashboard link when there is one (``dashboard_address=None`` turns it off).
    The local cluster is shut down on exit; an existing cluster is left running.
    """
    distributed = _distributed()
    cluster = None
    if scheduler is not None:
        if n_workers is not None:
            raise IffseError("--workers sizes a local cluster; with --scheduler the cluster's own workers run the "
                             "tasks (start more with `dask worker SCHEDULER`)")
        try:
            client = distributed.Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise IffseError(f"cannot reach the Dask scheduler at {scheduler} ({exc}). Start one with "
                             "`dask scheduler` and workers with `dask worker tcp://HOST:8786` (README: "
                             "Running on a cluster).") from None
    else:
        n = (os.cpu_count() or 1) if n_workers is None else n_workers
        if n < 1:
            raise ValueError("n_workers must be >= 1")
        dash = ({"dashboard_address": dashboard_address} if dashboard_address is not None
                else {"scheduler_kwargs": {"dashboard": False}})
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, **dash)
        client = distributed.Client(cluster)
    try:
        link = None
        if dashboard_address is not None or scheduler is not None:
            with contextlib.suppress(Exception):
                link = client.dashboard_link if "dashboard" in client.scheduler_info().get("services", {}) else None
        workers = len(client.scheduler_info().get("workers", {}))
        log.info("dask: %d workers at %s%s", workers, client.scheduler.address, f"; dashboard {link}" if link else "")
        if progress and out is not None:
            print(f"dask: {workers} workers at {client.scheduler.address}"
                  + (f"; dashboard {link}" if link else ""), file=out)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# -- on the workers ---------------------------------------------------------------------------

def process_batch(items: list[tuple[int, str, list[np.ndarray] | None]], detector: FaceDetector | int,
                  embedder: Embedder | str | None) -> dict:
    """:func:`iffse_lib.pipeline.run_batch` on a worker: the stages for one batch.

    ``embedder`` is a name (one embedder per worker process, kept between tasks) or an instance.
    The result also names the worker process, for tests and for watching a cluster.
    """
    from .pipeline import run_batch

    _limit_threads()
    emb = _worker_embedder(embedder) if isinstance(embedder, (str, type(None))) else embedder
    result = run_batch(items, detector, emb)
    result["worker_pid"] = os.getpid()
    return result


_EMBEDDERS: dict[str | None, Embedder] = {}
_THREADS: list[int] = []  # the per-process thread limit once set


def _limit_threads() -> int:
    """Run torch's intra-op pool (and BLAS/OpenMP pools) on as many threads as this Dask worker has.

    A worker process with ``nthreads=1`` is one core's worth of work: were torch to keep its default
    (one thread per CPU), every worker would embed on all cores and two workers on two cores would
    fight over them. Dask's nanny sets ``OMP_NUM_THREADS=1`` for the workers it spawns, but a worker
    started otherwise (``--no-nanny``, another config, more threads per worker) would not get it, so
    the limit is set here explicitly, once per process. Outside a worker nothing changes.
    """
    if _THREADS:
        return _THREADS[0]
    try:
        worker = _distributed().get_worker()
    except ValueError:  # not on a worker (process_batch called directly): leave the defaults
        return 0
    state = getattr(worker, "state", None)
    n = max(1, int(getattr(state, "nthreads", None) or getattr(worker, "nthreads", 1)))
    with contextlib.suppress(ImportError):  # the default embedder's engine (optional: dlib needs none)
        import torch

        torch.set_num_threads(n)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)  # numpy's BLAS and any OpenMP pool already loaded
    _THREADS.append(n)
    return n


def _worker_embedder(name: str | None) -> Embedder:
    """One embedder per worker process and name (its model loads on first use, then stays)."""
    if name not in _EMBEDDERS:
        _EMBEDDERS[name] = get_embedder(name)
    return _EMBEDDERS[name]


# -- on the client ----------------------------------------------------------------------------

def index_photos_dask(catalog: Catalog, embedder: Embedder | str | None = None, *, client=None,
                      scheduler: str | None = None, n_workers: int | None = None,
                      upsample: int = config.DEFAULT_UPSAMPLE, batch_size: int = config.DEFAULT_BATCH,
                      progress: bool = True, limit: int | None = None, times=None,
                      on_commit: Callable[[int, dict], None] | None = None, retries: int = 2,
                      detector: FaceDetector | None = None, redetect: bool = False) -> dict:
    """:func:`iffse_lib.pipeline.index_photos` with the stages on a Dask cluster.

    ``client`` (a ``dask.distributed.Client``) is used as it is; otherwise one is made with
    :func:`dask_client` from ``scheduler`` / ``n_workers``. ``embedder`` is a name for
    :func:`~iffse_lib.embed.get_embedder` (made once per worker) or an embedder instance
    (pickled with each task, so it must load its weights lazily). ``on_commit(batch_number,
    counts)`` is called after each batch is committed. Returns the same counts as ``index_photos``
    plus ``workers``. ``detector`` (default: HOG at ``upsample``) and ``redetect`` are
    index_photos'; a CNN detector on ``cuda`` wants one worker per GPU.
    """
    detector = detector or FaceDetector("hog", upsample)
    if client is None:
        with dask_client(scheduler, n_workers, progress=progress) as own:
            return index_photos_dask(catalog, embedder, client=own, batch_size=batch_size,
                                     progress=progress, limit=limit, times=times, on_commit=on_commit,
                                     retries=retries, detector=detector, redetect=redetect)
    from .pipeline import StageTimes, commit_batch, finish_counts, other_detector_photos, pending_batches

    spec = embedder
    model_tag = (get_embedder(embedder) if isinstance(embedder, (str, type(None))) else embedder).model_tag
    times = times if times is not None else StageTimes()
    n_photos, batches = pending_batches(catalog, model_tag, batch_size, limit,
                                        redetect=detector.tag if redetect else None)

    distributed = _distributed()
    n_workers_now = max(1, len(client.scheduler_info().get("workers", {})))
    window = 2 * n_workers_now + 2  # batches in flight: keeps every worker busy, bounds client memory
    log.info("%d photos in %d batches for %d dask workers, at most %d batches in flight (%d retries each)",
             n_photos, len(batches), n_workers_now, window, retries)
    counts = Counter()
    counts["other_detector"] = other_detector_photos(catalog, detector.tag) if not redetect else 0
    workers_seen: set[int] = set()
    t_start = time.perf_counter()
    bar = tqdm(total=n_photos, desc=f"index ({model_tag}, dask)", unit="photo", disable=not progress)
    futures: dict = {}
    done: dict[int, dict] = {}
    next_submit = next_commit = 0
    ac = distributed.as_completed()

    def submit_more():
        nonlocal next_submit
        while next_submit < len(batches) and next_submit - next_commit < window:
            fut = client.submit(process_batch, batches[next_submit], detector, spec, pure=False, retries=retries,
                                key=f"iffse-batch-{next_submit}-{os.getpid()}-{time.time_ns()}")
            futures[fut.key] = (fut, next_submit)
            ac.add(fut)
            next_submit += 1

    try:
        submit_more()
        for fut in ac:
            _, number = futures.pop(fut.key)
            result = fut.result()  # re-raises a task's error after its retries
            fut.release()
            if result["model_tag"] != model_tag:
                raise ModelMismatch(f"the workers embed with {result['model_tag']!r}, the client expects "
                                    f"{model_tag!r}: give workers the same environment (README: Running on a cluster)")
            done[number] = result
            while next_commit in done:
                r = done.pop(next_commit)
                commit_batch(catalog, r, times, counts)
                workers_seen.add(r["worker_pid"])
                bar.update(r["photos"])
                bar.set_postfix(faces=counts["faces"], refresh=False)
                if on_commit is not None:
                    on_commit(next_commit, dict(counts))
                next_commit += 1
            submit_more()
    finally:
        bar.close()
        for fut, _ in futures.values():  # an error or Ctrl-C: drop the batches still in flight
            with contextlib.suppress(Exception):
                fut.cancel()
    out = finish_counts(counts, times, time.perf_counter() - t_start)
    out["workers"] = n_workers_now
    return out


def worker_pids(client) -> dict[str, int]:
    """Worker address -> process id (for tests and for watching a cluster)."""
    return client.run(os.getpid)


__all__ = ["dask_client", "index_photos_dask", "process_batch", "worker_pids"]
