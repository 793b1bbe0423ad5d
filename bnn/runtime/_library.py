"""Locating and loading the compiled kernel library (``_libkernels``) through ctypes.

The library is a plain shared object built by the package's ``setup.py`` from
``_kernels*.c``; it exports C functions only (no Python C-API), so it is loaded with
:mod:`ctypes` and needs nothing but NumPy on the Python side.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import warnings
from pathlib import Path

LIBRARY_STEM = "_libkernels"

# The ISA paths in the order of the C enum (BNN_ISA_PORTABLE = 0, ...).
ISAS: tuple[str, ...] = ("portable", "avx2", "avx512")

#: The C status of invalid arguments.
EINVAL = -1
#: The C status of a call this CPU cannot run.
EISA = -2
#: The C status of a call that ran out of memory.
ENOMEM = -3
#: The C status of sizes whose element or byte counts do not fit in memory's address range.
ESIZE = -4

# C status codes and what they mean.
ERRORS = {
    EINVAL: "invalid arguments",
    EISA: "the requested ISA path is not supported by this CPU",
    ENOMEM: "out of memory",
    ESIZE: "sizes too large: an element count, byte count or offset would overflow",
}

_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p

#: ``bnn_callback``: a function of (member, team size) run by every member of a team.
CALLBACK = ctypes.CFUNCTYPE(None, _I64, _I64)


class ConvSpec(ctypes.Structure):
    """Mirror of ``bnn_conv_spec`` in ``_kernels_conv.c`` (same fields, same order)."""

    _fields_ = [
        ("c", _I64),
        ("o", _I64),
        ("kh", _I64),
        ("kw", _I64),
        ("stride_h", _I64),
        ("stride_w", _I64),
        ("pad_h", _I64),
        ("pad_w", _I64),
        ("groups", _I64),
        ("pad_value", _I64),
        ("weights", _PTR),
        ("scale", _PTR),
        ("bias", _PTR),
        ("input_threshold", _PTR),
        ("next_threshold", _PTR),
        ("slope", _PTR),
        ("shift_in", _PTR),
        ("shift_out", _PTR),
    ]


def library_path() -> Path | None:
    """The built shared library next to this module, or None if it was not built."""
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"{LIBRARY_STEM}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.bnn_isa_supported.argtypes = [ctypes.c_int]
    lib.bnn_isa_supported.restype = ctypes.c_int
    lib.bnn_best_isa.argtypes = []
    lib.bnn_best_isa.restype = ctypes.c_int
    lib.bnn_default_threads.argtypes = []
    lib.bnn_default_threads.restype = ctypes.c_int
    lib.bnn_pack_activations.argtypes = [_PTR, _PTR, _I64, _I64, _PTR, _I64, _I64]
    lib.bnn_pack_activations.restype = ctypes.c_int
    # spec, status (out)
    lib.bnn_conv2d_create.argtypes = [ctypes.POINTER(ConvSpec), ctypes.POINTER(ctypes.c_int)]
    lib.bnn_conv2d_create.restype = _PTR
    lib.bnn_conv2d_destroy.argtypes = [_PTR]
    lib.bnn_conv2d_destroy.restype = None
    # layer, x, x_packed, n, h, w, y, y_packed, residual, isa, threads
    lib.bnn_conv2d_run.argtypes = [_PTR, _PTR, _I64, _I64, _I64, _I64, _PTR, _I64, _PTR, _I64, _I64]
    lib.bnn_conv2d_run.restype = ctypes.c_int
    # x, n, h, w, c, y, oh, ow, kh, kw, sh, sw, ph, pw, average, include_pad, divisor, isa,
    # threads
    lib.bnn_pool2d.argtypes = [_PTR, _I64, _I64, _I64, _I64, _PTR] + [_I64] * 13
    lib.bnn_pool2d.restype = ctypes.c_int
    # x, rows, c, shift_in, slope, shift_out, y, threads
    lib.bnn_prelu.argtypes = [_PTR, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _I64]
    lib.bnn_prelu.restype = ctypes.c_int
    # x, n, rows, cols, y, threads
    lib.bnn_transpose.argtypes = [_PTR, _I64, _I64, _I64, _PTR, _I64]
    lib.bnn_transpose.restype = ctypes.c_int
    # x, n, h, w, c, panels, bias, o, y, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, isa, threads
    lib.bnn_float_conv2d.argtypes = [_PTR, _I64, _I64, _I64, _I64, _PTR, _PTR, _I64, _PTR]
    lib.bnn_float_conv2d.argtypes += [_I64] * 12
    lib.bnn_float_conv2d.restype = ctypes.c_int
    lib.bnn_parallel_callback.argtypes = [_I64, CALLBACK]
    lib.bnn_parallel_callback.restype = None
    return lib


@functools.cache
def load() -> ctypes.CDLL | None:
    """The loaded library, or None (with a warning, once) when it is missing or broken;
    callers then fall back to the NumPy reference implementation."""
    path = library_path()
    reason = "it was not built"
    if path is not None:
        try:
            return _declare(ctypes.CDLL(str(path)))
        except (OSError, AttributeError) as exc:
            reason = f"loading {path} failed: {exc}"
    warnings.warn(
        f"bnn.runtime: the compiled binary kernels are unavailable ({reason}); using the "
        "NumPy reference implementation, which is far slower. Reinstall the package "
        "(pip install -e .) with a C compiler available to build them.",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


def check(status: int, what: str) -> None:
    """Raise for a non-zero C status code."""
    if status != 0:
        raise RuntimeError(f"bnn.runtime: {what} failed: {ERRORS.get(status, status)}")


def creation_error(status: int, what: str) -> Exception:
    """The exception for a C constructor's failure status: MemoryError when memory ran
    out, ValueError for arguments it refused (invalid, or sizes too large)."""
    message = f"bnn.runtime: preparing {what} failed: {ERRORS.get(status, status)}"
    return MemoryError(message) if status == ENOMEM else ValueError(message)
