"""The arithmetic of ``qconv2d`` and ``qlinear`` in NumPy: the definition every int8
kernel reproduces bit for bit, and what runs where no compiled kernel does.

A node stores int8 weights ``w`` (per-output-channel symmetric, any int8 value), their
float scales ``weight_scale`` and its input's scale ``s`` and zero point ``z`` (an int
in [0, 127]). With ``inverse = float32(1 / s)`` and ``multiplier[o] =
float32(float32(s) * weight_scale[o])``, both computed once when the node is planned:

1. each input value ``x`` (float32) becomes ``q = rint(min(max(x * inverse, -z), 127
   - z)) + z`` (float32 product, rounding half to even, NaN giving ``-z``): 7-bit
   values in [0, 127], so the AVX2 ``vpmaddubsw`` can add two products ``q * w`` in
   int16 without saturating; padding is ``z``, the quantized 0;
2. ``acc[o] = sum((q - z) * w[o])`` in int32 (exact: at most
   :data:`~bnn_runtime.validate.MAX_INT8_DEPTH` products of at most 127 * 128);
3. ``y[o] = float32(acc[o]) * multiplier[o] + bias[o]``, rounded to float32 after the
   product and after the sum (never a fused multiply-add).

The products are summed here by a float64 matrix product, which is exact because every
partial sum is an integer below 2**53.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bnn_runtime.float_ops import pad_spatial, windows
from bnn_runtime.validate import INT8_INPUT_MAX, conv_output_size


def inverse_scale(scale: float) -> np.float32:
    """The float32 factor that maps an input value to quantization steps."""
    return np.float32(1.0 / float(np.float32(scale)))


def multipliers(scale: float, weight_scale: np.ndarray) -> np.ndarray:
    """Per output channel, the float32 factor from an int32 accumulator to the output."""
    return np.float32(scale) * np.asarray(weight_scale, dtype=np.float32)


def quantize(x: np.ndarray, inverse: np.float32, zero_point: int) -> np.ndarray:
    """``x`` (float32) as uint8 steps in [0, 127] (step 1 of the module's arithmetic)."""
    low, high = np.float32(-zero_point), np.float32(INT8_INPUT_MAX - zero_point)
    steps = np.fmin(np.fmax(np.asarray(x, dtype=np.float32) * inverse, low), high)
    return (np.rint(steps).astype(np.int16) + zero_point).astype(np.uint8)


def _finish(acc: np.ndarray, multiplier: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    y = acc.astype(np.float32) * multiplier
    if bias is not None:
        y += bias
    return y


def quantized_windows(
    x: np.ndarray,
    inverse: np.float32,
    zero_point: int,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> np.ndarray:
    """Every window ``[N, OH, OW, KH, KW, C]`` of ``x`` (float32 NHWC) quantized and
    padded with the zero point: a read-only view of one uint8 copy."""
    h, w = x.shape[1:3]
    out = [
        conv_output_size(size, k, s, pad, dil)
        for size, pad, dil, k, s in zip((h, w), padding, dilation, kernel, stride, strict=True)
    ]
    q = quantize(x, inverse, zero_point)
    padded = pad_spatial(q, padding[0], padding[0], padding[1], padding[1], zero_point)
    return windows(padded, kernel, stride, dilation, out)


def qconv2d(
    x: np.ndarray,
    weight: np.ndarray,
    multiplier: np.ndarray,
    bias: np.ndarray | None,
    inverse: np.float32,
    zero_point: int,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> np.ndarray:
    """A quantized convolution of ``x`` (float32 NHWC) with int8 ``weight``
    ``[O, C/g, KH, KW]``: the float32 NHWC output."""
    out_channels, per_group = weight.shape[:2]
    view = quantized_windows(x, inverse, zero_point, kernel, stride, padding, dilation)
    n, oh, ow = view.shape[:3]
    positions = n * oh * ow
    per_out = out_channels // groups
    acc = np.empty((positions, out_channels), dtype=np.int32)
    for g in range(groups):
        rows = view[..., g * per_group : (g + 1) * per_group].reshape(positions, -1)
        taps = weight[g * per_out : (g + 1) * per_out].transpose(2, 3, 1, 0)
        matrix = taps.reshape(-1, per_out).astype(np.float64)
        sums = (rows.astype(np.float64) - zero_point) @ matrix
        acc[:, g * per_out : (g + 1) * per_out] = sums.astype(np.int32)
    y = _finish(acc, multiplier, bias)
    return y.reshape(n, oh, ow, out_channels)


def qlinear(
    x: np.ndarray,
    weight: np.ndarray,
    multiplier: np.ndarray,
    bias: np.ndarray | None,
    inverse: np.float32,
    zero_point: int,
) -> np.ndarray:
    """A quantized linear layer of ``x`` (float32 ``[N, F]``) with int8 ``weight``
    ``[O, F]``: the float32 ``[N, O]`` output."""
    q = quantize(x, inverse, zero_point).astype(np.float64) - zero_point
    acc = (q @ weight.T.astype(np.float64)).astype(np.int32)
    return _finish(acc, multiplier, bias)
