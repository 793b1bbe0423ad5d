"""The planners of ``qconv2d`` and ``qlinear``: the scales a node stores turned once into
the factors of :mod:`bnn_runtime.int8_reference`, and a step computing the node with
them. With the compiled library (any path but ``numpy``), ``bnn_qconv2d`` quantizes an
ungrouped convolution's float input and computes the convolution and its requantization
in C, and ``bnn_qgemm`` the product of a linear layer's input quantized in NumPy; grouped
convolutions run the NumPy reference."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bnn_runtime import _library, float_ops, int8_reference
from bnn_runtime.steps import Floats, Step
from bnn_runtime.validate import conv_output_size

Int8Planner = Callable[[dict[str, Any], np.ndarray, Floats, int], Step]


def _factors(attrs: dict[str, Any], floats: Floats) -> tuple[np.float32, np.ndarray]:
    scale = attrs["input_scale"]
    weight_scale = floats("weight_scale")
    if weight_scale is None:
        raise KeyError("weight_scale")
    return int8_reference.inverse_scale(scale), int8_reference.multipliers(scale, weight_scale)


class Packed:
    """An int8 weight ``[O, K]`` as ``bnn_qgemm`` reads it: per panel width (that of the
    kernel path in force, packed when first needed) the panels
    ``[ceil(O / width)][ceil(K / 4)][width][4]``, and each channel's sum of weights."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = np.ascontiguousarray(rows, dtype=np.int8)
        self.sums = self.rows.sum(axis=1, dtype=np.int32)
        self._panels: dict[int, np.ndarray] = {}

    def panels(self, width: int) -> np.ndarray:
        """The weights as panels of ``width`` output channels."""
        if width not in self._panels:
            o, k = self.rows.shape
            groups, count = -(-k // 4), -(-o // width)
            padded = np.zeros((count * width, groups * 4), dtype=np.int8)
            padded[:o, :k] = self.rows
            panels = padded.reshape(count, width, groups, 4).transpose(0, 2, 1, 3)
            self._panels[width] = np.ascontiguousarray(panels)
        return self._panels[width]


def qgemm(
    a: np.ndarray,
    weight: Packed,
    zero_point: int,
    multiplier: np.ndarray,
    bias: np.ndarray | None,
    threads: int,
) -> np.ndarray | None:
    """``bnn_qgemm`` of the 7-bit rows ``a`` ``[M, K]`` (uint8) and ``weight`` on the
    kernel path in force: the float32 ``[M, O]`` output, or None without the compiled
    library (or with the NumPy path forced)."""
    compiled = float_ops.native()
    if compiled is None:
        return None
    lib, isa = compiled
    width = lib.bnn_qgemm_width(isa)
    _library.check(min(width, 0), "choosing the int8 kernel")
    a = np.ascontiguousarray(a, dtype=np.uint8)
    (m, k), o = a.shape, weight.rows.shape[0]
    y = np.empty((m, o), dtype=np.float32)
    status = lib.bnn_qgemm(
        a.ctypes.data,
        m,
        k,
        weight.panels(width).ctypes.data,
        o,
        weight.sums.ctypes.data,
        zero_point,
        multiplier.ctypes.data,
        None if bias is None else bias.ctypes.data,
        y.ctypes.data,
        isa,
        threads,
    )
    _library.check(status, "int8 matrix product")
    return y


def qconv(
    x: np.ndarray,
    weight: Packed,
    inverse: np.float32,
    zero_point: int,
    multiplier: np.ndarray,
    bias: np.ndarray | None,
    geometry: tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]],
    threads: int,
) -> np.ndarray | None:
    """``bnn_qconv2d`` of ``x`` (float32 NHWC) with ``weight`` (rows ``[O, KH * KW * C]``)
    on the kernel path in force: the float32 NHWC output, or None without the compiled
    library, with the NumPy path forced or for an input smaller than the kernel."""
    compiled = float_ops.native()
    kernel, stride, padding, dilation = geometry
    (n, h, w, c), o = x.shape, weight.rows.shape[0]
    out = [
        conv_output_size(size, k, s, pad, dil)
        for size, pad, dil, k, s in zip((h, w), padding, dilation, kernel, stride, strict=True)
    ]
    if compiled is None or min(out) < 1:
        return None
    lib, isa = compiled
    width = lib.bnn_qgemm_width(isa)
    _library.check(min(width, 0), "choosing the int8 kernel")
    x = np.ascontiguousarray(x, dtype=np.float32)
    window = _library.Window(
        n=n, h=h, w=w, c=c, oh=out[0], ow=out[1], kh=kernel[0], kw=kernel[1],
        stride_h=stride[0], stride_w=stride[1], pad_h=padding[0], pad_w=padding[1],
        dilation_h=dilation[0], dilation_w=dilation[1],
    )  # fmt: skip
    y = np.empty((n, out[0], out[1], o), dtype=np.float32)
    status = lib.bnn_qconv2d(
        ctypes.byref(window), x.ctypes.data, float(inverse), zero_point,
        weight.panels(width).ctypes.data, o, weight.sums.ctypes.data, multiplier.ctypes.data,
        None if bias is None else bias.ctypes.data, y.ctypes.data, isa, threads,
    )  # fmt: skip
    _library.check(status, "int8 conv2d")
    return y


def qconv2d(attrs: dict[str, Any], weight: np.ndarray, floats: Floats, threads: int) -> Step:
    inverse, multiplier = _factors(attrs, floats)
    bias = floats("bias")
    geometry = (attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["dilation"])
    zero_point = attrs["input_zero_point"]
    groups = attrs["groups"]
    rows = Packed(weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1))

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        x = inputs[0]
        if groups == 1:
            y = qconv(x, rows, inverse, zero_point, multiplier, bias, geometry, threads)
            if y is not None:
                return y
        return int8_reference.qconv2d(
            x, weight, multiplier, bias, inverse, zero_point, *geometry, groups
        )

    return step


def qlinear(attrs: dict[str, Any], weight: np.ndarray, floats: Floats, threads: int) -> Step:
    inverse, multiplier = _factors(attrs, floats)
    bias = floats("bias")
    zero_point = attrs["input_zero_point"]
    matrix = Packed(weight)

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        q = int8_reference.quantize(inputs[0], inverse, zero_point)
        y = qgemm(q, matrix, zero_point, multiplier, bias, threads)
        if y is not None:
            return y
        return int8_reference.qlinear(inputs[0], weight, multiplier, bias, inverse, zero_point)

    return step


#: The planner of every int8 operation: it also takes the node's int8 weight.
PLANNERS: dict[str, Int8Planner] = {"qconv2d": qconv2d, "qlinear": qlinear}
