"""Where corpus work runs: worker processes on this machine (``local``) or tasks on a Ray cluster (``ray``).

`ordered_map` gives the results in the order of the items whatever the backend, so `prepare`, `render-dataset`
and `eval` write the same files either way (the first copy of a duplicate song is the same one, reports list parts
in the same order). On one machine a Ray task computes with the same thread count as a local worker (its share of
the cores), so floating-point results agree too; on a cluster each task takes one CPU and one thread.

Ray is an optional extra (``pip install midiarr[scale]``). A task reads and writes files itself: on a cluster the
data and output folders must be at the same path on every node (shared storage), and midiarr must be installed
there (docs/scale.md).
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from midiarr.errors import MidiarrError, OptionError
from midiarr.threads import limit_threads, share_of_cores

BACKENDS = ("local", "ray")
T = TypeVar("T")
R = TypeVar("R")


def check_backend(backend: str, address: str | None) -> None:
    """Refuse an unknown backend, an address without Ray, or Ray where it is not installed (one line each)."""
    if backend not in BACKENDS:
        raise OptionError(f"--backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise OptionError("--address is for --backend ray")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise OptionError("--backend ray needs Ray: pip install 'midiarr[scale]'") from None
        if address not in (None, "auto"):
            _check_reachable(address)


def _check_reachable(address: str) -> None:
    """Refuse an address that is not HOST:PORT or where nothing answers, in seconds (Ray itself retries for
    minutes before it gives up)."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionError(f"--address {address!r}: give HOST:PORT (or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise OptionError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None


def _ray_loaded() -> bool:
    """Whether this process has loaded Ray (to run tasks on it, now or earlier: its threads outlive a shutdown)."""
    return "ray" in sys.modules


def ordered_map(
    function: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    backend: str = "local",
    address: str | None = None,
    chunksize: int = 1,
) -> Iterator[R]:
    """``function(item)`` for every item, in order, on ``workers`` processes (local) or Ray tasks.

    ``function`` must be a module-level function (it is sent to the workers by name). Local with one worker runs
    in this process. With Ray and no ``address``, a Ray instance with ``workers`` CPUs starts on this machine;
    with an address (``HOST:PORT``, or ``auto``) the tasks go to that cluster, each asking for one CPU.
    """
    check_backend(backend, address)
    items = list(items)
    workers = max(1, min(int(workers), len(items)))  # no process without an item to work on
    if backend == "ray":
        yield from _ray_map(function, items, workers, address, chunksize)
        return
    if workers <= 1:
        yield from map(function, items)
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    fork = "fork" in mp.get_all_start_methods() and not _ray_loaded()
    # a process that has run Ray keeps Ray's threads: a child forked from it may die at once (seen in CI), so
    # it spawns
    ctx = mp.get_context("fork") if fork else mp.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=limit_threads, initargs=(share_of_cores(workers),))
    try:  # unlike Pool.imap, a worker that dies (out of memory, a crash in a library) ends the run, not hangs it
        yield from pool.map(function, items, chunksize=chunksize)
    except BrokenProcessPool:
        raise MidiarrError("a worker process ended abruptly (out of memory?); run again with fewer --workers") from None
    finally:
        pool.shutdown(cancel_futures=True)


def _in_task(function: Callable[[Any], Any], chunk: list[Any], threads: int) -> list[Any]:
    limit_threads(threads)
    return [function(item) for item in chunk]


def _ray_map(
    function: Callable[[T], R], items: list[T], workers: int, address: str | None, chunksize: int
) -> Iterator[R]:
    import os

    import ray

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private instance on loopback, or the cluster's own
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address is None:
            options["num_cpus"] = max(1, workers)
        else:
            options["address"] = address
        ray.init(**options)
    try:
        # one CPU a task, as many threads as this machine gives each of ``workers`` processes: the same
        # arithmetic as the local backend, so results agree bit for bit
        threads = share_of_cores(workers) if address is None else 1
        task = ray.remote(num_cpus=1, max_retries=2)(_in_task)
        window = max(2, 4 * max(1, workers))  # tasks in flight; results are taken in order as they come
        pending: deque[Any] = deque()
        size = max(1, int(chunksize))  # items a task: a task costs milliseconds to schedule

        def take() -> list[Any]:
            try:
                return ray.get(pending.popleft())
            except ray.exceptions.RayTaskError as exc:  # the task's own error, without Ray's remote traceback
                cause = exc.cause if isinstance(exc.cause, BaseException) else None
                raise (cause or MidiarrError(str(exc).splitlines()[0])) from None

        for start in range(0, len(items), size):
            pending.append(task.remote(function, items[start : start + size], threads))
            if len(pending) >= window:
                yield from take()
        while pending:
            yield from take()
    finally:
        if started:
            ray.shutdown()
