"""Where the stages run: the runners :func:`iffse_lib.pipeline.index_photos` hands its work units to.

A runner maps a function over work units and yields the results **in order**, whatever order
they finish in, so that the one driver loop commits batch after batch as a single process would.

- :class:`InProcess`: here, one unit after the other (``--jobs 1``).
- :class:`ProcessPool`: a pool of worker processes on this machine, one per core by default.
- ``distributed.DaskRunner``: the tasks of a Dask cluster (``--workers``, ``--scheduler``).

Workers only compute: they read photo files and return detections and vectors; only the process
that owns the :class:`~iffse_lib.catalog.Catalog` writes it (it holds the writer's lock, which
no worker could take).

Pool workers start from a fork server (a clean process started for the purpose, which never
held the catalogue's files or lock), use one thread each for torch, OpenMP and BLAS, ignore
Ctrl-C (the parent stops them), and die with their parent: the kernel kills a worker whose
parent process exits (``PR_SET_PDEATHSIG``), and a watchdog thread checks as well where that is
not available.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger(__name__)

#: Environment variables that size the thread pools of OpenMP, MKL, OpenBLAS and numexpr.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity mask (``taskset``, cgroups cpusets,
    CI runners and containers narrow it), not ``os.cpu_count()``, which counts the machine's."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    total = os.cpu_count() or n
    if n < total:
        log.info("%d of the machine's %d CPUs are available to this process", n, total)
    return max(1, n)


def default_jobs(on_gpu: bool = False) -> int:
    """Processes for a local run: one per available core; one when the detector runs on a GPU
    (the GPU batches the photos itself)."""
    return 1 if on_gpu else available_cores()


def ordered_map(submit: Callable[[Callable, Any], Any], fn: Callable, items: Iterable, window: int) -> Iterator:
    """``fn`` over ``items`` through ``submit(fn, item) -> future``, yielding results in the order
    of ``items``; at most ``window`` futures are pending at once (every worker busy, the
    memory of results bounded). An error in a task is raised here, at its turn; the futures still
    pending are cancelled when the caller stops."""
    if window < 1:
        raise ValueError("window must be >= 1")
    it = iter(items)
    pending: deque = deque()

    def fill() -> None:
        while len(pending) < window:
            try:
                item = next(it)
            except StopIteration:
                return
            pending.append(submit(fn, item))

    try:
        fill()
        while pending:
            result = _result(pending.popleft())
            fill()  # the next unit starts before the caller commits this one
            yield result
    finally:
        for future in pending:
            with contextlib.suppress(Exception):
                future.cancel()


def _result(future):
    """A future's result; a local worker that died says so in one line."""
    from concurrent.futures.process import BrokenProcessPool

    from .errors import WorkerDied

    try:
        return future.result()
    except BrokenProcessPool:
        raise WorkerDied("a worker process died before it finished (its error, if any, is printed above; "
                         "killed for memory? try fewer --jobs). In a script, call index_photos under "
                         "`if __name__ == \"__main__\":`. Run the same command again to resume") from None


class InProcess:
    """Runs every unit here, in order: today's one-process pipeline (``--jobs 1``)."""

    slots = 1
    in_process = True
    kind = "local"

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        return map(fn, items)

    def __enter__(self) -> "InProcess":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __repr__(self) -> str:
        return "InProcess()"


class ProcessPool:
    """``jobs`` worker processes on this machine (default: one per available core).

    ``preload`` names modules the fork server imports once, so that workers start without
    importing them again (torch takes seconds). Use it as a context manager: the workers stop
    when the block ends, killed at once when it ends with an error or Ctrl-C.
    """

    in_process = False
    kind = "local"

    def __init__(self, jobs: int | None = None, preload: Iterable[str] = ()):
        self.slots = available_cores() if jobs is None else jobs
        if self.slots < 1:
            raise ValueError(f"jobs must be 1 or more, not {self.slots}")
        cores = available_cores()
        if self.slots > cores:
            log.warning("%d worker processes on %d available cores: they will compete for them", self.slots, cores)
        self.preload = list(preload)
        self._pool = None

    def __repr__(self) -> str:
        return f"ProcessPool(jobs={self.slots})"

    def __enter__(self) -> "ProcessPool":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["iffse_lib.runners", *self.preload])
        library = logging.getLogger("iffse_lib")
        level = library.getEffectiveLevel() if library.hasHandlers() else None
        self._pool = ProcessPoolExecutor(self.slots, mp_context=ctx, initializer=_start_worker,
                                         initargs=(os.getpid(), level))
        return self

    def __exit__(self, exc_type, *exc) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if exc_type is None:
            pool.shutdown(wait=True)
            return
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # an error or Ctrl-C: the units in flight are not wanted
            with contextlib.suppress(Exception):
                process.kill()
        for process in processes:
            with contextlib.suppress(Exception):
                process.join(5)

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        if self._pool is None:
            raise RuntimeError("use the ProcessPool in a with block")
        return ordered_map(self._pool.submit, fn, items, window=2 * self.slots + 2)

    def pids(self) -> list[int]:
        """The worker processes' ids (those started so far)."""
        return sorted((getattr(self._pool, "_processes", None) or {}).keys())


# -- in each worker process -------------------------------------------------------------------

def _start_worker(parent_pid: int, log_level: int | None = None) -> None:
    """Set up a pool worker: one thread per pool, Ctrl-C left to the parent, death with the parent,
    and the parent's log level (``iffse -v``) for the library's log lines, on stderr."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_level is not None:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        logging.getLogger("iffse_lib").setLevel(log_level)
    _die_with_parent(parent_pid)
    limit_threads(1)


def limit_threads(n: int) -> int:
    """Run torch's pools and every OpenMP/BLAS pool of this process on ``n`` threads, for
    libraries loaded already (torch, threadpoolctl) and those loaded later (environment)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # only before any inter-op work
            torch.set_num_interop_threads(n)
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    return n


def _die_with_parent(parent_pid: int, every: float = 0.5) -> None:
    """Exit when the process that made the pool is gone.

    The kernel sends SIGKILL when this process's parent (the fork server, which exits with the
    pool's owner) dies; a daemon thread also polls the owner's pid, for systems without prctl.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    first_parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(every)
            if os.getppid() != first_parent or not _alive(parent_pid):
                os._exit(1)

    threading.Thread(target=watch, name="iffse-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
