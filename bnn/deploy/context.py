"""The runtime graph under construction, and the context a lowering adds nodes through.

:class:`GraphBuilder` holds the nodes, tensors and the runtime value of each traced
``torch.fx`` node. :class:`NodeContext` is what one lowering (of a module, or of a
function call) sees: it implements :class:`bnn_core.lowering.LoweringContext`, plus
the fx-level helpers the exporter's own conversions of function calls use.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from bnn.deploy.binarizers import conv_padding, fold_binary_layer
from bnn.deploy.errors import ExportError
from bnn.deploy.lowerings import Lowerings
from bnn_core.lowering import LoweringError
from bnn_runtime.graph import Node

INPUT = "input"


def shape_of(value: Any) -> list[int] | None:
    """The batch-first shape shape propagation recorded for an fx value, if a tensor."""
    meta = value.meta.get("tensor_meta") if isinstance(value, fx.Node) else None
    return [int(d) for d in meta.shape] if meta is not None and hasattr(meta, "shape") else None


def describe(node: fx.Node) -> str:
    """How the user wrote the call: ``torch.sigmoid``, ``torch.nn.functional.gelu``,
    ``method .sigmoid()``."""
    if node.op == "call_method":
        return f"method .{node.target}()"
    name = getattr(node.target, "__name__", None) or str(node.target)
    module = getattr(node.target, "__module__", None)
    if module is None and isinstance(node.target, types.BuiltinFunctionType):
        module = "torch" if hasattr(torch, name) else None
    return f"{module}.{name}" if module else name


class GraphBuilder:
    """Runtime nodes and float64 tensors (binary weights as booleans) appended so far,
    the runtime value of each converted fx node, and the float-value accounting against
    ``bnn summary`` (see :class:`bnn.deploy.capture.Captured`)."""

    def __init__(self, lowerings: Lowerings) -> None:
        self.lowerings = lowerings
        self.nodes: list[Node] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.values: dict[fx.Node, str] = {}
        self.sizes: set[fx.Node] = set()
        self.derived: set[str] = set()
        self.added = self.merged = 0
        self.names: set[str] = {INPUT}

    def value(self, argument: Any, user: fx.Node) -> str:
        """The runtime value an fx argument of ``user`` refers to."""
        if not isinstance(argument, fx.Node) or argument not in self.values:
            raise ExportError(
                f"node {user.name} ({describe(user)}): its argument {argument!r} is not a "
                "tensor the exporter computed"
            )
        return self.values[argument]

    def append(
        self,
        base: str,
        op: str,
        inputs: Sequence[str],
        attrs: dict[str, Any],
        tensors: dict[str, np.ndarray],
        modules: list[str],
        shape: list[int] | None,
    ) -> str:
        """Append a runtime node named ``base`` (made unique) and register its tensors;
        ``shape`` is batch first. Returns its value name."""
        unique, suffix = base, 1
        while unique in self.names:
            suffix += 1
            unique = f"{base}#{suffix}"
        self.names.add(unique)
        refs = {}
        for role, array in tensors.items():
            stored = array if array.dtype == np.bool_ else np.asarray(array, dtype=np.float64)
            self.arrays[f"{unique}.{role}"] = stored
            refs[role] = f"{unique}.{role}"
        node = Node(
            name=unique,
            op=op,
            inputs=list(inputs),
            attrs=attrs,
            tensors=refs,
            shape=None if shape is None else shape[1:],
            modules=modules,
        )
        self.nodes.append(node)
        return unique


class NodeContext:
    """The lowering context of one fx node: a module call (``module`` given) or a
    function or method call. Implements :class:`bnn_core.lowering.LoweringContext`."""

    def __init__(self, builder: GraphBuilder, node: fx.Node, module: nn.Module | None) -> None:
        self.builder = builder
        self.node = node
        self.module = module
        self.name = str(node.target) if module is not None else node.name
        self.where = (
            f"layer {self.name} ({type(module).__name__})"
            if module is not None
            else f"node {node.name} ({describe(node)})"
        )

    def _tensor_arguments(self) -> list[fx.Node]:
        return [a for a in self.node.args if isinstance(a, fx.Node) and a not in self.builder.sizes]

    @property
    def inputs(self) -> list[str]:
        """The runtime values of the call's tensor arguments, in order."""
        return [self.builder.value(a, self.node) for a in self._tensor_arguments()]

    @property
    def input_shapes(self) -> list[list[int] | None]:
        """The batch-first shapes of :attr:`inputs`."""
        return [shape_of(a) for a in self._tensor_arguments()]

    @property
    def output_shape(self) -> list[int] | None:
        """The batch-first shape of the call's result."""
        return shape_of(self.node)

    def add(
        self,
        op: str,
        inputs: Sequence[str],
        attrs: dict[str, Any] | None = None,
        tensors: dict[str, np.ndarray] | None = None,
        *,
        name: str | None = None,
        shape: list[int] | None = None,
    ) -> str:
        """Append a runtime node computing part of this call (see the protocol)."""
        return self.builder.append(
            name or self.name,
            op,
            inputs,
            attrs or {},
            tensors or {},
            [self.name] if self.module is not None else [],
            shape if shape is not None else self.output_shape,
        )

    def binary(self, layer: nn.Module) -> str:
        """Lower binary ``layer`` to a packed binary node (see the protocol)."""
        fold = fold_binary_layer(self.name, layer, self.builder.lowerings)
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
        self.builder.added += max(stored - counted, 0)
        self.builder.merged += max(counted - stored, 0)
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
            if len(self.output_shape or []) != 2:
                raise LoweringError("runs on (N, features) only")
            op = "binary_linear"
            attrs = {"in_features": layer.in_features, "out_features": layer.out_features}
        result = self.add(op, [self.first()], attrs, tensors)
        if fold.spatial is None:
            if fold.derived_scale:
                self.builder.derived.add(result)
            return result
        rows, cols = fold.spatial
        tensors = {"rows": rows, "cols": cols}
        return self.add("spatial_scale", [result], {}, tensors, name=f"{self.name}.spatial_scale")

    def first(self) -> str:
        """The runtime value of the call's first argument."""
        return self.value(self.node.args[0])

    def value(self, argument: Any) -> str:
        """The runtime value of an fx argument of this call."""
        return self.builder.value(argument, self.node)

    def argument(self, index: int, keyword: str, default: Any) -> Any:
        """The call's argument at ``index`` or named ``keyword``, else ``default``."""
        if len(self.node.args) > index:
            return self.node.args[index]
        return self.node.kwargs.get(keyword, default)


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
