"""Conversions of the function and method calls a traced ``forward`` makes (``x + y``,
``torch.cat``, ``x.mean((2, 3))``, ``F.pad``, ...) into runtime nodes. Each takes the
call's :class:`~bnn.deploy.context.NodeContext` and returns its output value."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx

from bnn.deploy import nn_lowerings as layers
from bnn.deploy.context import NodeContext, shape_of
from bnn_core.lowering import LoweringError

Conversion = Callable[[NodeContext], str]

SUPPORTED_FUNCTIONS = (
    "+, - and * / by a number, torch.add, torch.cat on channels, flatten, view/reshape to "
    "(N, -1), mean over height and width, relu, hardtanh, leaky_relu, max/avg/adaptive "
    "pooling, constant F.pad, slicing with x[:, :, ::s, ::s], softmax, dropout"
)


def _arithmetic(kind: str) -> Conversion:
    def convert(ctx: NodeContext) -> str:
        left, right = ctx.node.args[0], ctx.node.args[1]
        if ctx.node.kwargs.get("alpha", 1) != 1:
            raise LoweringError("torch.add with alpha is not supported")
        tensors = [a for a in (left, right) if isinstance(a, fx.Node)]
        numbers = [
            a for a in (left, right) if isinstance(a, int | float) and not isinstance(a, bool)
        ]
        if kind == "add" and len(tensors) == 2:
            if shape_of(left) != shape_of(right):
                raise LoweringError(
                    f"adding tensors of shapes {shape_of(left)} and {shape_of(right)} "
                    "(broadcasting) is not supported"
                )
            return ctx.add("add", [ctx.value(left), ctx.value(right)])
        if len(tensors) != 1 or len(numbers) != 1:
            raise LoweringError("only tensor + tensor and tensor with a number are supported")
        return ctx.add(
            "scalar", [ctx.value(tensors[0])], _scalar(kind, left is tensors[0], numbers)
        )

    return convert


def _scalar(kind: str, tensor_first: bool, numbers: list[Any]) -> dict[str, float]:
    """The ``scalar`` node's ``mul`` and ``add`` for ``tensor <kind> number`` (or the
    number first)."""
    number = float(numbers[0])
    if kind == "sub":
        return {"mul": 1.0, "add": -number} if tensor_first else {"mul": -1.0, "add": number}
    if kind == "add":
        return {"mul": 1.0, "add": number}
    if kind == "mul":
        return {"mul": number, "add": 0.0}
    if tensor_first:
        return {"mul": 1.0 / number, "add": 0.0}
    raise LoweringError("dividing a number by a tensor is not supported")


def _cat(ctx: NodeContext) -> str:
    parts = ctx.node.args[0]
    dim = ctx.argument(1, "dim", 0)
    rank = len(ctx.output_shape or [])
    if not isinstance(parts, list | tuple) or dim % max(rank, 1) != 1:
        raise LoweringError("torch.cat is supported along the channel axis (dim=1) only")
    return ctx.add("cat", [ctx.value(part) for part in parts])


def _reshape(ctx: NodeContext) -> str:
    sizes = ctx.node.args[1:]
    if len(sizes) == 1 and isinstance(sizes[0], list | tuple):
        sizes = tuple(sizes[0])
    shape = ctx.output_shape or []
    batch_first = len(sizes) == 2 and (sizes[0] in ctx.builder.sizes or sizes[0] == shape[0])
    if not (batch_first and len(shape) == 2 and sizes[1] in (-1, shape[1])):
        raise LoweringError("only reshaping to (N, -1) is supported")
    return layers.flatten(ctx, 1, -1)


def _mean(ctx: NodeContext) -> str:
    source = ctx.node.args[0]
    shape = shape_of(source) or []
    dims = ctx.argument(1, "dim", None)
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    if len(shape) != 4 or sorted(d % 4 for d in dims) != [2, 3]:
        raise LoweringError("mean is supported over the height and width of (N, C, H, W)")
    pooled = ctx.add(
        "adaptive_avg_pool2d",
        [ctx.value(source)],
        {"output_size": [1, 1]},
        shape=[shape[0], shape[1], 1, 1],
    )
    if ctx.argument(2, "keepdim", False):
        return pooled
    return ctx.add("flatten", [pooled], name=f"{ctx.name}.flatten")


def _getitem(ctx: NodeContext) -> str:
    index = ctx.node.args[1]
    index = index if isinstance(index, tuple) else (index,)
    source = ctx.node.args[0]
    shape = list(shape_of(source) or [])
    if Ellipsis in index or not all(isinstance(i, slice) for i in index):
        raise LoweringError("indexing is supported with slices only (x[:, :, ::2, ::2])")
    current = ctx.value(source)
    for axis, part in enumerate(index):
        if part == slice(None):
            continue
        if axis == 0 or axis >= len(shape):
            raise LoweringError("slicing the batch axis is not supported")
        start, stop, step = part.indices(shape[axis])
        if step < 1:
            raise LoweringError("negative slice steps are not supported")
        shape[axis] = len(range(start, stop, step))
        attrs = {"axis": axis, "start": start, "stop": stop, "step": step}
        current = ctx.add("slice", [current], attrs, shape=list(shape))
    return current


def _pad(ctx: NodeContext) -> str:
    pads = list(ctx.argument(1, "pad", []))
    mode = ctx.argument(2, "mode", "constant")
    value = ctx.argument(3, "value", None) or 0.0
    rank = len(ctx.output_shape or [])
    if mode != "constant" or len(pads) % 2 or len(pads) // 2 > rank - 1:
        raise LoweringError("F.pad is supported in constant mode, not on the batch axis")
    attrs = {"pads": [int(p) for p in pads], "value": float(value)}
    return ctx.add("pad", [ctx.first()], attrs)


def _max_pool(ctx: NodeContext) -> str:
    arg = ctx.argument
    return layers.max_pool(
        ctx,
        arg(1, "kernel_size", None),
        arg(2, "stride", None),
        arg(3, "padding", 0),
        arg(4, "dilation", 1),
        arg(5, "ceil_mode", False),
        arg(6, "return_indices", False),
    )


def _avg_pool(ctx: NodeContext) -> str:
    arg = ctx.argument
    return layers.avg_pool(
        ctx,
        arg(1, "kernel_size", None),
        arg(2, "stride", None),
        arg(3, "padding", 0),
        arg(4, "ceil_mode", False),
        arg(5, "count_include_pad", True),
        arg(6, "divisor_override", None),
    )


def _hardtanh(ctx: NodeContext) -> str:
    attrs = {
        "min_val": float(ctx.argument(1, "min_val", -1.0)),
        "max_val": float(ctx.argument(2, "max_val", 1.0)),
        "slope": 0.0,
    }
    return ctx.add("hardtanh", [ctx.first()], attrs)


def _leaky_relu(ctx: NodeContext) -> str:
    attrs = {"negative_slope": float(ctx.argument(1, "negative_slope", 0.01))}
    return ctx.add("leaky_relu", [ctx.first()], attrs)


def _flatten(ctx: NodeContext) -> str:
    return layers.flatten(ctx, ctx.argument(1, "start_dim", 0), ctx.argument(2, "end_dim", -1))


def _softmax(ctx: NodeContext) -> str:
    return layers.softmax(ctx, ctx.argument(1, "dim", None))


def _relu(ctx: NodeContext) -> str:
    return ctx.add("relu", [ctx.first()])


def _passthrough(ctx: NodeContext) -> str:
    return ctx.first()


#: The conversion of each supported function (by object) and method (by ``.name``).
CALLS: dict[Any, Conversion] = {
    operator.add: _arithmetic("add"),
    operator.iadd: _arithmetic("add"),
    torch.add: _arithmetic("add"),
    ".add": _arithmetic("add"),
    operator.sub: _arithmetic("sub"),
    operator.mul: _arithmetic("mul"),
    torch.mul: _arithmetic("mul"),
    ".mul": _arithmetic("mul"),
    operator.truediv: _arithmetic("div"),
    torch.cat: _cat,
    torch.flatten: _flatten,
    ".flatten": _flatten,
    ".view": _reshape,
    ".reshape": _reshape,
    torch.reshape: _reshape,
    ".mean": _mean,
    torch.mean: _mean,
    operator.getitem: _getitem,
    F.pad: _pad,
    F.relu: _relu,
    torch.relu: _relu,
    ".relu": _relu,
    F.hardtanh: _hardtanh,
    F.leaky_relu: _leaky_relu,
    F.max_pool2d: _max_pool,
    F.avg_pool2d: _avg_pool,
    F.adaptive_avg_pool2d: layers.adaptive_pool,
    F.softmax: _softmax,
    torch.softmax: _softmax,
    ".softmax": _softmax,
    F.dropout: _passthrough,
    ".contiguous": _passthrough,
}
