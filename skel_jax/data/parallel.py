"""Order-preserving parallel map over worker processes, for CPU-bound ingestion."""

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

_In = TypeVar("_In")
_Out = TypeVar("_Out")


def default_num_workers() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Not on Linux.
        return os.cpu_count() or 1


def ordered_map(fn: Callable[[_In], _Out], items: Iterable[_In], num_workers: int | None = None,
                chunksize: int = 8) -> Iterator[_Out]:
    """Yields ``fn(item)`` for every item, in input order, computed by ``num_workers`` processes.

    With one worker everything runs in this process (no pickling, easy debugging). Workers are
    started with ``spawn`` so that a parent holding threads (JAX, a notebook kernel) is safe;
    ``fn`` must therefore be a module-level function.

    Args:
      fn: picklable function of one argument.
      items: the inputs.
      num_workers: processes to use; defaults to the cores available.
      chunksize: items sent to a worker at a time.

    Yields:
      The results in the order of ``items``.
    """
    num_workers = num_workers or default_num_workers()
    if num_workers <= 1:
        yield from map(fn, items)
        return
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
        yield from pool.imap(fn, items, chunksize=chunksize)
