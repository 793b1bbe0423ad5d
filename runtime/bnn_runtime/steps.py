"""The float operations of a network, each planned once into a step.

A planner takes a node's attributes, a getter for its float32 tensors and the thread
count, and returns a step: a function of the node's input arrays (channels last) and
of ``reuse``, which is true when the executor no longer needs the first input, so an
element-wise step may overwrite it instead of allocating its result. No step returns a
view of one of its inputs, so overwriting a value never changes another one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from bnn_runtime import _library, float_ops
from bnn_runtime.errors import RuntimeInputError

Floats = Callable[[str], "np.ndarray | None"]
#: NCHW axis -> NHWC axis, for slicing and padding 4-D values.
NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


class Step(Protocol):
    """One planned node: its output for ``inputs`` (``reuse``: the first may be
    overwritten)."""

    def __call__(self, inputs: list[np.ndarray], reuse: bool) -> np.ndarray: ...


Planner = Callable[[dict[str, Any], Floats, int], Step]


def _required(floats: Floats, role: str) -> np.ndarray:
    value = floats(role)
    if value is None:
        raise KeyError(role)
    return value


def _target(inputs: list[np.ndarray], reuse: bool) -> np.ndarray | None:
    return inputs[0] if reuse else None


def conv2d(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    matrix = float_ops.conv_weight_matrix(_required(floats, "weight"), attrs["groups"])
    panels = float_ops.column_panels(matrix[0]) if attrs["groups"] == 1 else None
    bias = floats("bias")
    geometry = (attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["dilation"])
    return lambda inputs, reuse: float_ops.conv2d(
        inputs[0], matrix, bias, *geometry, threads, panels
    )


def linear(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    matrix = np.ascontiguousarray(_required(floats, "weight").T)
    bias = floats("bias")

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        y = inputs[0] @ matrix
        if bias is not None:
            y += bias
        return y

    return step


def channel_affine(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    scale, shift = floats("scale"), floats("shift")

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        if scale is not None:
            y = np.multiply(inputs[0], scale, out=_target(inputs, reuse))
        else:
            y = inputs[0] if reuse else inputs[0].copy()
        if shift is not None:
            y += shift
        return y

    return step


def spatial_scale(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    rows, cols = _required(floats, "rows"), _required(floats, "cols")

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        height, width = inputs[0].shape[1:3]
        if height > rows.size or width > cols.size:
            raise RuntimeInputError(
                f"the output is {height}x{width}, larger than the {rows.size}x{cols.size} "
                "factors of its factorised scale"
            )
        factors = np.outer(rows[:height], cols[:width])[:, :, None]
        return np.multiply(inputs[0], factors, out=_target(inputs, reuse))

    return step


def _leaky(slope: np.ndarray) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    """PReLU as PyTorch computes it, ``x > 0 ? x : slope * x`` per channel, into ``out``
    (which may be ``x``): as ``max(x, slope * x)`` (two passes, the same values) when
    every slope is in [0, 1], else by a selection."""
    if bool(np.all((slope >= 0) & (slope <= 1))):

        def bounded(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
            scaled = x * slope
            return np.maximum(x, scaled, out=scaled if out is None else out)

        return bounded

    def general(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        y = np.where(x > 0, x, x * slope)
        if out is None:
            return y
        np.copyto(out, y)
        return out

    return general


def _native_prelu(
    x: np.ndarray,
    out: np.ndarray | None,
    shift_in: np.ndarray | None,
    slope: np.ndarray,
    shift_out: np.ndarray | None,
    threads: int,
) -> np.ndarray | None:
    """``prelu(x + shift_in) + shift_out`` in one pass of the compiled library
    (``bnn_prelu``), into ``out`` when given; None where :func:`float_ops.native` is."""
    compiled = float_ops.native()
    if compiled is None or x.dtype != np.float32 or not x.flags.c_contiguous or x.ndim < 2:
        return None
    lib = compiled[0]
    channels = x.shape[-1]
    per_channel = [
        None if v is None else np.ascontiguousarray(np.broadcast_to(v, (channels,)))
        for v in (shift_in, slope, shift_out)
    ]
    y = np.empty_like(x) if out is None else out
    status = lib.bnn_prelu(
        x.ctypes.data,
        x.size // channels,
        channels,
        *(None if v is None else v.ctypes.data for v in per_channel),
        y.ctypes.data,
        threads,
    )
    _library.check(status, "prelu")
    return y


def prelu(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    slope = _required(floats, "slope")
    leaky = _leaky(slope)

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        out = _target(inputs, reuse)
        native = _native_prelu(inputs[0], out, None, slope, None, threads)
        return leaky(inputs[0], out) if native is None else native

    return step


def rprelu(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    shift_in, shift_out = _required(floats, "shift_in"), _required(floats, "shift_out")
    slope = _required(floats, "slope")
    leaky = _leaky(slope)

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        out = _target(inputs, reuse)
        native = _native_prelu(inputs[0], out, shift_in, slope, shift_out, threads)
        if native is not None:
            return native
        shifted = np.add(inputs[0], shift_in, out=out)
        y = leaky(shifted, shifted)
        y += shift_out
        return y

    return step


def relu(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    return lambda inputs, reuse: np.maximum(inputs[0], 0, out=_target(inputs, reuse))


def leaky_relu(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    leaky = _leaky(np.float32(attrs["negative_slope"]))
    return lambda inputs, reuse: leaky(inputs[0], _target(inputs, reuse))


def hardtanh(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    low, high, slope = float(attrs["min_val"]), float(attrs["max_val"]), float(attrs["slope"])

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        if not slope:
            return np.clip(inputs[0], low, high, out=_target(inputs, reuse))
        clipped = np.clip(inputs[0], low, high)
        clipped += np.float32(slope) * (inputs[0] - clipped)
        return clipped

    return step


def scalar(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    mul, add = np.float32(attrs["mul"]), np.float32(attrs["add"])

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        y = np.multiply(inputs[0], mul, out=_target(inputs, reuse))
        y += add
        return y

    return step


def softmax(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        shifted = np.exp(inputs[0] - inputs[0].max(axis=-1, keepdims=True))
        shifted /= shifted.sum(axis=-1, keepdims=True)
        return shifted

    return step


def add(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    return lambda inputs, reuse: np.add(inputs[0], inputs[1], out=_target(inputs, reuse))


def cat(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    return lambda inputs, reuse: np.concatenate(inputs, axis=-1)


def max_pool2d(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    geometry = (attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["ceil_mode"])
    return lambda inputs, reuse: float_ops.max_pool2d(inputs[0], *geometry, threads)


def avg_pool2d(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    geometry = (
        attrs["kernel_size"],
        attrs["stride"],
        attrs["padding"],
        attrs["ceil_mode"],
        attrs["count_include_pad"],
        attrs["divisor"],
    )
    return lambda inputs, reuse: float_ops.avg_pool2d(inputs[0], *geometry, threads)


def adaptive_avg_pool2d(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    size = attrs["output_size"]
    return lambda inputs, reuse: float_ops.adaptive_avg_pool2d(inputs[0], size)


def _owned(result: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``result``, copied if it shares memory with ``source``."""
    return result.copy() if np.shares_memory(result, source) else result


