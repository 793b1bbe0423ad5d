"""The complete check of a ``.bnnpack`` graph before anything is planned: every
attribute's type and range, every tensor's dtype and exact shape, every node's input
and output shape by shape inference from the declared input, and the limits below.

A file is untrusted: its checksum only proves that nobody damaged it by accident. What
reaches NumPy and the C kernels must therefore be exactly what the exporter writes, or
the reader refuses the file with a :class:`RuntimeFormatError` naming the file, the node
(name and operation) and the field. Every size is computed in Python integers and
compared with a limit before any array is allocated, so no product can wrap.

Limits (no real network comes near them):

=========================  ===========  ==================================================
``MAX_HEADER_BYTES``       64 MiB       length of the JSON header
``MAX_NODES``              100,000      nodes in the graph
``MAX_TENSORS``            400,000      stored tensors
``MAX_NAME_CHARS``         1,024        characters of a node, tensor or value name
``MAX_INPUTS``             1,024        inputs of one ``cat``
``MAX_TENSOR_RANK``        4            axes of a stored tensor
``MAX_SIZE``               65,536       channels, height, width, strides
``MAX_KERNEL``             1,024        kernel sizes, dilations, adaptive pooling sizes
``MAX_PADDING``            4,096        padding of a convolution, pooling or ``pad``
``MAX_ELEMENTS``           2**31 - 1    elements of a tensor, of a feature vector, of
                                        any activation of one sample, of its padded
                                        copy and of a float convolution's im2col rows
``MAX_INT8_DEPTH``         65,536       products summed into one int32 accumulator of a
                                        ``qconv2d`` or ``qlinear`` (127 * 128 each, so
                                        no sum can overflow)
=========================  ===========  ==================================================

:func:`infer_shapes` is also what a network runs, once per new input height and width,
when it is called with another size than the exported one; there a failure is a
:class:`RuntimeInputError`. This module imports NumPy neither: it works on the header's
values alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bnn_runtime.errors import RuntimeFormatError, RuntimeInputError
from bnn_runtime.graph import OPS, Graph, Node, reference_problem

MAX_HEADER_BYTES = 64 << 20
MAX_NODES = 100_000
MAX_TENSORS = 400_000
MAX_NAME_CHARS = 1024
MAX_INPUTS = 1024
MAX_TENSOR_RANK = 4
MAX_SIZE = 1 << 16
MAX_KERNEL = 1 << 10
MAX_PADDING = 1 << 12
MAX_ELEMENTS = (1 << 31) - 1
MAX_INT8_DEPTH = 1 << 16
#: The quantized input of ``qconv2d`` and ``qlinear`` holds 7-bit values, [0, 127].
INT8_INPUT_MAX = 127

FLOAT_DTYPES = ("float32", "float16")
BITS = "bits"
INT8 = "int8"

Shape = tuple[int, ...]
#: A stored tensor as the checks see it: its dtype name and shape.
TensorSpec = tuple[str, Shape]


class Invalid(Exception):
    """One check failed; the caller adds the file and the node to the message."""


def _is_int(value: Any) -> bool:
    return type(value) is int


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


@dataclass(frozen=True)
class Rule:
    """What one attribute must be: a phrase for the message and the test."""

    describe: str
    accepts: Callable[[Any], bool]


def _int(low: int, high: int) -> Rule:
    return Rule(f"an int in [{low}, {high}]", lambda v: _is_int(v) and low <= v <= high)


def _pair(low: int, high: int) -> Rule:
    return Rule(
        f"a pair of ints in [{low}, {high}]",
        lambda v: (
            type(v) is list and len(v) == 2 and all(_is_int(i) and low <= i <= high for i in v)
        ),
    )


def _finite(value: Any) -> bool:
    if _is_int(value):
        return abs(value) <= 1 << 53
    return type(value) is float and math.isfinite(value)


BOOL = Rule("a boolean (true or false)", lambda v: type(v) is bool)
NUMBER = Rule("a finite number", _finite)
SCALE = Rule(
    "a number in [1e-30, 1e30]",
    lambda v: (_is_int(v) or type(v) is float) and 1e-30 <= v <= 1e30,
)
PAD_VALUE = Rule("one of 0, 1 and -1", lambda v: _is_int(v) and v in (0, 1, -1))
DIVISOR = Rule(
    f"null or an int in [1, {MAX_ELEMENTS}]",
    lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_ELEMENTS),
)
PADS = Rule(
    f"a list of 2, 4 or 6 ints in [0, {MAX_PADDING}]",
    lambda v: (
        type(v) is list
        and len(v) in (2, 4, 6)
        and all(_is_int(i) and 0 <= i <= MAX_PADDING for i in v)
    ),
)

_CONV = {
    "in_channels": _int(1, MAX_SIZE),
    "out_channels": _int(1, MAX_SIZE),
    "kernel_size": _pair(1, MAX_KERNEL),
    "stride": _pair(1, MAX_SIZE),
    "padding": _pair(0, MAX_PADDING),
    "groups": _int(1, MAX_SIZE),
}
_LINEAR = {"in_features": _int(1, MAX_ELEMENTS), "out_features": _int(1, MAX_ELEMENTS)}
_QUANTIZED = {"input_scale": SCALE, "input_zero_point": _int(0, INT8_INPUT_MAX)}
_POOL = {
    "kernel_size": _pair(1, MAX_KERNEL),
    "stride": _pair(1, MAX_SIZE),
    "padding": _pair(0, MAX_PADDING),
    "ceil_mode": BOOL,
}

#: The type and range of every attribute of every operation.
ATTRIBUTES: dict[str, dict[str, Rule]] = {
    "conv2d": {**_CONV, "dilation": _pair(1, MAX_KERNEL)},
    "binary_conv2d": {**_CONV, "pad_value": PAD_VALUE},
    "qconv2d": {**_CONV, "dilation": _pair(1, MAX_KERNEL), **_QUANTIZED},
    "linear": _LINEAR,
    "qlinear": {**_LINEAR, **_QUANTIZED},
    "binary_linear": _LINEAR,
    "leaky_relu": {"negative_slope": NUMBER},
    "hardtanh": {"min_val": NUMBER, "max_val": NUMBER, "slope": NUMBER},
    "scalar": {"mul": NUMBER, "add": NUMBER},
    "max_pool2d": _POOL,
    "avg_pool2d": {**_POOL, "count_include_pad": BOOL, "divisor": DIVISOR},
    "adaptive_avg_pool2d": {"output_size": _pair(1, MAX_KERNEL)},
    "slice": {
        "axis": _int(1, 3),
        "start": _int(0, MAX_ELEMENTS),
        "stop": _int(0, MAX_ELEMENTS),
        "step": _int(1, MAX_ELEMENTS),
    },
    "pad": {"pads": PADS, "value": NUMBER},
}


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """PyTorch's output length of a convolution (< 1 when the kernel does not fit)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """PyTorch's output length of a pooling window: with ``ceil_mode`` the last window
    may hang over the end, but must start inside the input or its left padding."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _elements(shape: Sequence[int], what: str) -> int:
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise Invalid(f"{what} would hold {count:,} elements per sample, over {MAX_ELEMENTS:,}")
    return count


