"""The float parts of a packed network on channels-last (NHWC) arrays: convolution by
im2col and one matrix product, pooling with PyTorch's exact window and divisor rules,
and the shape arithmetic they share. The compiled library computes convolutions (AVX2
and FMA CPUs) and pooling when it is built; NumPy otherwise.

Activations are float32 ``[N, H, W, C]`` (or ``[N, C]`` after flattening), so every
per-channel operation broadcasts over the last axis whatever the rank.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from bnn_runtime import _library, dispatch, parallel
from bnn_runtime.validate import conv_output_size, pool_output_size

#: Convolutions of at least this many multiply-adds, and poolings of inputs of at least
#: this many values, run as bands on several threads; smaller ones on one (handing work
#: to threads costs more than it saves).
PARALLEL_MACS = 1 << 24
PARALLEL_ELEMENTS = 1 << 19


def pad_spatial(
    x: np.ndarray, top: int, bottom: int, left: int, right: int, value: float
) -> np.ndarray:
    """``x`` (NHWC) with ``value`` added around its height and width."""
    if not (top or bottom or left or right):
        return x
    n, h, w, c = x.shape
    out = np.full((n, h + top + bottom, w + left + right, c), value, dtype=x.dtype)
    out[:, top : top + h, left : left + w] = x
    return out


def windows(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out: Sequence[int],
) -> np.ndarray:
    """A read-only view ``[N, OH, OW, KH, KW, C]`` of every window of ``x`` (NHWC,
    already padded): no data is copied."""
    sn, sh, sw, sc = x.strides
    n, _, _, c = x.shape
    return as_strided(
        x,
        shape=(n, out[0], out[1], kernel[0], kernel[1], c),
        strides=(sn, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1], sc),
        writeable=False,
    )


def conv_weight_matrix(weight: np.ndarray, groups: int) -> np.ndarray:
    """A convolution weight ``[O, C/g, KH, KW]`` as ``[g, KH*KW*C/g, O/g]``: rows in the
    order of :func:`windows` (kernel row, kernel column, channel)."""
    out_channels, per_group, kh, kw = weight.shape
    grouped = weight.reshape(groups, out_channels // groups, per_group, kh, kw)
    matrix = grouped.transpose(0, 3, 4, 2, 1).reshape(groups, kh * kw * per_group, -1)
    return np.ascontiguousarray(matrix, dtype=np.float32)


#: Output channels per column panel of the compiled float convolution.
PANEL_COLUMNS = 16


def column_panels(matrix: np.ndarray) -> np.ndarray:
    """An ungrouped convolution's ``[K, O]`` weight matrix as the compiled kernel reads
    it: ``[ceil(O / 16), K, 16]``, zero beyond ``O``."""
    rows, columns = matrix.shape
    blocks = -(-columns // PANEL_COLUMNS)
    padded = np.zeros((rows, blocks * PANEL_COLUMNS), dtype=np.float32)
    padded[:, :columns] = matrix
    panels = _aligned_empty((blocks, rows, PANEL_COLUMNS))
    panels[...] = padded.reshape(rows, blocks, PANEL_COLUMNS).transpose(1, 0, 2)
    return panels


def _aligned_empty(shape: tuple[int, ...], alignment: int = 64) -> np.ndarray:
    """An uninitialised float32 array starting on an ``alignment``-byte boundary (a cache
    line), so that the kernels' full-width vector loads never straddle two lines."""
    count = math.prod(shape) * 4
    raw = np.empty(count + alignment, dtype=np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start : start + count].view(np.float32).reshape(shape)


def channels_last(x: np.ndarray, threads: int = 1) -> np.ndarray:
    """``x`` (NCHW, any float type) as a contiguous float32 NHWC array."""
    n, c, h, w = x.shape
    return _transpose(x, n, c, h * w, threads).reshape(n, h, w, c)


def channels_first(x: np.ndarray, threads: int = 1) -> np.ndarray:
    """``x`` (NHWC float32) as a contiguous NCHW array."""
    n, h, w, c = x.shape
    return _transpose(x, n, h * w, c, threads).reshape(n, c, h, w)


def native() -> tuple[Any, int] | None:
    """The compiled library and the code of the kernel path in force
    (``BNN_RUNTIME_ISA`` or the CPU's best), or None without the library or with the
    NumPy reference forced: the float operations then run in NumPy as well."""
    lib = _library.load()
    if lib is None:
        return None
    path = dispatch.isa()
    return None if path == dispatch.REFERENCE_ISA else (lib, _library.ISAS.index(path))


