"""Capture a (binarized) PyTorch model as a runtime :class:`~bnn.runtime.graph.Graph`.

The model is traced with ``torch.fx`` in eval mode: binary layers and bnn's blocks
(RPReLU, LearnableBias, hard tanh) are leaf modules, as are PyTorch's own layers;
other modules are traced through. One shape-propagation pass records every value's
shape. Each traced node then becomes runtime nodes with float64 tensors (binary
weights as booleans); anything the runtime cannot execute raises an
:class:`ExportError` naming the layer or node and the reason.
"""

from __future__ import annotations

import contextlib
import io
import operator
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from bnn.deploy.binarizers import conv_padding, fold_binary_layer
from bnn.deploy.errors import ExportError
from bnn.runtime.graph import Graph, Node
from bnn_core.layers import is_binary_layer
from bnn_models.blocks import HardTanh, LeakyHardTanh, LearnableBias, RPReLU
from bnn_models.residual import ZeroPadShortcut

INPUT = "input"
_LEAF_BLOCKS = (RPReLU, LearnableBias, HardTanh, LeakyHardTanh)
_IDENTITIES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
SUPPORTED_LAYERS = (
    "BinaryConv2d, BinaryLinear, Conv2d, Linear, BatchNorm1d/2d (with running statistics), "
    "PReLU, RPReLU, LearnableBias, ReLU, LeakyReLU, Hardtanh, HardTanh, LeakyHardTanh, "
    "MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Softmax, Identity, Dropout"
)
SUPPORTED_FUNCTIONS = (
    "+, - and * / by a number, torch.add, torch.cat on channels, flatten, view/reshape to "
    "(N, -1), mean over height and width, relu, hardtanh, leaky_relu, max/avg/adaptive "
    "pooling, constant F.pad, slicing with x[:, :, ::s, ::s], softmax, dropout"
)


class _Tracer(fx.Tracer):
    """Keeps binary layers and bnn's blocks as leaves (one node each)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if is_binary_layer(m) or isinstance(m, _LEAF_BLOCKS):
            return True
        if isinstance(m, ZeroPadShortcut):
            return False
        return super().is_leaf_module(m, module_qualified_name)


@dataclass
class Captured:
    """A captured graph with its float64 tensors (binary weights as booleans), the
    names of nodes that are batch norms, and which binary nodes carry a scale derived
    from their weights alone (not a stored parameter).

    ``added`` and ``merged`` count float values against what ``bnn summary`` counts
    for the model (every float parameter and persistent buffer): values stored that it
    does not count (derived weight scales), and values it counts that folding merged
    away. The float part of the file holds ``counted + added - merged`` values."""

    graph: Graph
    arrays: dict[str, np.ndarray]
    batch_norms: set[str] = field(default_factory=set)
    derived_scales: set[str] = field(default_factory=set)
    added: int = 0
    merged: int = 0


def trace(model: nn.Module) -> fx.GraphModule:
    """``model`` as a ``torch.fx.GraphModule`` sharing its modules."""
    try:
        graph = _Tracer().trace(model)
    except ExportError:
        raise
    except Exception as exc:  # tracing runs user code: any failure is reported as such
        raise ExportError(
            f"{type(model).__name__} cannot be traced with torch.fx, which the export needs "
            f"(a forward pass without data-dependent Python control flow): "
            f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from None
    return fx.GraphModule(model, graph, type(model).__name__)


def capture(model: nn.Module, example: torch.Tensor) -> Captured:
    """Trace ``model`` (in eval mode, restored afterwards) on ``example`` (batch first)
    and convert it to runtime nodes."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        module = trace(model)
        try:
            # ShapeProp prints the traceback of a failing node itself: keep it off the terminal
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                ShapeProp(module).propagate(example)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            cause = exc.__cause__ or exc
            raise ExportError(
                f"the forward pass of {type(model).__name__} on an input of shape "
                f"{list(example.shape)} failed (is the input shape right?): "
                f"{' '.join(str(cause).split())}"
            ) from None
        return _Converter(module).convert()
    finally:
        for submodule, training in modes.items():
            submodule.training = training


