"""Run large float operations as bands on the kernels' threads.

NumPy releases the GIL in its copies, element-wise loops and matrix products, so a
large float convolution split into bands of output rows runs on several cores at
once. The bands run on the compiled library's thread team (``bnn_parallel_callback``),
the same threads as the binary kernels: a worker that has just finished a layer is
still spinning and takes the next band at once, where a separate pool's thread would
have to be woken (hundreds of microseconds on some virtual machines) and would compete
with the kernels' threads for the cores. Each band's matrix product runs single-threaded:
OpenBLAS's own threads are never used. Without the library the bands run one after the
other.
"""

from __future__ import annotations

from collections.abc import Callable

from bnn_runtime import _library


def bands(count: int, parts: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges splitting ``range(count)`` into at most ``parts`` bands of
    nearly equal size."""
    parts = max(1, min(parts, count))
    edges = [count * i // parts for i in range(parts + 1)]
    return [(edges[i], edges[i + 1]) for i in range(parts)]


def run(tasks: list[Callable[[], None]]) -> None:
    """Run ``tasks`` concurrently on the library's threads (the first on the calling
    thread) and wait for all; the first exception a task raised is raised here."""
    lib = _library.load()
    if len(tasks) == 1 or lib is None:
        for task in tasks:
            task()
        return
    errors: list[BaseException] = []

    def member(tid: int, team: int) -> None:
        # a smaller team (the pool busy with another caller's job) takes several tasks
        for index in range(tid, len(tasks), team):
            try:
                tasks[index]()
            except BaseException as exc:  # re-raised on the calling thread below
                errors.append(exc)

    lib.bnn_parallel_callback(len(tasks), _library.CALLBACK(member))
    if errors:
        raise errors[0]