class _Tensors:
    """The stored tensors of one node, checked role by role."""

    def __init__(self, node: Node, specs: Mapping[str, TensorSpec]) -> None:
        self.node = node
        self.specs = specs

    def shape(self, role: str) -> Shape | None:
        name = self.node.tensors.get(role)
        return None if name is None else self.specs[name][1]

    def expect(self, role: str, *shapes: Shape, bits: bool = False, int8: bool = False) -> None:
        """Unless the node lacks ``role``: its tensor is ``bits``, ``int8`` or (neither
        asked) a float tensor, with one of ``shapes``."""
        name = self.node.tensors.get(role)
        if name is None:
            return
        dtype, shape = self.specs[name]
        kinds = (BITS,) if bits else (INT8,) if int8 else FLOAT_DTYPES
        if dtype in kinds and shape in shapes:
            return
        kind = " or ".join(kinds)
        wanted = " or ".join(str(list(s)) for s in shapes)
        raise Invalid(
            f"tensor {role!r} ({name!r}) must be {kind} of shape {wanted}, "
            f"got {dtype} {list(shape)}"
        )


def _rank3(shape: Shape, op: str) -> Shape:
    if len(shape) != 3:
        raise Invalid(f"{op} takes a [C, H, W] input, got {list(shape)}")
    return shape


def _rank1(shape: Shape, op: str) -> Shape:
    if len(shape) != 1:
        raise Invalid(f"{op} takes a [features] input, got {list(shape)}")
    return shape


def _equal(attrs: Mapping[str, Any], name: str, actual: int, what: str) -> None:
    if attrs[name] != actual:
        raise Invalid(f"attribute {name!r} is {attrs[name]}, but its input has {actual} {what}")


