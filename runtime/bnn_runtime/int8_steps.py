"""The planners of ``qconv2d`` and ``qlinear``: the scales a node stores turned once into
the factors of :mod:`bnn_runtime.int8_reference`, and a step computing the node with
them. With the compiled library (any path but ``numpy``), the input is quantized and an
ungrouped convolution's im2col rows gathered in NumPy, and ``bnn_qgemm`` computes the
int8 product and its requantization; grouped convolutions run the NumPy reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bnn_runtime import _library, float_ops, int8_reference
from bnn_runtime.steps import Floats, Step

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


def qconv2d(attrs: dict[str, Any], weight: np.ndarray, floats: Floats, threads: int) -> Step:
    inverse, multiplier = _factors(attrs, floats)
    bias = floats("bias")
    geometry = (
        attrs["kernel_size"],
        attrs["stride"],
        attrs["padding"],
        attrs["dilation"],
        attrs["groups"],
    )
    zero_point = attrs["input_zero_point"]
    groups = attrs["groups"]
    rows = Packed(weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1))

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        x = inputs[0]
        if groups == 1 and float_ops.native() is not None:
            view = int8_reference.quantized_windows(x, inverse, zero_point, *geometry[:4])
            a = view.reshape(-1, rows.rows.shape[1])
            y = qgemm(a, rows, zero_point, multiplier, bias, threads)
            if y is not None:
                return y.reshape(*view.shape[:3], -1)
        return int8_reference.qconv2d(x, weight, multiplier, bias, inverse, zero_point, *geometry)

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
