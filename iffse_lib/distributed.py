"""The pipeline's work units as tasks on a ``dask.distributed`` cluster: the client and the runner.

:func:`iffse_lib.pipeline.index_photos` is the one driver loop; on Dask it hands its work units
to a :class:`DaskRunner`. Each task loads its photos from the shared data folder, detects faces
and their landmarks (or takes the landmarks already stored), aligns and embeds them, and returns
detections and vectors. Only the client writes the catalogue, batch by batch *in order*, so an
interrupted run leaves a consistent catalogue and resumes where it stopped.

Tasks are pure functions of their unit, so a worker that dies loses no work: the scheduler
runs its tasks again elsewhere (``distributed.scheduler.allowed-failures`` times at most).
Workers load the models once each (module-level caches in each worker process).

>>> from iffse_lib import distributed, pipeline, catalog
>>> with distributed.dask_client() as client:                     # LocalCluster: one process per core
...     pipeline.index_photos(catalog.Catalog("data"), runner=distributed.DaskRunner(client))
>>> with distributed.dask_client("tcp://10.0.0.5:8786") as client:  # an existing cluster
...     ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Callable, Iterable, Iterator

from .errors import DependencyMissing, IffseError

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


# -- the runner ------------------------------------------------------------------------------

class DaskRunner:
    """Work units as tasks of a Dask cluster, their results in order: the runner
    :func:`iffse_lib.pipeline.index_photos` takes (``runner=DaskRunner(client)``).

    Tasks are pure functions of their unit, so a worker that dies loses no work: the scheduler
    runs its tasks again elsewhere, ``retries`` times at most. At most twice as many units as
    workers (plus two) are in flight, which keeps every worker busy and bounds the client's memory.
    """

    in_process = False
    kind = "dask"

    def __init__(self, client, retries: int = 2):
        self.client = client
        self.retries = retries
        self.slots = max(1, len(client.scheduler_info().get("workers", {})))

    def __repr__(self) -> str:
        return f"DaskRunner({self.client!r}, retries={self.retries})"

    def __enter__(self) -> "DaskRunner":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        from .runners import ordered_map

        def submit(fn, item):
            return self.client.submit(on_worker, fn, item, pure=False, retries=self.retries,
                                      key=f"iffse-unit-{os.getpid()}-{time.time_ns()}")

        return ordered_map(submit, fn, items, window=2 * self.slots + 2)


@contextlib.contextmanager
def dask_runner(scheduler: str | None = None, n_workers: int | None = None, progress: bool = True,
                retries: int = 2) -> Iterator[DaskRunner]:
    """A :class:`DaskRunner` on a client made by :func:`dask_client`, closed on exit."""
    with dask_client(scheduler, n_workers, progress=progress) as client:
        yield DaskRunner(client, retries=retries)


# -- on the workers ---------------------------------------------------------------------------

def on_worker(fn: Callable, item):
    """``fn(item)`` on a Dask worker, torch and BLAS limited to the worker's threads."""
    _limit_threads()
    return fn(item)


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
    except ValueError:  # not on a worker (called directly): leave the defaults
        return 0
    from .runners import limit_threads

    state = getattr(worker, "state", None)
    n = max(1, int(getattr(state, "nthreads", None) or getattr(worker, "nthreads", 1)))
    _THREADS.append(limit_threads(n))
    return n


def worker_pids(client) -> dict[str, int]:
    """Worker address -> process id (for tests and for watching a cluster)."""
    return client.run(os.getpid)


__all__ = ["DaskRunner", "dask_client", "dask_runner", "on_worker", "worker_pids"]
