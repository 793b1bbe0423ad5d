"""Locating and loading the compiled kernel library (``_libkernels``) through ctypes.

The library is a plain shared object built by the package's ``setup.py`` from
``_kernels*.c``; it exports C functions only (no Python C-API), so it is loaded with
:mod:`ctypes` and needs nothing but NumPy on the Python side. Its interface is the public
header ``include/bnn_runtime.h``; this module mirrors it (constants, structs, function
signatures) and loads a library only if it reports the same ABI version.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import warnings
from pathlib import Path

LIBRARY_STEM = "_libkernels"

#: ``BNN_ABI_VERSION`` of the header this module mirrors; a library reporting another
#: version (or none) is not used.
ABI_VERSION = 3

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

#: ``bnn_callback``: a function of (part, parts), run once for each part by some member of a team.
CALLBACK = ctypes.CFUNCTYPE(None, _I64, _I64)


def _int64s(names: str) -> list[tuple[str, type]]:
    return [(name, _I64) for name in names.split()]


def _pointers(names: str) -> list[tuple[str, type]]:
    return [(name, _PTR) for name in names.split()]


# The structs of include/bnn_runtime.h, field by field in the same order (a test compares
# their layouts with the C compiler's).


class OutputTransform(ctypes.Structure):
    """``bnn_output_transform``: a binary layer's per-channel transform (float32 [O] each,
    NULL for the optional ones)."""

    _fields_ = _pointers("scale bias next_threshold slope shift_in shift_out")


class ConvSpec(ctypes.Structure):
    """``bnn_conv_spec``: a binary convolution layer for ``bnn_conv2d_create``."""

    _fields_ = [
        *_int64s("c o kh kw stride_h stride_w pad_h pad_w groups pad_value"),
        *_pointers("weights input_threshold"),
        ("transform", OutputTransform),
    ]


class Window(ctypes.Structure):
    """``bnn_window``: the geometry of a pooling or float convolution (NHWC)."""

    _fields_ = _int64s("n h w c oh ow kh kw stride_h stride_w pad_h pad_w dilation_h dilation_w")


class PoolSpec(ctypes.Structure):
    """``bnn_pool_spec``: a max or average pooling for ``bnn_pool2d``."""

    _fields_ = [("window", Window), *_int64s("average include_pad divisor")]


def library_path() -> Path | None:
    """The built shared library next to this module, or None if it was not built."""
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"{LIBRARY_STEM}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.bnn_abi_version.argtypes = []
    lib.bnn_abi_version.restype = ctypes.c_int
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
    # spec, x, y, isa, threads
    lib.bnn_pool2d.argtypes = [ctypes.POINTER(PoolSpec), _PTR, _PTR, _I64, _I64]
    lib.bnn_pool2d.restype = ctypes.c_int
    # x, rows, c, shift_in, slope, shift_out, y, threads
    lib.bnn_prelu.argtypes = [_PTR, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _I64]
    lib.bnn_prelu.restype = ctypes.c_int
    # x, n, rows, cols, y, threads
    lib.bnn_transpose.argtypes = [_PTR, _I64, _I64, _I64, _PTR, _I64]
    lib.bnn_transpose.restype = ctypes.c_int
    # window, x, panels, bias, o, y, isa, threads
    lib.bnn_float_conv2d.argtypes = [ctypes.POINTER(Window), _PTR, _PTR, _PTR, _I64, _PTR]
    lib.bnn_float_conv2d.argtypes += [_I64, _I64]
    lib.bnn_float_conv2d.restype = ctypes.c_int
    lib.bnn_qgemm_width.argtypes = [_I64]
    lib.bnn_qgemm_width.restype = ctypes.c_int
    # a, m, k, panels, o, wsum, zero_point, multiplier, bias, y, isa, threads
    lib.bnn_qgemm.argtypes = [_PTR, _I64, _I64, _PTR, _I64, _PTR, _I64, _PTR, _PTR, _PTR]
    lib.bnn_qgemm.argtypes += [_I64, _I64]
    lib.bnn_qgemm.restype = ctypes.c_int
    # window, x, inverse, zero_point, panels, o, wsum, multiplier, bias, y, isa, threads
    lib.bnn_qconv2d.argtypes = [ctypes.POINTER(Window), _PTR, ctypes.c_float, _I64, _PTR, _I64]
    lib.bnn_qconv2d.argtypes += [_PTR, _PTR, _PTR, _PTR, _I64, _I64]
    lib.bnn_qconv2d.restype = ctypes.c_int
    lib.bnn_parallel_callback.argtypes = [_I64, CALLBACK]
    lib.bnn_parallel_callback.restype = None
    return lib


def _abi_version(lib: ctypes.CDLL) -> int | None:
    """The library's ``bnn_abi_version()``, or None for one built before the interface had
    a version."""
    try:
        function = lib.bnn_abi_version
    except AttributeError:
        return None
    function.argtypes, function.restype = [], ctypes.c_int
    return int(function())


@functools.cache
def load() -> ctypes.CDLL | None:
    """The loaded library, or None (with a warning, once) when it is missing or broken;
    callers then fall back to the NumPy reference implementation."""
    path = library_path()
    reason = "it was not built"
    if path is not None:
        try:
            lib = ctypes.CDLL(str(path))
            version = _abi_version(lib)
            if version == ABI_VERSION:
                return _declare(lib)
            found = "no ABI version" if version is None else f"ABI version {version}"
            reason = (
                f"{path} has {found} where this bnn_runtime needs {ABI_VERSION}; it was "
                "built from other sources"
            )
        except (OSError, AttributeError) as exc:
            reason = f"loading {path} failed: {exc}"
    warnings.warn(
        f"bnn_runtime: the compiled binary kernels are unavailable ({reason}); using the "
        "NumPy reference implementation, which is far slower. Reinstall bnn-runtime "
        "(pip install ./runtime from a checkout) with a C compiler available to build them.",
        RuntimeWarning,
        stacklevel=3,
    )
    return None


def check(status: int, what: str) -> None:
    """Raise for a non-zero C status code."""
    if status != 0:
        raise RuntimeError(f"bnn_runtime: {what} failed: {ERRORS.get(status, status)}")


def creation_error(status: int, what: str) -> Exception:
    """The exception for a C constructor's failure status: MemoryError when memory ran
    out, ValueError for arguments it refused (invalid, or sizes too large)."""
    message = f"bnn_runtime: preparing {what} failed: {ERRORS.get(status, status)}"
    return MemoryError(message) if status == ENOMEM else ValueError(message)
