"""Which ISA path and how many threads the binary kernels use.

``BNN_RUNTIME_ISA`` forces a path (``avx512``, ``avx2``, ``portable``, or ``numpy`` for
the NumPy reference); it is an error if the CPU or the build cannot run it. Unset, the
fastest path the CPU supports is used. The float operations of
:mod:`bnn_runtime.float_ops` follow it too (``portable``: no AVX2 code; ``numpy``: NumPy
only). Threads: a call's ``threads`` argument, else ``BNN_RUNTIME_THREADS``, else
``OMP_NUM_THREADS``, else the number of cores.
"""

from __future__ import annotations

import functools
import os

from bnn_runtime import _library
from bnn_runtime.errors import UnknownPathError, UnsupportedPathError

ENV_ISA = "BNN_RUNTIME_ISA"
ENV_THREADS = "BNN_RUNTIME_THREADS"
REFERENCE_ISA = "numpy"


@functools.cache
def _supported() -> tuple[str, ...]:
    lib = _library.load()
    if lib is None:
        return ()
    return tuple(name for code, name in enumerate(_library.ISAS) if lib.bnn_isa_supported(code))


def available_isas() -> list[str]:
    """The compiled ISA paths this CPU can run, slowest first (empty if the library is
    not built)."""
    return list(_supported())


def isa() -> str:
    """The path the kernels use now: ``BNN_RUNTIME_ISA`` if set, else the fastest one
    the CPU supports, or ``"numpy"`` when the library is not built.

    Raises :class:`~bnn_runtime.errors.UnknownPathError` (a ValueError) for an unknown
    name and :class:`~bnn_runtime.errors.UnsupportedPathError` (a RuntimeError) for a
    path this CPU (or this build) cannot run; the ``bnn`` command prints either as one
    line and exits with status 2.
    """
    return _resolve(os.environ.get(ENV_ISA, ""))


@functools.lru_cache(maxsize=8)
def _resolve(setting: str) -> str:
    """isa() for one value of the environment variable (errors are not cached)."""
    forced = setting.strip().lower()
    if forced == REFERENCE_ISA:
        return REFERENCE_ISA
    if forced and forced not in _library.ISAS:
        known = ", ".join((*_library.ISAS, REFERENCE_ISA))
        raise UnknownPathError(f"{ENV_ISA}={forced!r} is not an ISA path; use one of: {known}")
    available = _supported()
    if forced:
        if forced not in available:
            raise UnsupportedPathError(
                f"{ENV_ISA}={forced!r}, but this CPU or build cannot run it "
                f"(available: {', '.join(available) or 'none, the library is not built'})"
            )
        return forced
    return available[-1] if available else REFERENCE_ISA


def default_threads() -> int:
    """Threads a call uses when ``threads`` is None (1 without the library)."""
    lib = _library.load()
    if lib is None:
        return 1
    return int(lib.bnn_default_threads())


def threads_arg(threads: int | None) -> int:
    """The C library's thread argument: 0 for the default, else a positive count."""
    if threads is None:
        return 0
    if int(threads) < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)
