"""Run a ``.bnnpack`` network with NumPy and the packed XNOR-popcount kernels, without
PyTorch: :func:`load` reads and checks the file, plans each node once, and the
returned :class:`Network` maps NCHW float32 arrays to outputs.

Planning converts what the file stores into what each step computes with: binary
weights into prepared kernel layers (:mod:`bnn_runtime.layers`), float convolution
weights into im2col matrices (:mod:`bnn_runtime.steps`), int8 layers' scales into
their factors (:mod:`bnn_runtime.int8_steps`), float16 tensors into float32.
Where a binary layer's only consumer is another binary layer, the first one emits
packed bits (thresholded with the second one's input threshold) and the second one
reads them, so the float activation between them is never materialised; and a
shortcut addition and PReLU after a binary convolution run inside it
(:mod:`bnn_runtime.fusion`). While a network runs, OpenBLAS stays on one thread
(:mod:`bnn_runtime.blas`); large float operations are split across threads by
:mod:`bnn_runtime.parallel` instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnn_runtime import blas, float_ops, fusion, int8_steps, kernels, layers, reference, validate
from bnn_runtime.errors import RuntimeFormatError, RuntimeInputError
from bnn_runtime.format import BitTensor, Pack, read
from bnn_runtime.graph import OPS, Graph, Node
from bnn_runtime.steps import PLANNERS, Step


@dataclass(frozen=True)
class NodeTiming:
    """Wall time of one node in one call."""

    name: str
    op: str
    seconds: float


class Network:
    """A loaded network. Call it with a float32 array shaped like the exported input
    (``[N, C, H, W]``, channels first as in PyTorch; another height and width work when
    the network allows them); it returns the output array (a tuple when the network has
    several), channels first again for 4-D outputs. :meth:`run` also times each node."""

    def __init__(self, pack: Pack, threads: int | None = None) -> None:
        self.path = pack.path
        self.graph = pack.graph
        self.metadata = pack.metadata
        self.file_bytes = pack.file_bytes
        self._threads = threads
        self._float_threads = threads or kernels.default_threads()
        self._specs, self._shapes = pack.specs, pack.shapes
        self._runs_on = {tuple(pack.graph.input_shape)}
        self._packed_outputs, self._packed_inputs = _packed_edges(pack.graph)
        self._epilogues = fusion.epilogues(pack.graph, set(self._packed_outputs))
        self._fused_into = {
            absorbed.name: conv
            for conv, epilogue in self._epilogues.items()
            for absorbed in epilogue.absorbed
        }
        steps = [
            self._plan(node, pack.tensors)
            for node in pack.graph.nodes
            if node.name not in self._fused_into
        ]
        self._schedule, self._outputs = _schedule(pack.graph, steps, self._fused_into)

    @property
    def threads(self) -> int | None:
        """Threads of the binary kernels and of the banded float operations (``None``:
        the kernels' default)."""
        return self._threads

    @property
    def input_shape(self) -> list[int]:
        """One sample's shape at export (channels first, no batch axis)."""
        return list(self.graph.input_shape)

    @property
    def tensor_elements(self) -> int:
        """Values stored in the file's tensors (a binary weight counts one), the number
        of parameters of the network it holds give or take folded batch norms."""
        return sum(math.prod(shape) for _, shape in self._specs.values())

    @property
    def nodes(self) -> list[Node]:
        """The nodes in execution order."""
        return list(self.graph.nodes)

    def packed_edges(self) -> list[tuple[str, str]]:
        """Pairs of binary nodes connected by packed bits instead of floats."""
        return [(source, self._packed_outputs[source]) for source in self._packed_outputs]

    def fused_into(self) -> dict[str, str]:
        """Nodes computed inside a binary convolution (a shortcut addition, a PReLU) ->
        that convolution; they have no step of their own."""
        return dict(self._fused_into)

    def __call__(self, x: np.ndarray) -> Any:
        outputs, _ = self.run(x)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def run(
        self, x: np.ndarray, profile: bool = False
    ) -> tuple[list[np.ndarray], list[NodeTiming]]:
        """The outputs for ``x`` and, with ``profile``, the wall time of every node that
        runs (not of those fused into a convolution, see :meth:`fused_into`)."""
        values: dict[str, np.ndarray] = {self.graph.input_name: self._prepare(x)}
        timings: list[NodeTiming] = []
        clock = time.perf_counter
        with blas.limited(1):
            for node, sources, step, reuse, done in self._schedule:
                start = clock() if profile else 0.0
                values[node.name] = step([values[source] for source in sources], reuse)
                if profile:
                    timings.append(NodeTiming(node.name, node.op, clock() - start))
                for source in done:
                    del values[source]
        outputs = [values[name] for name in self._outputs]
        return [
            float_ops.channels_first(y, self._float_threads) if y.ndim == 4 else y for y in outputs
        ], timings

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        expected = self.graph.input_shape
        if x.ndim != len(expected) + 1 or x.shape[1] != expected[0]:
            raise RuntimeInputError(
                f"the network takes input of shape [N, {', '.join(map(str, expected))}] "
                f"(channels first), got {list(x.shape)}"
            )
        if not np.issubdtype(x.dtype, np.floating):
            raise RuntimeInputError(f"the network takes float32 input, got {x.dtype}")
        if x.shape[0] < 1:
            raise RuntimeInputError(f"the input holds no sample: its shape is {list(x.shape)}")
        sample = tuple(x.shape[1:])
        if sample not in self._runs_on:
            validate.check_call(self.graph, self._specs, sample)
            self._runs_on.add(sample)
        if x.ndim == 4:
            return float_ops.channels_last(x, self._float_threads)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _plan(self, node: Node, tensors: dict[str, Any]) -> tuple[Node, list[str], Step]:
        """The node, the values its step reads and the step."""
        epilogue = self._epilogues.get(node.name)
        sources = list(node.inputs)
        if epilogue is not None and epilogue.residual is not None:
            sources.append(epilogue.residual)
        try:
            if OPS[node.op].binary:
                step = self._binary(node, tensors[node.tensors["weight"]], tensors, epilogue)
            elif node.op in int8_steps.PLANNERS:
                weight = tensors[node.tensors["weight"]]
                floats = self._floats(node, tensors)
                planner = int8_steps.PLANNERS[node.op]
                step = planner(node.attrs, weight, floats, self._float_threads)
            else:
                planner = PLANNERS[node.op]
                step = planner(node.attrs, self._floats(node, tensors), self._float_threads)
        except KeyError as exc:
            raise RuntimeFormatError(f"node {node.name!r} ({node.op}): {exc} is missing") from None
        return node, sources, step

    def _binary(
        self,
        node: Node,
        weight: Any,
        tensors: dict[str, Any],
        epilogue: fusion.Epilogue | None,
    ) -> Step:
        floats = self._floats(node, tensors)
        if not isinstance(weight, BitTensor):
            raise RuntimeFormatError(f"node {node.name!r}: its weight is not stored as bits")
        attrs = node.attrs
        out_channels = attrs["out_channels" if node.op == "binary_conv2d" else "out_features"]
        scale = floats("scale")
        bias = floats("bias")
        scale = np.ones(out_channels, np.float32) if scale is None else scale
        bias = np.zeros(out_channels, np.float32) if bias is None else bias
        threshold = None if node.name in self._packed_inputs else floats("threshold")
        consumer = self._packed_outputs.get(node.name)
        output = "float" if consumer is None else "packed"
        next_threshold = None
        if consumer is not None:
            name = self.graph.node(consumer).tensors.get("threshold")
            next_threshold = None if name is None else np.array(tensors[name], dtype=np.float32)
        words = weight.words()
        common = {
            "scale": scale,
            "bias": bias,
            "input_threshold": threshold,
            "output": output,
            "next_threshold": next_threshold,
            "threads": self.threads,
        }
        if node.op == "binary_linear":
            return _single(layers.BinaryLinear(words, in_features=attrs["in_features"], **common))
        conv = {
            "in_channels": attrs["in_channels"],
            "kernel_size": tuple(attrs["kernel_size"]),
            "stride": tuple(attrs["stride"]),
            "padding": tuple(attrs["padding"]),
            "pad_value": attrs["pad_value"],
            "groups": attrs["groups"],
            **common,
        }
        if epilogue is None:
            return _single(layers.BinaryConv2d(words, **conv))
        activation = {}
        if epilogue.activation is not None:
            act = self._floats(epilogue.activation, tensors)
            activation = {
                role: None if act(role) is None else np.broadcast_to(act(role), out_channels)
                for role in ("slope", "shift_in", "shift_out")
            }
        return _fused(words, conv, activation, epilogue.residual is not None)

    def _floats(self, node: Node, tensors: dict[str, Any]) -> Callable[[str], np.ndarray | None]:
        """A getter of the node's tensors by role, as float32 arrays (None when absent).
        A per-channel vector must have exactly the channels of the node's input
        (``threshold``) or output (the others; a PReLU slope may also be one value for
        every channel): it is never broadcast from a shorter one."""
        inputs, output = self._shapes[node.inputs[0]][0], self._shapes[node.name][0]
        sizes = {"threshold": (inputs,), "slope": (output, 1)}

        def floats(role: str) -> np.ndarray | None:
            name = node.tensors.get(role)
            if name is None:
                return None
            value = np.array(tensors[name], dtype=np.float32)
            allowed = sizes.get(role, (output,))
            if role not in _MATRICES and (value.ndim != 1 or value.size not in allowed):
                raise RuntimeFormatError(
                    f"node {node.name!r} ({node.op}): tensor {role!r} must hold "
                    f"{' or '.join(map(str, allowed))} values, got shape {list(value.shape)}"
                )
            return value

        return floats


#: Tensor roles that are not per-channel vectors (their shapes are checked whole by
#: :mod:`bnn_runtime.validate`).
_MATRICES = frozenset({"weight", "rows", "cols"})


def _single(layer: Callable[[np.ndarray], np.ndarray]) -> Step:
    """A step calling a prepared kernel layer on the node's one input."""
    return lambda inputs, reuse: layer(inputs[0])


def _fused(
    words: np.ndarray, conv: dict[str, Any], activation: dict[str, Any], residual: bool
) -> Step:
    """A binary convolution that also adds its residual (the step's second input) and
    applies ``activation`` (slope and shifts). A residual that only broadcasts to the
    output (never the case in the zoo's blocks) is added separately, by a second layer
    without the activation that is prepared when first needed."""
    layer = layers.BinaryConv2d(words, **conv, **activation)
    plain: list[layers.BinaryConv2d] = []

    def step(inputs: list[np.ndarray], reuse: bool) -> np.ndarray:
        x = inputs[0]
        shortcut = inputs[1] if residual else None
        shape = (x.shape[0], *layer.output_size(x.shape[1], x.shape[2]), layer.out_channels)
        if shortcut is None or shortcut.shape == shape:
            return layer(x, shortcut)
        if not plain:
            plain.append(layers.BinaryConv2d(words, **conv))
        y = plain[0](x) + shortcut
        return reference.finish(y, None, layer.slope, layer.shift_in, layer.shift_out)

    return step


def load(path: str | Path, threads: int | None = None) -> Network:
    """Read, check and plan the network in ``path``; ``threads`` is the thread count of
    the binary kernels and of large float operations (``None``: the kernels' default,
    ``BNN_RUNTIME_THREADS``, ``OMP_NUM_THREADS`` or all cores). A damaged or foreign
    file raises :class:`~bnn_runtime.errors.RuntimeFormatError`."""
    return Network(read(path), threads=threads)


def _packed_edges(graph: Graph) -> tuple[dict[str, str], set[str]]:
    """Binary nodes whose single consumer is a binary node reading them directly:
    producer -> consumer, and the set of consumers."""
    users = graph.consumers()
    producers: dict[str, str] = {}
    for node in graph.nodes:
        readers = users.get(node.name, [])
        if (
            OPS[node.op].binary
            and node.name not in graph.outputs
            and len(readers) == 1
            and OPS[readers[0].op].binary
            and readers[0].op == node.op
        ):
            producers[node.name] = readers[0].name
    return producers, set(producers.values())


def _schedule(
    graph: Graph, steps: list[tuple[Node, list[str], Step]], fused_into: dict[str, str]
) -> tuple[list[tuple[Node, list[str], Step, bool, list[str]]], list[str]]:
    """The planned steps in order, each with the values it reads, whether it may
    overwrite the first of them (no later step reads it and it is not the network's
    input) and the values it reads last, freed once it has run; and the values holding
    the graph's outputs (never freed). A node fused into a convolution has no step: its
    name stands for the convolution's output, which it would have passed on."""
    alias: dict[str, str] = {}
    for node in graph.nodes:
        if node.name in fused_into:
            conv = fused_into[node.name]
            source = conv if conv in node.inputs else node.inputs[0]
            alias[node.name] = alias.get(source, source)
    resolved = [(node, [alias.get(s, s) for s in sources], step) for node, sources, step in steps]
    outputs = [alias.get(name, name) for name in graph.outputs]
    last: dict[str, int] = {}
    for index, (_, sources, _) in enumerate(resolved):
        for source in sources:
            last[source] = index
    for name in outputs:
        last.pop(name, None)
    schedule = []
    for index, (node, sources, step) in enumerate(resolved):
        first = sources[0]
        reuse = first != graph.input_name and last.get(first) == index
        done = list(dict.fromkeys(s for s in sources if last.get(s) == index))
        schedule.append((node, sources, step, reuse, done))
    return schedule, outputs
