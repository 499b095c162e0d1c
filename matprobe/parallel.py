"""One way to map a function over many crystals on several cores: the data, graph, topology and path-homology stages
share it."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator


def parallel_map(function: Callable, work: Iterable, threads: int, chunksize: int = 1) -> Iterator:
    """`function` over `work`, results in order: in `threads` forked processes, or in this one for a single thread.
    Fork shares the modules already imported (pymatgen, a compiled kernel), so the workers start at once; chunks
    amortise the pickling of each item."""
    if threads <= 1:
        yield from map(function, work)
        return
    with multiprocessing.get_context("fork").Pool(threads) as pool:
        yield from pool.imap(function, work, chunksize=chunksize)
