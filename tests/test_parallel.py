"""The one parallel map of the data, graph, topology and path-homology stages."""

import os

import pytest

from matprobe.parallel import parallel_map


def _square_and_worker(x):
    return x * x, os.getpid()


@pytest.mark.parametrize("threads", [1, 2])
def test_results_come_in_order_and_equal_the_plain_map(threads):
    work = iter(range(50))  # a generator, as the stages pass
    results = list(parallel_map(_square_and_worker, work, threads, chunksize=3))
    assert [value for value, _ in results] == [x * x for x in range(50)]
    workers = {pid for _, pid in results}
    assert (workers == {os.getpid()}) if threads == 1 else (os.getpid() not in workers)