def _transpose(x: np.ndarray, n: int, rows: int, cols: int, threads: int) -> np.ndarray:
    """The ``n`` matrices ``rows x cols`` held by ``x``, each transposed: ``[n, cols, rows]``
    float32, by the compiled library (cache blocks, on the thread team) when it is built."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    compiled = native()
    if compiled is None:
        return np.ascontiguousarray(x.reshape(n, rows, cols).transpose(0, 2, 1))
    lib = compiled[0]
    y = np.empty((n, cols, rows), dtype=np.float32)
    _library.check(
        lib.bnn_transpose(x.ctypes.data, n, rows, cols, y.ctypes.data, threads), "transpose"
    )
    return y


def conv2d(
    x: np.ndarray,
    matrix: np.ndarray,
    bias: np.ndarray | None,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    threads: int = 1,
    panels: np.ndarray | None = None,
) -> np.ndarray:
    """A float convolution of ``x`` (NHWC) with the weight of :func:`conv_weight_matrix`
    (and, for an ungrouped one, its :func:`column_panels`): zero padding, then im2col and
    a matrix product per group (depthwise convolutions multiply-add one tap at a time
    instead). With ``panels`` on a CPU with AVX2 and FMA the compiled library computes
    it, reading the im2col rows from the padded input without materialising them;
    otherwise NumPy does, a large ungrouped one split into bands computed on ``threads``
    threads."""
    groups, rows, per_out = matrix.shape
    n, h, w, c = x.shape
    per_group = c // groups
    out = [
        conv_output_size(size, k, s, pad, dil)
        for size, pad, dil, k, s in zip((h, w), padding, dilation, kernel, stride, strict=True)
    ]
    if panels is not None and groups == 1:
        native = _native_conv(x, panels, bias, per_out, out, kernel, stride, padding, dilation,
                              threads)  # fmt: skip
        if native is not None:
            return native
    padded = pad_spatial(x, padding[0], padding[0], padding[1], padding[1], 0.0)
    view = windows(padded, kernel, stride, dilation, out)
    positions = n * out[0] * out[1]
    if groups == 1:
        y = _banded_matmul(view, matrix[0], bias, threads)
    elif per_group == 1 and per_out == 1:
        taps = matrix[:, :, 0].T.reshape(kernel[0], kernel[1], c)
        y = np.zeros((n, out[0], out[1], c), dtype=np.float32)
        for i in range(kernel[0]):
            for j in range(kernel[1]):
                y += view[:, :, :, i, j, :] * taps[i, j]
    else:
        split = view.reshape(positions, kernel[0] * kernel[1], groups, per_group)
        y = np.concatenate(
            [split[:, :, g, :].reshape(positions, rows) @ matrix[g] for g in range(groups)],
            axis=1,
        )
    y = y.reshape(n, out[0], out[1], groups * per_out)
    if bias is not None and groups > 1:
        y += bias
    return y


def _native_arrays(
    x: np.ndarray, out: Sequence[int], channels: int
) -> tuple[Any, int, np.ndarray, np.ndarray] | None:
    """:func:`native`'s library and path, ``x`` as contiguous float32 and an empty NHWC
    output of ``out`` x ``channels``; None where :func:`native` is or for an empty
    output."""
    compiled = native()
    if compiled is None or min(out) < 1:
        return None
    x = np.ascontiguousarray(x, dtype=np.float32)
    return *compiled, x, np.empty((x.shape[0], out[0], out[1], channels), dtype=np.float32)


def _window(
    shape: Sequence[int],
    out: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> _library.Window:
    """The C library's ``bnn_window`` of an NHWC input of ``shape``."""
    (n, h, w, c), (oh, ow), (kh, kw) = shape, out, kernel
    return _library.Window(
        n=n, h=h, w=w, c=c, oh=oh, ow=ow, kh=kh, kw=kw, stride_h=stride[0],
        stride_w=stride[1], pad_h=padding[0], pad_w=padding[1], dilation_h=dilation[0],
        dilation_w=dilation[1],
    )  # fmt: skip


def _native_conv(
    x: np.ndarray,
    panels: np.ndarray,
    bias: np.ndarray | None,
    channels: int,
    out: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    threads: int,
) -> np.ndarray | None:
    """The convolution by the compiled library (``bnn_float_conv2d``), or None where
    :func:`native` is, on a CPU without AVX2 and FMA, or with the portable path forced."""
    prepared = _native_arrays(x, out, channels)
    if prepared is None:
        return None
    lib, isa, x, y = prepared
    window = _window(x.shape, out, kernel, stride, padding, dilation)
    status = lib.bnn_float_conv2d(
        ctypes.byref(window), x.ctypes.data, panels.ctypes.data,
        None if bias is None else bias.ctypes.data, channels, y.ctypes.data, isa, threads,
    )  # fmt: skip
    if status == _library.EISA:
        return None
    _library.check(status, "float conv2d")
    return y