def _shape(node: fx.Node) -> list[int] | None:
    meta = node.meta.get("tensor_meta")
    return [int(d) for d in meta.shape] if meta is not None and hasattr(meta, "shape") else None


class _Converter:
    """Walks the traced graph, turning each fx node into runtime nodes."""

    def __init__(self, module: fx.GraphModule) -> None:
        self.module = module
        self.nodes: list[Node] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.values: dict[fx.Node, str] = {}
        self.sizes: set[fx.Node] = set()
        self.batch_norms: set[str] = set()
        self.derived: set[str] = set()
        self.added = self.merged = 0
        self.names: set[str] = {INPUT}

    def convert(self) -> Captured:
        outputs: list[str] = []
        input_shape: list[int] | None = None
        for node in self.module.graph.nodes:
            if node.op == "placeholder":
                if input_shape is not None:
                    raise ExportError(
                        f"the model takes several inputs ({node.name} is the second); the "
                        "packed runtime runs networks with one input tensor"
                    )
                input_shape = (_shape(node) or [0])[1:]
                self.values[node] = INPUT
            elif node.op == "output":
                outputs = [self.value(result, node) for result in _flat(node.args[0])]
            elif node.op == "get_attr":
                raise ExportError(
                    f"node {node.name}: the forward pass reads the tensor {node.target!r} "
                    "directly; the exporter handles tensors held by supported layers only"
                )
            else:
                self.convert_node(node)
        graph = Graph(INPUT, input_shape or [], self.nodes, outputs)
        return Captured(graph, self.arrays, self.batch_norms, self.derived, self.added, self.merged)

    def value(self, argument: Any, user: fx.Node) -> str:
        """The runtime value an fx argument refers to."""
        if not isinstance(argument, fx.Node) or argument not in self.values:
            raise ExportError(
                f"node {user.name} ({_describe(user)}): its argument {argument!r} is not a "
                "tensor the exporter computed"
            )
        return self.values[argument]

    def add(
        self,
        fx_node: fx.Node,
        op: str,
        inputs: Sequence[str],
        attrs: dict[str, Any] | None = None,
        tensors: dict[str, np.ndarray] | None = None,
        modules: Sequence[str] = (),
        name: str | None = None,
        shape: list[int] | None = None,
    ) -> str:
        """Append a runtime node and register its tensors; returns its value name."""
        base = name or (fx_node.target if fx_node.op == "call_module" else fx_node.name)
        unique, suffix = str(base), 1
        while unique in self.names:
            suffix += 1
            unique = f"{base}#{suffix}"
        self.names.add(unique)
        refs = {}
        for role, array in (tensors or {}).items():
            self.arrays[f"{unique}.{role}"] = array
            refs[role] = f"{unique}.{role}"
        full = shape if shape is not None else _shape(fx_node)
        self.nodes.append(
            Node(
                name=unique,
                op=op,
                inputs=list(inputs),
                attrs=attrs or {},
                tensors=refs,
                shape=None if full is None else full[1:],
                modules=list(modules),
            )
        )
        return unique

    def convert_node(self, node: fx.Node) -> None:
        if node.op == "call_module":
            result = self.convert_module(node, self.module.get_submodule(str(node.target)))
        elif node.op == "call_method" and node.target == "size":
            self.sizes.add(node)
            return
        else:
            result = self.convert_call(node)
        self.values[node] = result

    def first(self, node: fx.Node) -> str:
        return self.value(node.args[0], node)

    def convert_module(self, node: fx.Node, module: nn.Module) -> str:
        name = str(node.target)
        rank = len(_shape(node) or [])
        if is_binary_layer(module):
            return self.binary(node, name, module)
        if isinstance(module, _IDENTITIES):
            return self.first(node)
        if isinstance(module, nn.Conv2d):
            return self.conv(node, name, module)
        if isinstance(module, nn.Linear):
            if rank != 2:
                raise ExportError(
                    f"layer {name} (Linear): the runtime runs it on (N, features) only"
                )
            tensors = {"weight": _array(module.weight)}
            if module.bias is not None:
                tensors["bias"] = _array(module.bias)
            attrs = {"in_features": module.in_features, "out_features": module.out_features}
            return self.add(node, "linear", [self.first(node)], attrs, tensors, [name])
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            return self.batch_norm(node, name, module, rank)
        if isinstance(module, nn.PReLU):
            tensors = {"slope": _array(module.weight).reshape(-1)}
            return self.add(node, "prelu", [self.first(node)], {}, tensors, [name])
        if isinstance(module, RPReLU):
            tensors = {
                "shift_in": _array(module.shift_in),
                "slope": _array(module.slope),
                "shift_out": _array(module.shift_out),
            }
            return self.add(node, "rprelu", [self.first(node)], {}, tensors, [name])
        if isinstance(module, LearnableBias):
            tensors = {"shift": _array(module.bias)}
            return self.add(node, "channel_affine", [self.first(node)], {}, tensors, [name])
        if isinstance(module, nn.ReLU):
            return self.add(node, "relu", [self.first(node)], modules=[name])
        if isinstance(module, nn.LeakyReLU):
            attrs = {"negative_slope": float(module.negative_slope)}
            return self.add(node, "leaky_relu", [self.first(node)], attrs, modules=[name])
        if isinstance(module, nn.Hardtanh | HardTanh | LeakyHardTanh):
            low = float(getattr(module, "min_val", -1.0))
            high = float(getattr(module, "max_val", 1.0))
            slope = float(getattr(module, "slope", 0.0))
            attrs = {"min_val": low, "max_val": high, "slope": slope}
            return self.add(node, "hardtanh", [self.first(node)], attrs, modules=[name])
        if isinstance(module, nn.MaxPool2d):
            return self.max_pool(
                node,
                name,
                module.kernel_size,
                module.stride,
                module.padding,
                module.dilation,
                module.ceil_mode,
                module.return_indices,
            )
        if isinstance(module, nn.AvgPool2d):
            return self.avg_pool(
                node,
                name,
                module.kernel_size,
                module.stride,
                module.padding,
                module.ceil_mode,
                module.count_include_pad,
                module.divisor_override,
            )
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return self.adaptive_pool(node, name)
        if isinstance(module, nn.Flatten):
            return self.flatten(node, module.start_dim, module.end_dim, name)
        if isinstance(module, nn.Softmax):
            return self.softmax(node, module.dim, name)
        raise ExportError(
            f"layer {name} ({type(module).__name__}) is not supported by the packed runtime. "
            f"Supported layers: {SUPPORTED_LAYERS}"
        )

    def binary(self, node: fx.Node, name: str, layer: nn.Module) -> str:
        fold = fold_binary_layer(name, layer)
        tensors: dict[str, np.ndarray] = {"weight": fold.signs}
        for role, array in (
            ("scale", fold.scale),
            ("bias", fold.bias),
            ("threshold", fold.threshold),
        ):
            if array is not None:
                tensors[role] = array
        stored = sum(a.size for role, a in tensors.items() if role != "weight")
        stored += 0 if fold.spatial is None else sum(f.size for f in fold.spatial)
        counted = _counted_floats(layer)
        self.added += max(stored - counted, 0)
        self.merged += max(counted - stored, 0)
        if isinstance(layer, nn.Conv2d):
            op = "binary_conv2d"
            attrs: dict[str, Any] = {
                "in_channels": layer.in_channels,
                "out_channels": layer.out_channels,
                "kernel_size": list(layer.kernel_size),
                "stride": list(layer.stride),
                "padding": conv_padding(layer),
                "groups": layer.groups,
                "pad_value": int(layer.bconfig.pad_value or 0),
            }
        else:
            if len(_shape(node) or []) != 2:
                raise ExportError(f"layer {name} (BinaryLinear): runs on (N, features) only")
            op = "binary_linear"
            attrs = {"in_features": layer.in_features, "out_features": layer.out_features}
        if fold.spatial is None:
            result = self.add(node, op, [self.first(node)], attrs, tensors, [name])
            if fold.derived_scale:
                self.derived.add(result)
            return result
        inner = self.add(node, op, [self.first(node)], attrs, tensors, [name])
        rows, cols = fold.spatial
        return self.add(
            node,
            "spatial_scale",
            [inner],
            {},
            {"rows": rows, "cols": cols},
            [name],
            name=f"{name}.spatial_scale",
        )

    def conv(self, node: fx.Node, name: str, module: nn.Conv2d) -> str:
        if module.padding_mode != "zeros":
            raise ExportError(
                f"layer {name} (Conv2d): padding_mode {module.padding_mode!r} is not supported "
                "(zero padding only)"
            )
        left, right, top, bottom = module._reversed_padding_repeated_twice
        if left != right or top != bottom:
            raise ExportError(f"layer {name} (Conv2d): asymmetric padding is not supported")
        tensors = {"weight": _array(module.weight)}
        if module.bias is not None:
            tensors["bias"] = _array(module.bias)
        attrs = {
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "kernel_size": list(module.kernel_size),
            "stride": list(module.stride),
            "padding": [int(top), int(left)],
            "dilation": list(module.dilation),
            "groups": module.groups,
        }
        return self.add(node, "conv2d", [self.first(node)], attrs, tensors, [name])

    def batch_norm(
        self, node: fx.Node, name: str, module: nn.modules.batchnorm._BatchNorm, rank: int
    ) -> str:
        if module.running_mean is None or module.running_var is None:
            raise ExportError(
                f"layer {name} ({type(module).__name__}) has no running statistics "
                "(track_running_stats=False), so it normalises with each batch's own "
                "statistics; the packed runtime needs fixed statistics to fold"
            )
        if rank not in (2, 4):
            raise ExportError(f"layer {name}: batch norm on rank-{rank} values is not supported")
        inverse = 1.0 / np.sqrt(_array(module.running_var) + module.eps)
        weight = _array(module.weight) if module.weight is not None else 1.0
        bias = _array(module.bias) if module.bias is not None else 0.0
        scale = weight * inverse
        shift = bias - _array(module.running_mean) * scale
        tensors = {"scale": np.asarray(scale, np.float64), "shift": np.asarray(shift, np.float64)}
        result = self.add(node, "channel_affine", [self.first(node)], {}, tensors, [name])
        self.batch_norms.add(result)
        return result

    def max_pool(
        self,
        node: fx.Node,
        name: str,
        kernel: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        ceil_mode: bool,
        return_indices: bool,
    ) -> str:
        if _pair(dilation) != [1, 1] or return_indices:
            raise ExportError(
                f"{name}: max pooling with dilation or returned indices is not supported"
            )
        attrs = {
            "kernel_size": _pair(kernel),
            "stride": _pair(stride if stride else kernel),
            "padding": _pair(padding),
            "ceil_mode": bool(ceil_mode),
        }
        return self.add(node, "max_pool2d", [self.first(node)], attrs, modules=[name])

    def avg_pool(
        self,
        node: fx.Node,
        name: str,
        kernel: Any,
        stride: Any,
        padding: Any,
        ceil_mode: bool,
        count_include_pad: bool,
        divisor: int | None,
    ) -> str:
        attrs = {
            "kernel_size": _pair(kernel),
            "stride": _pair(stride if stride else kernel),
            "padding": _pair(padding),
            "ceil_mode": bool(ceil_mode),
            "count_include_pad": bool(count_include_pad),
            "divisor": int(divisor) if divisor else None,
        }
        return self.add(node, "avg_pool2d", [self.first(node)], attrs, modules=[name])

    def adaptive_pool(self, node: fx.Node, name: str) -> str:
        shape = _shape(node)
        if shape is None or len(shape) != 4:
            raise ExportError(f"{name}: adaptive average pooling runs on (N, C, H, W) only")
        attrs = {"output_size": shape[2:]}
        return self.add(node, "adaptive_avg_pool2d", [self.first(node)], attrs, modules=[name])

    def flatten(self, node: fx.Node, start: int, end: int, name: str) -> str:
        source = node.args[0]
        rank = len(_shape(source) or []) if isinstance(source, fx.Node) else 0
        if start != 1 or end not in (-1, rank - 1):
            raise ExportError(
                f"{name}: flatten from dimension {start} to {end} is not supported (only "
                "everything but the batch axis)"
            )
        if rank == 2:
            return self.first(node)
        return self.add(node, "flatten", [self.first(node)], modules=[name] if name else [])

    def softmax(self, node: fx.Node, dim: Any, name: str) -> str:
        rank = len(_shape(node) or [])
        if rank != 2 or dim not in (1, -1):
            raise ExportError(f"{name}: softmax is supported over the features of (N, features)")
        return self.add(node, "softmax", [self.first(node)], modules=[name])

    def convert_call(self, node: fx.Node) -> str:
        target = node.target
        key = target if node.op == "call_function" else f".{target}"
        handler = _CALLS.get(key)  # type: ignore[arg-type]
        if handler is None:
            raise ExportError(
                f"node {node.name} ({_describe(node)}) is not supported by the packed runtime. "
                f"Supported functions: {SUPPORTED_FUNCTIONS}"
            )
        return handler(self, node)

    def argument(self, node: fx.Node, index: int, keyword: str, default: Any) -> Any:
        if len(node.args) > index:
            return node.args[index]
        return node.kwargs.get(keyword, default)

    def arithmetic(self, node: fx.Node, kind: str) -> str:
        left, right = node.args[0], node.args[1]
        if node.kwargs.get("alpha", 1) != 1:
            raise ExportError(f"node {node.name}: torch.add with alpha is not supported")
        tensors = [a for a in (left, right) if isinstance(a, fx.Node)]
        numbers = [
            a for a in (left, right) if isinstance(a, int | float) and not isinstance(a, bool)
        ]
        if kind == "add" and len(tensors) == 2:
            if _shape(left) != _shape(right):
                raise ExportError(
                    f"node {node.name}: adding tensors of shapes {_shape(left)} and "
                    f"{_shape(right)} (broadcasting) is not supported"
                )
            return self.add(node, "add", [self.value(left, node), self.value(right, node)])
        if len(tensors) != 1 or len(numbers) != 1:
            raise ExportError(
                f"node {node.name} ({_describe(node)}): only tensor + tensor and tensor with a "
                "number are supported"
            )
        number = float(numbers[0])
        if kind == "sub" and left is tensors[0]:
            attrs = {"mul": 1.0, "add": -number}
        elif kind == "sub":
            attrs = {"mul": -1.0, "add": number}
        elif kind == "add":
            attrs = {"mul": 1.0, "add": number}
        elif kind == "mul":
            attrs = {"mul": number, "add": 0.0}
        elif kind == "div" and left is tensors[0]:
            attrs = {"mul": 1.0 / number, "add": 0.0}
        else:
            raise ExportError(f"node {node.name}: dividing a number by a tensor is not supported")
        return self.add(node, "scalar", [self.value(tensors[0], node)], attrs)

    def cat(self, node: fx.Node) -> str:
        parts = node.args[0]
        dim = self.argument(node, 1, "dim", 0)
        rank = len(_shape(node) or [])
        if not isinstance(parts, list | tuple) or dim % max(rank, 1) != 1:
            raise ExportError(
                f"node {node.name}: torch.cat is supported along the channel axis (dim=1) only"
            )
        return self.add(node, "cat", [self.value(part, node) for part in parts])

    def reshape(self, node: fx.Node) -> str:
        sizes = node.args[1:]
        if len(sizes) == 1 and isinstance(sizes[0], list | tuple):
            sizes = tuple(sizes[0])
        shape = _shape(node) or []
        batch_first = len(sizes) == 2 and (sizes[0] in self.sizes or sizes[0] == shape[0])
        if not (batch_first and len(shape) == 2 and sizes[1] in (-1, shape[1])):
            raise ExportError(
                f"node {node.name} ({_describe(node)}): only reshaping to (N, -1) is supported"
            )
        return self.flatten(node, 1, -1, "")

    def mean(self, node: fx.Node) -> str:
        source = node.args[0]
        rank = len(_shape(source) or []) if isinstance(source, fx.Node) else 0
        dims = self.argument(node, 1, "dim", None)
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        keep = self.argument(node, 2, "keepdim", False)
        if rank != 4 or sorted(d % 4 for d in dims) != [2, 3]:
            raise ExportError(
                f"node {node.name}: mean is supported over the height and width of (N, C, H, W)"
            )
        shape = _shape(source) or []
        pooled = self.add(
            node,
            "adaptive_avg_pool2d",
            [self.value(source, node)],
            {"output_size": [1, 1]},
            shape=[shape[0], shape[1], 1, 1],
        )
        if keep:
            return pooled
        return self.add(node, "flatten", [pooled], name=f"{node.name}.flatten")

    def getitem(self, node: fx.Node) -> str:
        index = node.args[1]
        index = index if isinstance(index, tuple) else (index,)
        source = node.args[0]
        rank = len(_shape(source) or []) if isinstance(source, fx.Node) else 0
        if Ellipsis in index or not all(isinstance(i, slice) for i in index):
            raise ExportError(
                f"node {node.name}: indexing is supported with slices only (x[:, :, ::2, ::2])"
            )
        current = self.value(source, node)
        shape = list(_shape(source) or [])
        for axis, part in enumerate(index):
            if part == slice(None):
                continue
            if axis == 0 or axis >= rank:
                raise ExportError(f"node {node.name}: slicing the batch axis is not supported")
            start, stop, step = part.indices(shape[axis])
            if step < 1:
                raise ExportError(f"node {node.name}: negative slice steps are not supported")
            shape[axis] = len(range(start, stop, step))
            attrs = {"axis": axis, "start": start, "stop": stop, "step": step}
            current = self.add(node, "slice", [current], attrs, shape=list(shape))
        return current

    def pad(self, node: fx.Node) -> str:
        pads = list(self.argument(node, 1, "pad", []))
        mode = self.argument(node, 2, "mode", "constant")
        value = self.argument(node, 3, "value", None) or 0.0
        rank = len(_shape(node) or [])
        if mode != "constant" or len(pads) % 2 or len(pads) // 2 > rank - 1:
            raise ExportError(
                f"node {node.name}: F.pad is supported in constant mode, not on the batch axis"
            )
        attrs = {"pads": [int(p) for p in pads], "value": float(value)}
        return self.add(node, "pad", [self.first(node)], attrs)


