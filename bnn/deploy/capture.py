"""Capture a (binarized) PyTorch model as a runtime :class:`~bnn_runtime.graph.Graph`.

The model is traced with ``torch.fx`` in eval mode: every module with a registered
module lowering (binary layers, PyTorch's layers, the blocks plugins register) is a
leaf, as are PyTorch's own layers; other modules are traced through. One
shape-propagation pass records every value's shape. Each leaf module then goes through
its lowering (:mod:`bnn.deploy.lowerings`) and each function call through
:mod:`bnn.deploy.calls`, giving runtime nodes with float64 tensors (binary weights as
booleans); anything the runtime cannot execute raises an :class:`ExportError` naming
the layer or node and the reason.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from bnn.deploy.calls import CALLS, SUPPORTED_FUNCTIONS
from bnn.deploy.context import INPUT, GraphBuilder, NodeContext, shape_of
from bnn.deploy.errors import ExportError
from bnn.deploy.lowerings import Lowerings, missing_module_lowering
from bnn_core.lowering import LoweringError
from bnn_runtime.graph import Graph


class _Tracer(fx.Tracer):
    """Keeps every module with a module lowering as a leaf (one node each)."""

    def __init__(self, lowerings: Lowerings) -> None:
        super().__init__()
        self.lowerings = lowerings

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self.lowerings.module(type(m)) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)


@dataclass
class Captured:
    """A captured graph with its float64 tensors (binary weights as booleans), and which
    binary nodes carry a scale derived from their weights alone (not a stored parameter).

    ``added`` and ``merged`` count float values against what ``bnn summary`` counts
    for the model (every float parameter and persistent buffer): values stored that it
    does not count (derived weight scales), and values it counts that folding merged
    away. The float part of the file holds ``counted + added - merged`` values."""

    graph: Graph
    arrays: dict[str, np.ndarray]
    derived_scales: set[str] = field(default_factory=set)
    added: int = 0
    merged: int = 0


def trace(model: nn.Module, lowerings: Lowerings | None = None) -> fx.GraphModule:
    """``model`` as a ``torch.fx.GraphModule`` sharing its modules."""
    try:
        graph = _Tracer(lowerings or Lowerings()).trace(model)
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
    lowerings = Lowerings()
    try:
        module = trace(model, lowerings)
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
        return _Converter(module, lowerings).convert()
    finally:
        for submodule, training in modes.items():
            submodule.training = training


class _Converter:
    """Walks the traced graph, turning each fx node into runtime nodes."""

    def __init__(self, module: fx.GraphModule, lowerings: Lowerings) -> None:
        self.module = module
        self.builder = GraphBuilder(lowerings)

    def convert(self) -> Captured:
        outputs: list[str] = []
        input_shape: list[int] | None = None
        builder = self.builder
        for node in self.module.graph.nodes:
            if node.op == "placeholder":
                if input_shape is not None:
                    raise ExportError(
                        f"the model takes several inputs ({node.name} is the second); the "
                        "packed runtime runs networks with one input tensor"
                    )
                input_shape = (shape_of(node) or [0])[1:]
                builder.values[node] = INPUT
            elif node.op == "output":
                outputs = [builder.value(result, node) for result in _flat(node.args[0])]
            elif node.op == "get_attr":
                raise ExportError(
                    f"node {node.name}: the forward pass reads the tensor {node.target!r} "
                    "directly; the exporter handles tensors held by supported layers only"
                )
            elif node.op == "call_method" and node.target == "size":
                builder.sizes.add(node)
            else:
                builder.values[node] = self.convert_call(node)
        graph = Graph(INPUT, input_shape or [], builder.nodes, outputs)
        return Captured(graph, builder.arrays, builder.derived, builder.added, builder.merged)

    def convert_call(self, node: fx.Node) -> str:
        """The runtime value of a module, function or method call."""
        ctx, conversion = self.conversion(node)
        try:
            result = conversion(ctx)
        except LoweringError as exc:
            raise ExportError(f"{ctx.where}: {exc}") from None
        if not isinstance(result, str) or result not in self.builder.names:
            raise ExportError(
                f"{ctx.where}: its lowering returned {result!r}, not the name of a value "
                "it or an earlier node computed"
            )
        return result

    def conversion(self, node: fx.Node) -> tuple[NodeContext, Callable[[NodeContext], str]]:
        """The context of a call and what converts it: the registered lowering of a
        module, the exporter's conversion of a function or method."""
        lowerings = self.builder.lowerings
        if node.op == "call_module":
            module = self.module.get_submodule(str(node.target))
            ctx = NodeContext(self.builder, node, module)
            lowering = lowerings.module(type(module))
            if lowering is None:
                raise ExportError(missing_module_lowering(ctx.where, module, lowerings))
            return ctx, lambda context: lowering(context, module)
        ctx = NodeContext(self.builder, node, None)
        key = node.target if node.op == "call_function" else f".{node.target}"
        handler = CALLS.get(key)  # type: ignore[call-overload]
        if handler is None:
            raise ExportError(
                f"{ctx.where} is not supported by the packed runtime. "
                f"Supported functions: {SUPPORTED_FUNCTIONS}"
            )
        return ctx, handler


def _flat(result: Any) -> list[Any]:
    if isinstance(result, list | tuple):
        return [item for part in result for item in _flat(part)]
    return [result]
