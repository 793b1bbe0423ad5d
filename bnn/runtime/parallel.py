"""Run large float operations as bands on several Python threads.

NumPy releases the GIL in its copies, element-wise loops and matrix products, so a
large float convolution split into bands of output rows runs on several cores at
once. Each band's matrix product runs single-threaded in its own thread: OpenBLAS's
own worker threads are never woken, because after each call they busy-wait for a long
while and slow down the binary kernels' threads (and PyTorch's, in a benchmark) that
need the same cores. The pool's idle threads sleep instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}


def bands(count: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges splitting ``range(count)`` into at most ``parts`` bands of
    nearly equal size."""
    parts = max(1, min(parts, count))
    edges = [count * i // parts for i in range(parts + 1)]
    return [(edges[i], edges[i + 1]) for i in range(parts)]


def run(tasks: list[Callable[[], None]]) -> None:
    """Run ``tasks`` concurrently (the first on the calling thread) and wait for all."""
    if len(tasks) == 1:
        tasks[0]()
        return
    workers = len(tasks) - 1
    with _lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="bnn")
    futures = [pool.submit(task) for task in tasks[1:]]
    tasks[0]()
    for future in futures:
        future.result()
