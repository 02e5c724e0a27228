"""Where independent cells run: one small interface, three back ends.

``executor.run(fn, items)`` calls ``fn(item)`` for every item and yields
``(index, outcome)`` pairs as the calls finish, in any order; ``outcome`` is
``fn``'s return value, or the exception it raised (a worker that died for
good is a :class:`WorkerLost`).  Nothing else is shared between back ends:

* :class:`SerialExecutor`: in this process, in order (the default of
  ``metaplastic reproduce``: nothing changes without the flags).
* :class:`ProcessExecutor`: ``concurrent.futures.ProcessPoolExecutor`` with N
  local processes (``sweep`` when dask is not installed).
* :class:`DaskExecutor`: ``dask.distributed``: a ``LocalCluster`` of N worker
  processes of one thread each, or an existing cluster (``--scheduler
  tcp://HOST:PORT``).  Dask reruns a task whose worker died on another worker;
  each future still yields once, so a cell is counted once.

``fn`` and the items must be picklable (module-level functions, plain data):
the same calls then run in any back end and give the same results.
Reproduce sections find the executor the command line chose with
:func:`current` (set by :func:`using`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Callable, Iterable, Iterator

from ..errors import MetaplasticError

DASK_HINT = "pip install 'metaplastic[dask]'"
#: The reproduce sections that submit their cells through :func:`current`.
CELL_SECTIONS = ("fig3", "fig6", "table2-accuracy", "robustness")


class WorkerLost(RuntimeError):
    """The worker running a cell died (dask gave up after rescheduling it)."""


def _one_thread():
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)


class SerialExecutor:
    """Every call in this process, in the order given."""

    name = "serial"
    slots = 1

    def run(self, fn: Callable, items: Iterable) -> Iterator[tuple[int, object]]:
        for i, item in enumerate(items):
            try:
                out = fn(item)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as e:  # noqa: BLE001 - reported as the cell's outcome
                out = e
            yield i, out

    def close(self) -> None:
        pass


class ProcessExecutor:
    """N local worker processes (spawned: a clean interpreter, one torch thread each)."""

    name = "processes"

    def __init__(self, workers: int):
        import concurrent.futures as cf
        import multiprocessing as mp
        self.slots = workers
        self._cf = cf
        self._pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                            initializer=_one_thread)

    def run(self, fn, items):
        futs = {self._pool.submit(fn, item): i for i, item in enumerate(items)}
        for f in self._cf.as_completed(futs):
            try:
                out = f.result()
            except self._cf.process.BrokenProcessPool as e:
                out = WorkerLost(f"a worker process died ({e})")
            except BaseException as e:  # noqa: BLE001
                out = e
            yield futs[f], out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def have_dask() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


class DaskExecutor:
    """A dask.distributed cluster: a new LocalCluster of ``workers`` processes, or ``scheduler``."""

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None):
        if not have_dask():
            raise MetaplasticError(f"dask is not installed: {DASK_HINT}")
        import dask
        from distributed import Client, LocalCluster
        self.cluster = None
        # worker processes get one thread for torch as well as for dask
        dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": 1,
                         "distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": 1})
        if scheduler:
            try:
                self.client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as e:
                raise MetaplasticError(f"--scheduler {scheduler}: cannot connect ({e})") from None
        else:
            self.cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address=None,
                                        silence_logs=logging.CRITICAL)
            self.client = Client(self.cluster)
        self.client.run(_one_thread)

    @property
    def slots(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    @property
    def address(self) -> str:
        return self.client.scheduler.address

    def run(self, fn, items):
        from distributed import as_completed
        from distributed.scheduler import KilledWorker
        futs = [self.client.submit(fn, item, pure=False) for item in items]
        index = {f.key: i for i, f in enumerate(futs)}
        for f in as_completed(futs):
            try:
                out = f.result()
            except KilledWorker as e:
                out = WorkerLost(f"its worker died and dask gave up rescheduling it ({e})")
            except BaseException as e:  # noqa: BLE001
                out = e
            yield index[f.key], out
            f.release()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(workers: int | None = None, scheduler: str | None = None, *, fallback: bool = True):
    """The executor the flags ask for: none of them -> serial; dask when installed, else processes."""
    if workers is not None and scheduler is not None:
        raise MetaplasticError("give --workers or --scheduler, not both")
    if scheduler is not None:
        if not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")) and ":" not in scheduler:
            raise MetaplasticError(f"--scheduler {scheduler!r}: expected an address like tcp://HOST:PORT")
        return DaskExecutor(scheduler=scheduler)
    if workers is None:
        return SerialExecutor()
    if have_dask():
        return DaskExecutor(workers=workers)
    if not fallback:
        raise MetaplasticError(f"dask is not installed: {DASK_HINT}")
    return ProcessExecutor(workers)


_CURRENT: list = []


def current():
    """The executor reproduce sections submit their cells to (serial unless :func:`using` set one)."""
    return _CURRENT[-1] if _CURRENT else SerialExecutor()


@contextlib.contextmanager
def using(executor):
    _CURRENT.append(executor)
    try:
        yield executor
    finally:
        _CURRENT.pop()
