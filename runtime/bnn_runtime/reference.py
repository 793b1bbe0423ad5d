"""NumPy reference implementation of the binary kernels.

Same functions and semantics as the compiled kernels in :mod:`bnn_runtime.kernels`,
written for clarity: signs are unpacked to +-1, the convolution is an exact float64
matrix product over im2col patches (integer sums far below 2**53), and the output
transform uses the same float32 operations in the same order as the C code
(``scale * dot``, then ``+ bias``, then ``+ next_threshold``), so results are
bit-identical. Used by the tests and as the fallback when the library is not built.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64


def words(channels: int) -> int:
    """Number of 64-bit words holding ``channels`` bits."""
    return -(-channels // WORD_BITS)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean array along its last axis: bit i of word k = element 64k+i."""
    bits = np.asarray(bits, dtype=bool)
    c = bits.shape[-1]
    padded = np.zeros((*bits.shape[:-1], words(c) * WORD_BITS), dtype=bool)
    padded[..., :c] = bits
    packed = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)


def unpack_signs(packed: np.ndarray, channels: int) -> np.ndarray:
    """+-1 float32 values [..., channels] of packed words [..., ceil(channels/64)]."""
    packed = np.ascontiguousarray(packed, dtype=np.uint64)
    as_bytes = packed.astype("<u8").view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :channels]
    return np.where(bits.astype(bool), np.float32(1), np.float32(-1))


def signs(x: np.ndarray, threshold: np.ndarray | None) -> np.ndarray:
    """+1 where ``x + threshold >= 0`` (float32 addition), else -1."""
    x = np.asarray(x, dtype=np.float32)
    v = x + np.asarray(threshold, dtype=np.float32) if threshold is not None else x
    return np.where(v >= 0, np.float32(1), np.float32(-1))


def pack_activations(x: np.ndarray, threshold: np.ndarray | None = None) -> np.ndarray:
    """Reference of :func:`bnn_runtime.kernels.pack_activations`."""
    return pack_bits(signs(x, threshold) > 0)


def conv2d_dot(
    x_sign: np.ndarray,
    w_sign: np.ndarray,
    stride: tuple[int, int],
    padding: tuple[int, int],
    pad_value: int,
    groups: int,
) -> np.ndarray:
    """Integer dot products of a binary convolution.

    ``x_sign``: +-1 NHWC; ``w_sign``: +-1 [O, C/groups, KH, KW] (torch's layout); the
    input is padded with ``pad_value`` (0, 1 or -1). Returns float64 [N, Ho, Wo, O]
    holding exact integers.
    """
    n, h, w, c = x_sign.shape
    o, cpg, kh, kw = w_sign.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.full((n, h + 2 * ph, w + 2 * pw, c), pad_value, dtype=np.float64)
    xp[:, ph : ph + h, pw : pw + w, :] = x_sign
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
    win = win[:, ::sh, ::sw]  # [N, Ho, Wo, C, KH, KW]
    ho, wo = win.shape[1:3]
    opg = o // groups
    out = np.empty((n, ho, wo, o), dtype=np.float64)
    for g in range(groups):
        cols = win[..., g * cpg : (g + 1) * cpg, :, :].reshape(n * ho * wo, cpg * kh * kw)
        wg = w_sign[g * opg : (g + 1) * opg].reshape(opg, cpg * kh * kw).astype(np.float64)
        out[..., g * opg : (g + 1) * opg] = (cols @ wg.T).reshape(n, ho, wo, opg)
    return out


def output_transform(
    dot: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    output: str,
    next_threshold: np.ndarray | None,
) -> np.ndarray:
    """``scale * dot + bias`` as float32, or its packed signs (``+ next_threshold``)."""
    with np.errstate(invalid="ignore", over="ignore"):  # IEEE results, as in C
        y = scale.astype(np.float32) * dot.astype(np.float32)
        y = y + bias.astype(np.float32)
        if output == "float":
            return y
        return pack_activations(y, next_threshold)


def binary_conv2d(
    x: np.ndarray,
    weights_packed: np.ndarray,
    *,
    in_channels: int,
    stride: tuple[int, int],
    padding: tuple[int, int],
    pad_value: int,
    groups: int,
    scale: np.ndarray,
    bias: np.ndarray,
    input_threshold: np.ndarray | None,
    output: str,
    next_threshold: np.ndarray | None,
) -> np.ndarray:
    """Reference of :func:`bnn_runtime.kernels.binary_conv2d` (arguments already
    validated and normalised by it)."""
    packed = x.dtype == np.uint64
    x_sign = unpack_signs(x, in_channels) if packed else signs(x, input_threshold)
    cpg = in_channels // groups
    w_sign = unpack_signs(weights_packed, cpg).transpose(0, 3, 1, 2)
    dot = conv2d_dot(x_sign, w_sign, stride, padding, pad_value, groups)
    return output_transform(dot, scale, bias, output, next_threshold)


def finish(
    y: np.ndarray,
    residual: np.ndarray | None,
    slope: np.ndarray | None,
    shift_in: np.ndarray | None,
    shift_out: np.ndarray | None,
) -> np.ndarray:
    """Reference of a layer's fused float epilogue: ``y + residual``, then
    ``prelu(v + shift_in) + shift_out`` per channel, each step rounded in float32."""
    if residual is not None:
        y = y + residual
    if slope is not None:
        if shift_in is not None:
            y = y + shift_in
        y = np.where(y > 0, y, slope * y)
        if shift_out is not None:
            y = y + shift_out
    return y