def _groups(attrs: Mapping[str, Any]) -> tuple[int, int, int]:
    c, o, g = attrs["in_channels"], attrs["out_channels"], attrs["groups"]
    if c % g or o % g:
        raise Invalid(
            f"attribute 'groups' ({g}) must divide in_channels ({c}) and out_channels ({o})"
        )
    return c, o, g


def _padded(c: int, h: int, w: int, padding: Sequence[int]) -> None:
    _elements((c, h + 2 * padding[0], w + 2 * padding[1]), "its padded input")


def _spatial(
    h: int, w: int, attrs: Mapping[str, Any], sizes: Callable[[int, int], int]
) -> tuple[int, int]:
    out = (sizes(h, 0), sizes(w, 1))
    if min(out) < 1:
        kh, kw = attrs["kernel_size"]
        ph, pw = attrs["padding"]
        raise Invalid(
            f"its {kh}x{kw} kernel does not fit its {h}x{w} input padded by "
            f"{ph}x{pw}: the output would be {out[0]}x{out[1]}"
        )
    return out


def _depth(depth: int) -> None:
    """An int8 node sums ``depth`` products into each int32 accumulator."""
    if depth > MAX_INT8_DEPTH:
        raise Invalid(
            f"each output sums {depth:,} int8 products, over {MAX_INT8_DEPTH:,} (its int32 "
            "accumulator could overflow)"
        )