def flatten(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        x = inputs[0]
        ordered = x.transpose(0, 3, 1, 2) if x.ndim == 4 and x.shape[1] * x.shape[2] > 1 else x
        return _owned(np.ascontiguousarray(ordered).reshape(x.shape[0], -1), x)

    return step


def slice_(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    axis_nchw = attrs["axis"]
    span = slice(attrs["start"], attrs["stop"], attrs["step"])

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        x = inputs[0]
        index = [slice(None)] * x.ndim
        index[NHWC_AXIS[axis_nchw] if x.ndim == 4 else axis_nchw] = span
        return _owned(np.ascontiguousarray(x[tuple(index)]), x)

    return step


def pad(attrs: dict[str, Any], floats: Floats, threads: int) -> Step:
    pads: Sequence[int] = attrs["pads"]
    value = float(attrs["value"])

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        x = inputs[0]
        widths = [(0, 0)] * x.ndim
        for index in range(len(pads) // 2):
            axis_nchw = x.ndim - 1 - index
            axis = NHWC_AXIS[axis_nchw] if x.ndim == 4 else axis_nchw
            widths[axis] = (pads[2 * index], pads[2 * index + 1])
        return np.pad(x, widths, constant_values=value)

    return step


#: The planner of every float operation (binary ones are planned by the executor).
PLANNERS: dict[str, Planner] = {
    "conv2d": conv2d,
    "linear": linear,
    "channel_affine": channel_affine,
    "spatial_scale": spatial_scale,
    "prelu": prelu,
    "rprelu": rprelu,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "hardtanh": hardtanh,
    "scalar": scalar,
    "softmax": softmax,
    "max_pool2d": max_pool2d,
    "avg_pool2d": avg_pool2d,
    "adaptive_avg_pool2d": adaptive_avg_pool2d,
    "add": add,
    "cat": cat,
    "flatten": flatten,
    "slice": slice_,
    "pad": pad,
}