def _function_pool(kind: str) -> Callable[[_Converter, fx.Node], str]:
    def convert(self: _Converter, node: fx.Node) -> str:
        arg = lambda i, k, d: self.argument(node, i, k, d)  # noqa: E731
        if kind == "max":
            return self.max_pool(
                node,
                node.name,
                arg(1, "kernel_size", None),
                arg(2, "stride", None),
                arg(3, "padding", 0),
                arg(4, "dilation", 1),
                arg(5, "ceil_mode", False),
                arg(6, "return_indices", False),
            )
        if kind == "avg":
            return self.avg_pool(
                node,
                node.name,
                arg(1, "kernel_size", None),
                arg(2, "stride", None),
                arg(3, "padding", 0),
                arg(4, "ceil_mode", False),
                arg(5, "count_include_pad", True),
                arg(6, "divisor_override", None),
            )
        return self.adaptive_pool(node, node.name)

    return convert


def _activation(op: str) -> Callable[[_Converter, fx.Node], str]:
    def convert(self: _Converter, node: fx.Node) -> str:
        if op == "hardtanh":
            attrs = {
                "min_val": float(self.argument(node, 1, "min_val", -1.0)),
                "max_val": float(self.argument(node, 2, "max_val", 1.0)),
                "slope": 0.0,
            }
            return self.add(node, "hardtanh", [self.first(node)], attrs)
        if op == "leaky_relu":
            attrs = {"negative_slope": float(self.argument(node, 1, "negative_slope", 0.01))}
            return self.add(node, "leaky_relu", [self.first(node)], attrs)
        return self.add(node, "relu", [self.first(node)])

    return convert