def _banded_matmul(
    view: np.ndarray, matrix: np.ndarray, bias: np.ndarray | None, threads: int
) -> np.ndarray:
    """The im2col product of the windows ``view`` ``[N, OH, OW, KH, KW, C]`` with
    ``matrix``, plus ``bias``: ``[N * OH * OW, O]``. A large one is split into bands of
    samples (or of output rows, for one sample), each a contiguous block of the result
    computed, bias included, by one thread."""
    n, height, width = view.shape[:3]
    rows, columns = matrix.shape
    if n * height * width * rows * columns < PARALLEL_MACS or threads < 2:
        y = view.reshape(-1, rows) @ matrix
        if bias is not None:
            y += bias
        return y
    y = np.empty((n, height, width, columns), dtype=np.float32)
    # one sample: bands of rows; y[0:1, a:b] is then contiguous, as y[a:b] always is
    blocks, cut = (y[0], view[0]) if n == 1 else (y, view)

    def band(start: int, stop: int) -> None:
        target = blocks[start:stop].reshape(-1, columns)
        np.matmul(cut[start:stop].reshape(-1, rows), matrix, out=target)
        if bias is not None:
            target += bias

    parallel.run([lambda b=b: band(*b) for b in parallel.bands(len(blocks), threads)])
    return y.reshape(-1, columns)


def max_pool2d(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    threads: int = 1,
) -> np.ndarray:
    """Max pooling of ``x`` (NHWC) as PyTorch computes it (padding never wins)."""
    out = _pool_sizes(x, kernel, stride, padding, ceil_mode)
    native = _native_pool(x, kernel, stride, padding, out, 0, False, None, threads)
    if native is not None:
        return native
    return _pool(x, kernel, stride, padding, out, np.maximum, threads)


def avg_pool2d(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor: int | None,
    threads: int = 1,
) -> np.ndarray:
    """Average pooling of ``x`` (NHWC) with PyTorch's divisors: the window clipped to
    the padded input (or to the input itself without ``count_include_pad``), or
    ``divisor`` when given (padding adds zeros to the sums)."""
    h, w = x.shape[1:3]
    out = _pool_sizes(x, kernel, stride, padding, ceil_mode)
    native = _native_pool(x, kernel, stride, padding, out, 1, count_include_pad, divisor, threads)
    if native is not None:
        return native
    total = _pool(x, kernel, stride, padding, out, np.add, threads)
    if divisor:
        total /= np.float32(divisor)
        return total
    counts_h = _window_counts(h, kernel[0], stride[0], padding[0], out[0], count_include_pad)
    counts_w = _window_counts(w, kernel[1], stride[1], padding[1], out[1], count_include_pad)
    total /= np.outer(counts_h, counts_w).astype(np.float32)[:, :, None]
    return total


def _native_pool(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    out: Sequence[int],
    average: int,
    include_pad: bool,
    divisor: int | None,
    threads: int,
) -> np.ndarray | None:
    """The pooling in one pass of the compiled library (``bnn_pool2d``: vectors of 8
    floats on the AVX2 and AVX-512 paths, of 4 on the portable one), or None where
    :func:`native` is or for windows it does not take (padding of a whole kernel or
    more)."""
    prepared = _native_arrays(x, out, x.shape[3])
    if prepared is None:
        return None
    lib, isa, x, y = prepared
    spec = _library.PoolSpec(
        window=_window(x.shape, out, kernel, stride, padding, (1, 1)),
        average=average,
        include_pad=int(include_pad),
        divisor=divisor or 0,
    )
    status = lib.bnn_pool2d(ctypes.byref(spec), x.ctypes.data, y.ctypes.data, isa, threads)
    return y if status == 0 else None


def _pool(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    out: Sequence[int],
    combine: np.ufunc,
    threads: int,
) -> np.ndarray:
    """Combine every window: a maximum along the height, then along the width (it is
    separable and exact in any order); a sum tap by tap in row-major order, the order of
    the compiled loops, so that both round alike even where large values cancel. A large
    input is split into bands of samples (or of output rows, for one sample) on
    ``threads`` threads."""
    n, c = x.shape[0], x.shape[3]

    def rows(first: int, count: int, batch: slice) -> np.ndarray:
        if combine is np.add:
            return _sum_windows(x[batch], kernel, stride, padding, (count, out[1]), first)
        part = _reduce_axis(x[batch], 1, kernel[0], stride[0], padding[0], count, combine, first)
        return _reduce_axis(part, 2, kernel[1], stride[1], padding[1], out[1], combine)

    if x.size < PARALLEL_ELEMENTS or threads < 2:
        return rows(0, out[0], slice(None))
    y = np.empty((n, out[0], out[1], c), dtype=x.dtype)
    if n == 1:

        def band(start: int, stop: int) -> None:
            y[:, start:stop] = rows(start, stop - start, slice(None))

        parallel.run([lambda b=b: band(*b) for b in parallel.bands(out[0], threads)])
    else:

        def samples(start: int, stop: int) -> None:
            y[start:stop] = rows(0, out[0], slice(start, stop))

        parallel.run([lambda b=b: samples(*b) for b in parallel.bands(n, threads)])
    return y