def _conv2d(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    attrs = node.attrs
    c, h, w = _rank3(shapes[0], node.op)
    _equal(attrs, "in_channels", c, "channels")
    c, o, g = _groups(attrs)
    kernel, stride, padding = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    dilation = attrs.get("dilation", [1, 1])
    oh, ow = _spatial(
        h,
        w,
        attrs,
        lambda size, i: conv_output_size(size, kernel[i], stride[i], padding[i], dilation[i]),
    )
    _padded(c, h, w, padding)
    if node.op == "conv2d":
        tensors.expect("weight", (o, c // g, *kernel))
        _elements((oh, ow, *kernel, c // g), "its im2col matrix")
    elif node.op == "qconv2d":
        _depth(kernel[0] * kernel[1] * (c // g))
        tensors.expect("weight", (o, c // g, *kernel), int8=True)
        tensors.expect("weight_scale", (o,))
        _elements((oh, ow, *kernel, c // g), "its im2col matrix")
    else:
        tensors.expect("weight", (o, *kernel, c // g), bits=True)
        tensors.expect("scale", (o,))
        tensors.expect("threshold", (c,))
    tensors.expect("bias", (o,))
    return _checked((o, oh, ow))


def _linear(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    attrs = node.attrs
    (features,) = _rank1(shapes[0], node.op)
    _equal(attrs, "in_features", features, "features")
    o = attrs["out_features"]
    _elements((o, features), "its weight")
    binary = node.op == "binary_linear"
    if node.op == "qlinear":
        _depth(features)
        tensors.expect("weight", (o, features), int8=True)
        tensors.expect("weight_scale", (o,))
    else:
        tensors.expect("weight", (o, features), bits=binary)
    tensors.expect("bias", (o,))
    if binary:
        tensors.expect("scale", (o,))
        tensors.expect("threshold", (features,))
    return (o,)


def _pool(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    attrs = node.attrs
    c, h, w = _rank3(shapes[0], node.op)
    kernel, stride, padding = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    if any(2 * p > k for p, k in zip(padding, kernel, strict=True)):
        raise Invalid(f"attribute 'padding' {padding} must be at most half of kernel_size {kernel}")
    oh, ow = _spatial(
        h,
        w,
        attrs,
        lambda size, i: pool_output_size(
            size, kernel[i], stride[i], padding[i], attrs["ceil_mode"]
        ),
    )
    _padded(c, h, w, padding)
    return (c, oh, ow)


def _adaptive(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    c, _, _ = _rank3(shapes[0], node.op)
    return _checked((c, *node.attrs["output_size"]))


def _per_channel(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    (shape,) = shapes
    channels = shape[0]
    if node.op == "prelu":
        tensors.expect("slope", (channels,), (1,))
    elif node.op == "rprelu":
        tensors.expect("slope", (channels,), (1,))
        tensors.expect("shift_in", (channels,))
        tensors.expect("shift_out", (channels,))
    else:
        tensors.expect("scale", (channels,))
        tensors.expect("shift", (channels,))
    return shape


def _spatial_scale(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    _, h, w = _rank3(shapes[0], node.op)
    for role, size in (("rows", h), ("cols", w)):
        stored = tensors.shape(role) or (0,)
        tensors.expect(role, (stored[0],))
        if stored[0] < size:
            raise Invalid(
                f"tensor {role!r} has {stored[0]} factors, fewer than the {size} its "
                f"{h}x{w} input needs"
            )
    return shapes[0]


def _elementwise(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    if node.op == "hardtanh" and node.attrs["min_val"] > node.attrs["max_val"]:
        raise Invalid(
            f"attribute 'min_val' ({node.attrs['min_val']}) is above 'max_val' "
            f"({node.attrs['max_val']})"
        )
    return shapes[0]


def _softmax(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    return _rank1(shapes[0], node.op)


def _add(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    if shapes[0] != shapes[1]:
        raise Invalid(f"adds values of different shapes {list(shapes[0])} and {list(shapes[1])}")
    return shapes[0]


def _cat(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    if len(shapes) > MAX_INPUTS:
        raise Invalid(f"has {len(shapes)} inputs, over {MAX_INPUTS}")
    rest = {shape[1:] for shape in shapes}
    if len({len(shape) for shape in shapes}) != 1 or len(rest) != 1:
        raise Invalid(
            "concatenates values that differ in rank or beyond the channel axis: "
            + ", ".join(str(list(shape)) for shape in shapes)
        )
    return _checked((sum(shape[0] for shape in shapes), *rest.pop()))


def _flatten(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    return (_elements(shapes[0], "its output"),)


def _slice(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    attrs = node.attrs
    shape = list(shapes[0])
    axis = attrs["axis"]
    if axis > len(shape):
        raise Invalid(f"attribute 'axis' ({axis}) is beyond its rank-{len(shape) + 1} input")
    size = shape[axis - 1]
    shape[axis - 1] = len(range(attrs["start"], min(attrs["stop"], size), attrs["step"]))
    if not shape[axis - 1]:
        raise Invalid(
            f"slice {attrs['start']}:{attrs['stop']}:{attrs['step']} of axis {axis} "
            f"(length {size}) is empty"
        )
    return tuple(shape)


def _pad(node: Node, shapes: list[Shape], tensors: _Tensors) -> Shape:
    pads = node.attrs["pads"]
    shape = list(shapes[0])
    if len(pads) // 2 > len(shape):
        raise Invalid(
            f"attribute 'pads' pads {len(pads) // 2} axes of a rank-{len(shape)} value "
            "(the batch axis is never padded)"
        )
    for index in range(len(pads) // 2):
        shape[-1 - index] += pads[2 * index] + pads[2 * index + 1]
    return _checked(tuple(shape))


def _checked(shape: Shape) -> Shape:
    """``shape`` unless a channel, height or width or the whole is over the limits."""
    if len(shape) == 3 and max(shape) > MAX_SIZE:
        raise Invalid(f"its output {list(shape)} has a dimension over {MAX_SIZE:,}")
    _elements(shape, "its output")
    return shape


#: For every operation: its output shape from its input shapes, attributes and tensors.
SHAPES: dict[str, Callable[[Node, list[Shape], _Tensors], Shape]] = {
    "conv2d": _conv2d,
    "qconv2d": _conv2d,
    "binary_conv2d": _conv2d,
    "linear": _linear,
    "qlinear": _linear,
    "binary_linear": _linear,
    "channel_affine": _per_channel,
    "spatial_scale": _spatial_scale,
    "prelu": _per_channel,
    "rprelu": _per_channel,
    "relu": _elementwise,
    "leaky_relu": _elementwise,
    "hardtanh": _elementwise,
    "scalar": _elementwise,
    "softmax": _softmax,
    "max_pool2d": _pool,
    "avg_pool2d": _pool,
    "adaptive_avg_pool2d": _adaptive,
    "add": _add,
    "cat": _cat,
    "flatten": _flatten,
    "slice": _slice,
    "pad": _pad,
}


def _where(node: Node) -> str:
    return f"node {node.name!r} ({node.op})"


def check_input_shape(shape: Sequence[Any]) -> Shape:
    """One sample's shape: ``[features]`` or ``[C, H, W]``, each within the limits."""
    rank_ok = type(shape) in (list, tuple) and len(shape) in (1, 3)
    if not rank_ok or not all(_is_int(d) for d in shape):
        raise Invalid(f"a sample must be [features] or [C, H, W] (ints), got {_shown(shape)}")
    limit = MAX_ELEMENTS if len(shape) == 1 else MAX_SIZE
    if not all(1 <= d <= limit for d in shape):
        raise Invalid(f"every dimension of a sample must be in [1, {limit:,}], got {list(shape)}")
    _elements(shape, "a sample")
    return tuple(shape)


def _check_attributes(node: Node) -> None:
    rules = ATTRIBUTES.get(node.op, {})
    unknown = sorted(set(node.attrs) - set(rules))
    if unknown:
        raise Invalid(f"unknown attribute(s) {', '.join(map(repr, unknown))}")
    for name, rule in rules.items():
        value = node.attrs[name]
        if not rule.accepts(value):
            raise Invalid(f"attribute {name!r} must be {rule.describe}, got {_shown(value)}")


def _check_references(node: Node, defined: set[str], specs: Mapping[str, TensorSpec]) -> None:
    for name in (node.name, *node.inputs, *node.tensors.values()):
        if not name or len(name) > MAX_NAME_CHARS:
            raise Invalid(f"names must have 1 to {MAX_NAME_CHARS} characters")
    problem = reference_problem(node, defined, specs)
    if problem is not None:
        raise Invalid(problem)


def infer_shapes(
    graph: Graph,
    specs: Mapping[str, TensorSpec],
    input_shape: Sequence[int],
    compare_stored: bool = False,
) -> dict[str, Shape]:
    """Every value's shape (one sample, channels first) when the graph runs on
    ``input_shape``; each node's tensors are checked against its input shapes and, with
    ``compare_stored``, its output against the shape the node records. The graph's
    references and attributes must have been checked (:func:`check`). Raises
    :class:`Invalid` prefixed with the node at fault."""
    shapes = {graph.input_name: check_input_shape(input_shape)}
    for node in graph.nodes:
        try:
            shape = SHAPES[node.op](node, [shapes[s] for s in node.inputs], _Tensors(node, specs))
            if compare_stored and node.shape is not None and tuple(node.shape) != shape:
                raise Invalid(
                    f"its recorded shape {list(node.shape)} differs from the {list(shape)} "
                    "its inputs and attributes give"
                )
        except Invalid as exc:
            raise Invalid(f"{_where(node)}: {exc}") from None
        shapes[node.name] = shape
    return shapes


def check(path: object, graph: Graph, specs: Mapping[str, TensorSpec]) -> dict[str, Shape]:
    """Check ``graph`` and the tensors it uses (``specs``: every stored tensor's dtype
    and shape) completely, as read from ``path``; returns every value's shape at the
    declared input. Any failure is a :class:`RuntimeFormatError` naming ``path``."""
    try:
        if len(graph.nodes) > MAX_NODES:
            raise Invalid(f"the graph has {len(graph.nodes):,} nodes, over {MAX_NODES:,}")
        if len(specs) > MAX_TENSORS:
            raise Invalid(f"the file stores {len(specs):,} tensors, over {MAX_TENSORS:,}")
        try:
            check_input_shape(graph.input_shape)
        except Invalid as exc:
            raise Invalid(f"the graph input {graph.input_name!r}: {exc}") from None
        defined = {graph.input_name}
        used: set[str] = set()
        for node in graph.nodes:
            if node.op not in OPS:
                raise Invalid(
                    f"{_where(node)}: unknown operation; this runtime executes "
                    f"{', '.join(sorted(OPS))}"
                )
            try:
                _check_references(node, defined, specs)
                _check_attributes(node)
            except Invalid as exc:
                raise Invalid(f"{_where(node)}: {exc}") from None
            defined.add(node.name)
            used.update(node.tensors.values())
        if not graph.outputs:
            raise Invalid("the graph has no output")
        for output in graph.outputs:
            if output not in defined:
                raise Invalid(f"graph output {output!r} is not defined")
        shapes = infer_shapes(graph, specs, graph.input_shape, compare_stored=True)
        unused = sorted(set(specs) - used)
        if unused:
            raise Invalid(f"tensor {unused[0]!r} is stored but no node uses it")
        return shapes
    except Invalid as exc:
        raise RuntimeFormatError(f"{path}: {exc}") from None


def check_call(graph: Graph, specs: Mapping[str, TensorSpec], shape: Sequence[int]) -> None:
    """Raise :class:`RuntimeInputError` unless a checked graph runs on samples of
    ``shape`` (another height and width than exported) with every value non-empty and
    within the limits."""
    try:
        infer_shapes(graph, specs, shape)
    except Invalid as exc:
        raise RuntimeInputError(
            f"the network cannot run on input of shape [N, {', '.join(map(str, shape))}]: {exc}"
        ) from None