def _flatten_call(self: _Converter, node: fx.Node) -> str:
    start = self.argument(node, 1, "start_dim", 0)
    end = self.argument(node, 2, "end_dim", -1)
    return self.flatten(node, start, end, node.name)


def _softmax_call(self: _Converter, node: fx.Node) -> str:
    return self.softmax(node, self.argument(node, 1, "dim", None), node.name)


_CALLS: dict[Any, Callable[[_Converter, fx.Node], str]] = {
    operator.add: lambda self, node: self.arithmetic(node, "add"),
    operator.iadd: lambda self, node: self.arithmetic(node, "add"),
    torch.add: lambda self, node: self.arithmetic(node, "add"),
    ".add": lambda self, node: self.arithmetic(node, "add"),
    operator.sub: lambda self, node: self.arithmetic(node, "sub"),
    operator.mul: lambda self, node: self.arithmetic(node, "mul"),
    torch.mul: lambda self, node: self.arithmetic(node, "mul"),
    ".mul": lambda self, node: self.arithmetic(node, "mul"),
    operator.truediv: lambda self, node: self.arithmetic(node, "div"),
    torch.cat: _Converter.cat,
    torch.flatten: _flatten_call,
    ".flatten": _flatten_call,
    ".view": _Converter.reshape,
    ".reshape": _Converter.reshape,
    torch.reshape: _Converter.reshape,
    ".mean": _Converter.mean,
    torch.mean: _Converter.mean,
    operator.getitem: _Converter.getitem,
    F.pad: _Converter.pad,
    F.relu: _activation("relu"),
    torch.relu: _activation("relu"),
    ".relu": _activation("relu"),
    F.hardtanh: _activation("hardtanh"),
    F.leaky_relu: _activation("leaky_relu"),
    F.max_pool2d: _function_pool("max"),
    F.avg_pool2d: _function_pool("avg"),
    F.adaptive_avg_pool2d: _function_pool("adaptive"),
    F.softmax: _softmax_call,
    torch.softmax: _softmax_call,
    ".softmax": _softmax_call,
    F.dropout: lambda self, node: self.first(node),
    ".contiguous": lambda self, node: self.first(node),
}


