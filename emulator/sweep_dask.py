"""Where a sweep's tasks run: a Dask ``Client`` (a new ``LocalCluster`` or a running scheduler),
or Dask's synchronous scheduler in this process (``emulator.sweep.run_sweep`` takes either)."""

from __future__ import annotations

import contextlib
import logging
import os

from minitnet.errors import MinitnetError

from .errors import ConfigError

__all__ = ["connect", "task_runner", "INSTALL_HINT", "ONE_THREAD_ENV"]

INSTALL_HINT = 'pip install -e ".[sweep]" (dask[distributed], pandas, pyarrow)'

ONE_THREAD_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                  "MKL_NUM_THREADS": "1"}
"""Environment of the ``LocalCluster`` workers (read by Numba and BLAS at import)."""


def _distributed():
    try:
        import distributed
    except ImportError as e:
        raise MinitnetError(f"sweeps run on Dask distributed, which is not installed ({e}); {INSTALL_HINT}") \
            from None
    return distributed


class _Synchronous:
    """Dask's synchronous scheduler behind the calls the driver makes of a ``Client``: every task
    runs in this process, in submission order, when the driver asks for the next result."""

    def scatter(self, data, **kwargs):
        return data

    def submit(self, fn, *args, retries=0, **kwargs):
        import dask

        return dask.delayed(fn, pure=True)(*args)

    def completed(self, futures):
        for f in futures:
            yield f, f.compute(scheduler="synchronous")

    def cancel(self, futures):
        pass


class _Distributed:
    def __init__(self, client):
        self.client = client

    def scatter(self, data, **kwargs):
        return self.client.scatter(data, broadcast=True, hash=True)

    def submit(self, fn, *args, retries=0, **kwargs):
        return self.client.submit(fn, *args, retries=retries, pure=True)

    def completed(self, futures):
        for f in _distributed().as_completed(futures):
            yield f, f.result()

    def cancel(self, futures):
        self.client.cancel(futures)


def task_runner(client):
    """What the driver submits to: the client's cluster, or this process when ``client`` is None."""
    return _Synchronous() if client is None else _Distributed(client)


@contextlib.contextmanager
def connect(workers: int | None = None, scheduler: str | None = None, quiet: bool = True):
    """A Dask ``Client``: of the scheduler at ``scheduler`` (or ``DASK_SCHEDULER_ADDRESS``, read
    only when ``workers`` is None) if given, else of a new ``LocalCluster`` of ``workers``
    one-thread processes (default: one per core; Numba and BLAS at one thread); ``workers=0``:
    None (tasks run in this process with Dask's synchronous scheduler). Closed on exit (a
    LocalCluster is shut down)."""
    if scheduler is None and workers is None:    # an explicit worker count keeps the sweep local
        scheduler = os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if scheduler is None and workers == 0:
        yield None
        return
    distributed = _distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="20s")
        except OSError as e:
            raise MinitnetError(f"sweep: cannot reach the Dask scheduler at {scheduler} ({e}); start one with "
                                f"`dask scheduler` and workers with `dask worker {scheduler} --nthreads 1`") \
                from None
        with client:
            yield client
        return
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"sweep: workers must be a positive int, got {workers!r}")

    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       env=dict(ONE_THREAD_ENV), dashboard_address=":0",
                                       silence_logs=logging.ERROR if quiet else logging.WARNING)
    with cluster, distributed.Client(cluster) as client:
        yield client
