"""Module lowerings of PyTorch's own layers and of bnn_core's binary layers, registered
by :mod:`bnn.deploy_plugin` like any plugin's. The pooling, flatten and softmax
helpers also serve the exporter's conversions of the matching function calls."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from bnn_core.lowering import LoweringContext, LoweringError, to_array


def identity(ctx: LoweringContext, module: nn.Module) -> str:
    """Identity and dropout (a no-op in eval mode): the output is the input."""
    return ctx.inputs[0]


def binary_layer(ctx: LoweringContext, module: nn.Module) -> str:
    """A binary convolution or linear layer: one packed binary node."""
    return ctx.binary(module)


def conv2d(ctx: LoweringContext, module: nn.Conv2d) -> str:
    """A float 2-D convolution with zero, symmetric padding."""
    if module.padding_mode != "zeros":
        raise LoweringError(
            f"padding_mode {module.padding_mode!r} is not supported (zero padding only)"
        )
    left, right, top, bottom = module._reversed_padding_repeated_twice
    if left != right or top != bottom:
        raise LoweringError("asymmetric padding is not supported")
    tensors = {"weight": to_array(module.weight)}
    if module.bias is not None:
        tensors["bias"] = to_array(module.bias)
    attrs = {
        "in_channels": module.in_channels,
        "out_channels": module.out_channels,
        "kernel_size": list(module.kernel_size),
        "stride": list(module.stride),
        "padding": [int(top), int(left)],
        "dilation": list(module.dilation),
        "groups": module.groups,
    }
    return ctx.add("conv2d", ctx.inputs[:1], attrs, tensors)


def linear(ctx: LoweringContext, module: nn.Linear) -> str:
    """A float linear layer on ``(N, features)``."""
    if len(ctx.output_shape or []) != 2:
        raise LoweringError("the runtime runs it on (N, features) only")
    tensors = {"weight": to_array(module.weight)}
    if module.bias is not None:
        tensors["bias"] = to_array(module.bias)
    attrs = {"in_features": module.in_features, "out_features": module.out_features}
    return ctx.add("linear", ctx.inputs[:1], attrs, tensors)


def batch_norm(ctx: LoweringContext, module: nn.modules.batchnorm._BatchNorm) -> str:
    """A batch norm with running statistics: a per-channel affine map."""
    if module.running_mean is None or module.running_var is None:
        raise LoweringError(
            "it has no running statistics (track_running_stats=False), so it normalises "
            "with each batch's own statistics; the packed runtime needs fixed statistics "
            "to fold"
        )
    rank = len(ctx.output_shape or [])
    if rank not in (2, 4):
        raise LoweringError(f"batch norm on rank-{rank} values is not supported")
    inverse = 1.0 / np.sqrt(to_array(module.running_var) + module.eps)
    weight = to_array(module.weight) if module.weight is not None else 1.0
    bias = to_array(module.bias) if module.bias is not None else 0.0
    scale = weight * inverse
    shift = bias - to_array(module.running_mean) * scale
    return ctx.add("channel_affine", ctx.inputs[:1], tensors={"scale": scale, "shift": shift})


def prelu(ctx: LoweringContext, module: nn.PReLU) -> str:
    """PReLU with one slope or one per channel."""
    tensors = {"slope": to_array(module.weight).reshape(-1)}
    return ctx.add("prelu", ctx.inputs[:1], tensors=tensors)


def relu(ctx: LoweringContext, module: nn.Module) -> str:
    """ReLU."""
    return ctx.add("relu", ctx.inputs[:1])


def leaky_relu(ctx: LoweringContext, module: nn.LeakyReLU) -> str:
    """Leaky ReLU."""
    return ctx.add("leaky_relu", ctx.inputs[:1], {"negative_slope": float(module.negative_slope)})


def hardtanh(ctx: LoweringContext, module: nn.Hardtanh) -> str:
    """Hard tanh (and ReLU6) onto ``[min_val, max_val]``."""
    attrs = {"min_val": float(module.min_val), "max_val": float(module.max_val), "slope": 0.0}
    return ctx.add("hardtanh", ctx.inputs[:1], attrs)


def max_pool2d(ctx: LoweringContext, module: nn.MaxPool2d) -> str:
    """2-D max pooling."""
    return max_pool(
        ctx,
        module.kernel_size,
        module.stride,
        module.padding,
        module.dilation,
        module.ceil_mode,
        module.return_indices,
    )


def avg_pool2d(ctx: LoweringContext, module: nn.AvgPool2d) -> str:
    """2-D average pooling."""
    return avg_pool(
        ctx,
        module.kernel_size,
        module.stride,
        module.padding,
        module.ceil_mode,
        module.count_include_pad,
        module.divisor_override,
    )


def adaptive_avg_pool2d(ctx: LoweringContext, module: nn.Module) -> str:
    """2-D adaptive average pooling."""
    return adaptive_pool(ctx)


def flatten_module(ctx: LoweringContext, module: nn.Flatten) -> str:
    """Flatten of everything but the batch axis."""
    return flatten(ctx, module.start_dim, module.end_dim)


def softmax_module(ctx: LoweringContext, module: nn.Softmax) -> str:
    """Softmax over the features of ``(N, features)``."""
    return softmax(ctx, module.dim)


def max_pool(
    ctx: LoweringContext,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    return_indices: bool,
) -> str:
    """A ``max_pool2d`` node from PyTorch's pooling arguments."""
    if pair(dilation) != [1, 1] or return_indices:
        raise LoweringError("max pooling with dilation or returned indices is not supported")
    attrs = {
        "kernel_size": pair(kernel),
        "stride": pair(stride if stride else kernel),
        "padding": pair(padding),
        "ceil_mode": bool(ceil_mode),
    }
    return ctx.add("max_pool2d", ctx.inputs[:1], attrs)