def _flat(result: Any) -> list[Any]:
    if isinstance(result, list | tuple):
        return [item for part in result for item in _flat(part)]
    return [result]


def _counted_floats(layer: nn.Module) -> int:
    """The float values ``bnn summary`` counts for a binary layer besides its weight:
    its float parameters and persistent float buffers (binarizers' included), once each."""
    seen = {id(layer.weight)}
    total = 0
    for owner in layer.modules():
        transient = getattr(owner, "_non_persistent_buffers_set", set())
        tensors = [p for _, p in owner.named_parameters(recurse=False)]
        tensors += [b for n, b in owner.named_buffers(recurse=False) if n not in transient]
        for tensor in tensors:
            if tensor.is_floating_point() and id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel()
    return total


def _pair(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value, value]
    values = [int(v) for v in value]
    return values * 2 if len(values) == 1 else values


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().cpu().numpy().copy()


def _describe(node: fx.Node) -> str:
    """How the user wrote the call: ``torch.sigmoid``, ``torch.nn.functional.gelu``,
    ``method .sigmoid()``."""
    if node.op == "call_method":
        return f"method .{node.target}()"
    name = getattr(node.target, "__name__", None) or str(node.target)
    module = getattr(node.target, "__module__", None)
    if module is None and isinstance(node.target, types.BuiltinFunctionType):
        module = "torch" if hasattr(torch, name) else None
    return f"{module}.{name}" if module else name
