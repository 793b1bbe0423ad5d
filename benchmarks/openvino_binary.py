"""OpenVINO's own XNOR-popcount convolution (opset1 ``BinaryConvolution`` on the CPU plugin),
built to compute exactly what the packed runtime's binary convolution computes, as a
baseline for the benchmarks.

The model takes float NCHW activations, binarizes them with a two-level ``FakeQuantize``
whose outputs are {0, 1} (the CPU plugin turns it into its binarization step and feeds
bits to its binary kernel), convolves them with a ``u1`` weight constant in mode
``xnor-popcount`` with ``pad_value`` 0 (taps in the padding contribute 0, as in the
runtime), and applies the per-channel scale and bias (the plugin fuses both into the
convolution).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import openvino as ov
    import openvino.opset1 as ops
except ImportError:  # the baseline is optional: callers print a note instead
    ov = None

#: ``FakeQuantize`` sends ``x <= threshold`` to 0 (-1) and ``x > threshold`` to 1 (+1).
#: The negative float32 closest to zero makes that the runtime's ``x >= 0`` gives +1:
#: 0 and -0.0 go to +1, every negative number (subnormals included) to -1.
SIGN_THRESHOLD = np.float32(-np.finfo(np.float32).smallest_subnormal)


def available() -> bool:
    """Whether the openvino package can be imported."""
    return ov is not None


def u1_weights(weights: np.ndarray) -> Any:
    """An ``openvino.Tensor`` of type u1 holding the signs of float OIHW ``weights``
    (``w >= 0`` is 1, i.e. +1). The bits follow the OIHW element order, element ``8k + i``
    in bit ``i`` (least significant first) of byte ``k``: the order the CPU plugin reads.
    (The ``Constant`` constructor that takes one value per element packs the most
    significant bit first, which the plugin would read reversed within each byte.)"""
    tensor = ov.Tensor(ov.Type.u1, ov.Shape(list(weights.shape)))
    tensor.data[:] = np.packbits((weights >= 0).ravel(), bitorder="little")
    return tensor


def binary_conv_model(
    weights: np.ndarray, scale: np.ndarray, bias: np.ndarray, size: int, padding: int = 1
) -> Any:
    """An ``openvino.Model`` of one binary convolution at batch 1 and stride 1: float input
    [1, C, size, size], output ``scale[o] * dot + bias[o]`` in NCHW, where ``dot`` is the
    sum over taps of sign(x) * sign(w) with the runtime's sign convention."""
    out_channels, in_channels = weights.shape[:2]
    x = ops.parameter([1, in_channels, size, size], np.float32, name="x")
    zero, one = np.float32(0), np.float32(1)
    bits = ops.fake_quantize(x, SIGN_THRESHOLD, SIGN_THRESHOLD, zero, one, 2)
    conv = ops.binary_convolution(
        bits,
        ov.op.Constant(u1_weights(weights)),
        strides=[1, 1],
        pads_begin=[padding, padding],
        pads_end=[padding, padding],
        dilations=[1, 1],
        mode="xnor-popcount",
        pad_value=0.0,
    )
    per_channel = (1, out_channels, 1, 1)
    scaled = ops.multiply(conv, np.asarray(scale, np.float32).reshape(per_channel))
    y = ops.add(scaled, np.asarray(bias, np.float32).reshape(per_channel))
    return ov.Model([y], [x], "binary_conv")


def compile_cpu(model: Any, threads: int) -> Any:
    """Compile ``model`` for the CPU plugin with ``threads`` inference threads and the
    latency hint (what a batch-1 deployment asks for)."""
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    return ov.Core().compile_model(model, "CPU", config)


def binary_primitive(compiled: Any) -> str:
    """The CPU plugin's implementation of the ``BinaryConvolution`` node in ``compiled``
    (e.g. ``jit_avx512_u1``, its binary kernel), or ``"none"`` when the node was
    replaced by something else."""
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "BinaryConvolution":
            return info["primitiveType"].astype(str)
    return "none"


def version() -> str | None:
    """The installed openvino version, or None when it is missing."""
    return None if ov is None else ov.get_version().split("-")[0]


def infer_call(compiled: Any, x: np.ndarray) -> Callable[[], object]:
    """A call that runs ``compiled`` on ``x`` once, the way a deployment does it: one infer
    request made beforehand, the input shared with it and the output not copied out."""
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(x, shared_memory=True))
    return lambda: request.infer(share_outputs=True)
