"""Binary (XNOR-popcount) convolution and linear kernels for CPU inference.

This is the Python API over the compiled C library (loaded with ctypes; NumPy is the
only dependency). :func:`binary_conv2d` and :func:`binary_linear` are one-shot calls;
:class:`BinaryConv2d` and :class:`BinaryLinear` prepare a layer's weights once for
repeated calls (what an inference engine wants). When the library is not built, every
function falls back to the NumPy reference in :mod:`bnn_runtime.reference` with a
warning.

Data layout
    * activations: float32, channels last (NHWC for convolutions, [N, C] for linear);
    * packed activations: uint64 [..., ceil(C/64)]; bit i of word k is channel 64k+i,
      1 means +1 and 0 means -1; padding bits beyond C are 0 (they never affect a
      result);
    * packed weights: uint64 [O, KH, KW, ceil(Cin_per_group/64)] for convolutions and
      [O, ceil(Cin/64)] for linear layers, same bit order.

Sign convention: ``x + threshold >= 0`` gives +1 (so sign(0) = +1), otherwise -1;
weights: ``w >= 0`` gives +1.

Output transform (fused): with ``dot`` the sum over taps and input channels of
``x_sign * w_sign`` (taps in zero padding contribute 0),
``y[o] = scale[o] * dot + bias[o]`` in float32 (product rounded, then the sum; never a
fused multiply-add). Packed output stores the bit ``y[o] + next_threshold[o] >= 0``.

ISA paths: ``avx512`` (AVX512F + VPOPCNTDQ), ``avx2`` and ``portable`` (plain C),
chosen at run time from the CPU; the environment variable ``BNN_RUNTIME_ISA`` forces
one (``avx512``, ``avx2``, ``portable``, or ``numpy`` for the reference) and it is an
error if the CPU lacks it. Threads: the ``threads`` argument, else
``BNN_RUNTIME_THREADS``, else ``OMP_NUM_THREADS``, else the number of cores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnn_runtime import _library, reference
from bnn_runtime.dispatch import (
    ENV_ISA,
    ENV_THREADS,
    REFERENCE_ISA,
    available_isas,
    default_threads,
    isa,
    threads_arg,
)
from bnn_runtime.layers import BinaryConv2d, BinaryLinear

__all__ = [
    "ENV_ISA",
    "ENV_THREADS",
    "BinaryConv2d",
    "BinaryLinear",
    "available_isas",
    "binary_conv2d",
    "binary_linear",
    "default_threads",
    "isa",
    "pack_activations",
    "pack_weights",
    "unpack_activations",
]


def pack_activations(
    x: np.ndarray, threshold: np.ndarray | None = None, *, threads: int | None = None
) -> np.ndarray:
    """Pack float activations with channels last into bits.

    ``x``: float [..., C] (e.g. NHWC); ``threshold``: float32 [C] or None. Returns
    uint64 [..., ceil(C/64)] with bit = ``x + threshold >= 0`` (1 = +1).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty channel axis, got shape {x.shape}")
    c = x.shape[-1]
    thr = None if threshold is None else np.ascontiguousarray(threshold, dtype=np.float32)
    if thr is not None and thr.shape != (c,):
        raise ValueError(f"threshold must have {c} values, got shape {thr.shape}")
    nthreads = threads_arg(threads)
    path = isa()
    if path == REFERENCE_ISA:
        return reference.pack_activations(x, thr)
    out = np.empty((*x.shape[:-1], reference.words(c)), dtype=np.uint64)
    status = _library.load().bnn_pack_activations(
        x.ctypes.data, None if thr is None else thr.ctypes.data, x.size // c, c,
        out.ctypes.data, _library.ISAS.index(path), nthreads,
    )  # fmt: skip
    _library.check(status, "pack_activations")
    return out


def unpack_activations(packed: np.ndarray, channels: int) -> np.ndarray:
    """Float32 +-1 values [..., channels] of packed activations (or linear weights)."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint64 or packed.shape[-1:] != (reference.words(channels),):
        raise ValueError(
            f"expected uint64 [..., {reference.words(channels)}] for {channels} channels, "
            f"got {packed.dtype} {packed.shape}"
        )
    return reference.unpack_signs(packed, channels)


def pack_weights(w: np.ndarray) -> np.ndarray:
    """Pack real-valued weights by sign (``w >= 0`` gives +1).

    ``w``: [O, Cin/groups, KH, KW] (torch's OIHW layout) gives uint64
    [O, KH, KW, ceil(Cin_per_group/64)]; a linear weight [O, Cin] gives
    [O, ceil(Cin/64)].
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim == 4:
        return reference.pack_bits(w.transpose(0, 2, 3, 1) >= 0)
    if w.ndim == 2:
        return reference.pack_bits(w >= 0)
    raise ValueError(f"weights must be [O, Cin/groups, KH, KW] or [O, Cin], got {w.shape}")


def binary_conv2d(x: np.ndarray, weights_packed: np.ndarray, **options: Any) -> np.ndarray:
    """Binary 2-D convolution with the output transform fused: the one-shot form of
    :class:`BinaryConv2d`, which prepares the weights once for repeated calls.

    ``x`` is float NHWC [N, H, W, in_channels] (binarized inside: ``x + input_threshold
    >= 0``) or packed uint64 [N, H, W, ceil(in_channels/64)]; ``weights_packed`` and the
    keyword ``options`` (``in_channels``, ``stride``, ``padding``, ``scale``, ``output``,
    ...) are those of :class:`BinaryConv2d`, except that ``input_threshold`` is refused
    with a packed input. Returns the layer's float or packed output.
    """
    _refuse_threshold_of_packed(x, options)
    return BinaryConv2d(weights_packed, **options)(x)


def binary_linear(x: np.ndarray, weights_packed: np.ndarray, **options: Any) -> np.ndarray:
    """Binary fully connected layer with the output transform fused: the one-shot form of
    :class:`BinaryLinear`.

    ``x`` is float [N, in_features] or packed uint64 [N, ceil(in_features/64)];
    ``weights_packed`` and the keyword ``options`` are those of :class:`BinaryLinear`,
    except that ``input_threshold`` is refused with a packed input. Returns float32
    [N, O], or packed uint64 [N, ceil(O/64)].
    """
    _refuse_threshold_of_packed(x, options)
    return BinaryLinear(weights_packed, **options)(x)


def _refuse_threshold_of_packed(x: np.ndarray, options: dict[str, Any]) -> None:
    if options.get("input_threshold") is not None and getattr(x, "dtype", None) == np.uint64:
        raise ValueError("input_threshold applies to a float input only")