def avg_pool(
    ctx: LoweringContext,
    kernel: Any,
    stride: Any,
    padding: Any,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor: int | None,
) -> str:
    """An ``avg_pool2d`` node from PyTorch's pooling arguments."""
    attrs = {
        "kernel_size": pair(kernel),
        "stride": pair(stride if stride else kernel),
        "padding": pair(padding),
        "ceil_mode": bool(ceil_mode),
        "count_include_pad": bool(count_include_pad),
        "divisor": int(divisor) if divisor else None,
    }
    return ctx.add("avg_pool2d", ctx.inputs[:1], attrs)


def adaptive_pool(ctx: LoweringContext) -> str:
    """An ``adaptive_avg_pool2d`` node to the output's spatial size."""
    shape = ctx.output_shape
    if shape is None or len(shape) != 4:
        raise LoweringError("adaptive average pooling runs on (N, C, H, W) only")
    return ctx.add("adaptive_avg_pool2d", ctx.inputs[:1], {"output_size": shape[2:]})


def flatten(ctx: LoweringContext, start: int, end: int) -> str:
    """A ``flatten`` node (none for a value already ``(N, features)``)."""
    rank = len(ctx.input_shapes[0] or []) if ctx.input_shapes else 0
    if start != 1 or end not in (-1, rank - 1):
        raise LoweringError(
            f"flatten from dimension {start} to {end} is not supported (only everything but "
            "the batch axis)"
        )
    if rank == 2:
        return ctx.inputs[0]
    return ctx.add("flatten", ctx.inputs[:1])


def softmax(ctx: LoweringContext, dim: Any) -> str:
    """A ``softmax`` node over the features of ``(N, features)``."""
    if len(ctx.output_shape or []) != 2 or dim not in (1, -1):
        raise LoweringError("softmax is supported over the features of (N, features)")
    return ctx.add("softmax", ctx.inputs[:1])


def pair(value: Any) -> list[int]:
    """An int or a sequence of one or two ints as ``[h, w]``."""
    if isinstance(value, int):
        return [value, value]
    values = [int(v) for v in value]
    return values * 2 if len(values) == 1 else values
