"""The thread count of NumPy's BLAS (OpenBLAS) while a network runs.

The float convolutions and linear layers of a packed network are NumPy matrix
products, which OpenBLAS runs on as many threads as the machine has cores. Beside the
binary kernels' own threads (and PyTorch's, when both run in one process) that
oversubscribes the cores, and OpenBLAS threads that busy-wait then slow everything
down. :func:`limited` sets OpenBLAS's thread count for the duration of a call through
its public ``openblas_set_num_threads`` function (found among the loaded shared
libraries, as threadpoolctl does) and restores it afterwards; without OpenBLAS it
does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy  # noqa: F401  (loads the OpenBLAS this module looks for)

_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "_64_", "")


@functools.cache
def _functions() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:  # type: ignore[name-defined]
    """OpenBLAS's ``(set_num_threads, get_num_threads)``, or None when not loaded."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()}
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    return setter, getter
    return None


@contextmanager
def limited(threads: int | None) -> Iterator[None]:
    """Run the body with OpenBLAS on ``threads`` threads (``None``: unchanged)."""
    functions = None if threads is None else _functions()
    if functions is None:
        yield
        return
    setter, getter = functions
    previous = getter()
    if previous == threads:
        yield
        return
    setter(threads)
    try:
        yield
    finally:
        setter(previous)