def _tap_span(size: int, tap: int, stride: int, padding: int, first: int, count: int) -> slice:
    """The outputs ``first .. first + count - 1`` (as a slice of them) whose window's
    ``tap`` falls inside an axis of ``size`` inputs, rather than in the padding."""
    low = max(first, -(-(padding - tap) // stride))
    high = min(first + count - 1, (size - 1 + padding - tap) // stride)
    return slice(low - first, max(high - first + 1, low - first))


def _sum_windows(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    out: Sequence[int],
    first_row: int = 0,
) -> np.ndarray:
    """The sums of the windows of output rows ``first_row .. first_row + out[0] - 1``
    (and all ``out[1]`` columns) of ``x`` (NHWC), adding the taps in row-major order and
    skipping those in the padding."""
    n, h, w, c = x.shape
    total = np.zeros((n, out[0], out[1], c), dtype=x.dtype)
    for i in range(kernel[0]):
        rows = _tap_span(h, i, stride[0], padding[0], first_row, out[0])
        if rows.start >= rows.stop:
            continue
        top = (first_row + rows.start) * stride[0] - padding[0] + i
        for j in range(kernel[1]):
            cols = _tap_span(w, j, stride[1], padding[1], 0, out[1])
            if cols.start >= cols.stop:
                continue
            left = cols.start * stride[1] - padding[1] + j
            source = x[
                :,
                top : top + (rows.stop - rows.start - 1) * stride[0] + 1 : stride[0],
                left : left + (cols.stop - cols.start - 1) * stride[1] + 1 : stride[1],
            ]
            total[:, rows, cols] += source
    return total


def _reduce_axis(
    x: np.ndarray,
    axis: int,
    kernel: int,
    stride: int,
    padding: int,
    count: int,
    combine: np.ufunc,
    first_output: int = 0,
) -> np.ndarray:
    """Combine (max or add) the ``kernel`` taps of the windows of outputs
    ``first_output .. first_output + count - 1`` along ``axis``, where output ``o``
    reads inputs ``o * stride - padding + i``; taps falling in the padding are skipped.
    Every window holds at least one input (PyTorch's rule), so the identity each output
    starts from never survives."""
    size = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = count
    identity = -np.inf if combine is np.maximum else 0.0
    result: np.ndarray | None = None
    end = first_output + count - 1
    for tap in sorted(range(kernel), key=lambda i: abs(i - padding)):
        first = max(first_output, -(-(padding - tap) // stride))
        last = min(end, (size - 1 + padding - tap) // stride)
        if first > last:
            continue
        start = first * stride - padding + tap
        source = _along(x, axis, slice(start, start + (last - first) * stride + 1, stride))
        if result is None:
            if first == first_output and last == end:
                result = source.copy()
                continue
            result = np.full(shape, identity, dtype=x.dtype)
        target = _along(result, axis, slice(first - first_output, last - first_output + 1))
        combine(target, source, out=target)
    assert result is not None
    return result


def _along(x: np.ndarray, axis: int, span: slice) -> np.ndarray:
    index = [slice(None)] * x.ndim
    index[axis] = span
    return x[tuple(index)]


def adaptive_avg_pool2d(x: np.ndarray, output_size: Sequence[int]) -> np.ndarray:
    """Adaptive average pooling of ``x`` (NHWC): cell ``i`` of ``out`` averages
    ``[floor(i * size / out), ceil((i + 1) * size / out))`` as in PyTorch."""
    n, h, w, c = x.shape
    oh, ow = output_size
    if oh == 1 and ow == 1:
        return x.mean(axis=(1, 2), keepdims=True, dtype=np.float32)
    result = np.empty((n, oh, ow, c), dtype=np.float32)
    for i in range(oh):
        top, bottom = (i * h) // oh, math.ceil((i + 1) * h / oh)
        for j in range(ow):
            left, right = (j * w) // ow, math.ceil((j + 1) * w / ow)
            result[:, i, j] = x[:, top:bottom, left:right].mean(axis=(1, 2))
    return result


def _pool_sizes(
    x: np.ndarray,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    ceil_mode: bool,
) -> list[int]:
    return [
        pool_output_size(size, k, s, p, ceil_mode)
        for size, k, s, p in zip(x.shape[1:3], kernel, stride, padding, strict=True)
    ]


def _window_counts(
    size: int, kernel: int, stride: int, padding: int, out: int, include_pad: bool
) -> np.ndarray:
    starts = np.arange(out) * stride - padding
    ends = np.minimum(starts + kernel, size + padding)
    if not include_pad:
        starts, ends = np.maximum(starts, 0), np.minimum(ends, size)
    return (ends - starts).astype(np.float32)
