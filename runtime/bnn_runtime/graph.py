"""The network graph a ``.bnnpack`` file holds: nodes in execution order, each an
operation with named inputs, attributes and references to stored tensors.

This module is shared by the exporter (which builds a :class:`Graph` from a traced
PyTorch model) and the runtime (which reads one back and checks it before running
anything), so both agree on what every operation takes. It imports neither torch nor
NumPy. Shapes follow PyTorch's convention (channels first, one sample, no batch axis)
whatever layout the runtime uses internally.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bnn_runtime.errors import RuntimeFormatError


@dataclass(frozen=True)
class OpSpec:
    """What one operation takes: its number of inputs (``None``: one or more), the
    attributes it requires, and the tensors it requires or may have."""

    inputs: int | None
    attrs: frozenset[str] = frozenset()
    tensors: frozenset[str] = frozenset()
    optional_tensors: frozenset[str] = frozenset()
    binary: bool = False


def _spec(
    inputs: int | None,
    attrs: Iterable[str] = (),
    tensors: Iterable[str] = (),
    optional: Iterable[str] = (),
    binary: bool = False,
) -> OpSpec:
    return OpSpec(inputs, frozenset(attrs), frozenset(tensors), frozenset(optional), binary)


_CONV = ("kernel_size", "stride", "padding", "groups", "in_channels", "out_channels")
_POOL = ("kernel_size", "stride", "padding", "ceil_mode")
_QUANTIZED = ("input_scale", "input_zero_point")

#: Every operation of format version 1 (docs/deploy.md describes each one); ``qconv2d``
#: and ``qlinear`` are ``conv2d`` and ``linear`` with int8 weights and a quantized input
#: (:mod:`bnn_runtime.int8_reference` defines their arithmetic).
OPS: dict[str, OpSpec] = {
    "conv2d": _spec(1, (*_CONV, "dilation"), ["weight"], ["bias"]),
    "linear": _spec(1, ["in_features", "out_features"], ["weight"], ["bias"]),
    "qconv2d": _spec(1, (*_CONV, "dilation", *_QUANTIZED), ["weight", "weight_scale"], ["bias"]),
    "qlinear": _spec(
        1, ["in_features", "out_features", *_QUANTIZED], ["weight", "weight_scale"], ["bias"]
    ),
    "binary_conv2d": _spec(
        1, (*_CONV, "pad_value"), ["weight"], ["scale", "bias", "threshold"], binary=True
    ),
    "binary_linear": _spec(
        1, ["in_features", "out_features"], ["weight"], ["scale", "bias", "threshold"], True
    ),
    "channel_affine": _spec(1, (), (), ["scale", "shift"]),
    "spatial_scale": _spec(1, (), ["rows", "cols"]),
    "prelu": _spec(1, (), ["slope"]),
    "rprelu": _spec(1, (), ["shift_in", "slope", "shift_out"]),
    "relu": _spec(1),
    "leaky_relu": _spec(1, ["negative_slope"]),
    "hardtanh": _spec(1, ["min_val", "max_val", "slope"]),
    "scalar": _spec(1, ["mul", "add"]),
    "softmax": _spec(1),
    "max_pool2d": _spec(1, _POOL),
    "avg_pool2d": _spec(1, (*_POOL, "count_include_pad", "divisor")),
    "adaptive_avg_pool2d": _spec(1, ["output_size"]),
    "add": _spec(2),
    "cat": _spec(None),
    "flatten": _spec(1),
    "slice": _spec(1, ["axis", "start", "stop", "step"]),
    "pad": _spec(1, ["pads", "value"]),
}


@dataclass
class Node:
    """One operation: ``inputs`` name graph inputs or earlier nodes; ``tensors`` maps a
    role (``weight``, ``scale``, ...) to a stored tensor's name; ``shape`` is the output
    shape of one sample (channels first); ``modules`` names the PyTorch modules the
    node computes (a binary layer and the batch norm folded into it, for example)."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, str] = field(default_factory=dict)
    shape: list[int] | None = None
    modules: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the file header."""
        return {
            "name": self.name,
            "op": self.op,
            "inputs": list(self.inputs),
            "attrs": dict(self.attrs),
            "tensors": dict(self.tensors),
            "shape": self.shape,
            "modules": list(self.modules),
        }


def reference_problem(
    node: Node, defined: Container[str], stored: Container[str] | None
) -> str | None:
    """Why ``node`` does not fit where it stands, or None: an unknown operation, a name
    already ``defined``, the wrong number of inputs, an input not ``defined`` before it, a
    required attribute or tensor role missing, an unknown role, or (when ``stored`` is
    given) a referenced tensor not stored."""
    spec = OPS.get(node.op)
    if spec is None:
        return f"unknown operation; this runtime executes {', '.join(sorted(OPS))}"
    if node.name in defined:
        return "the name is defined twice"
    count = len(node.inputs)
    if (spec.inputs is None and count < 1) or (spec.inputs is not None and count != spec.inputs):
        return f"takes {spec.inputs or 'one or more'} input(s), has {count}"
    for source in node.inputs:
        if source not in defined:
            return f"input {source!r} is not defined before it"
    missing = sorted(spec.attrs - node.attrs.keys())
    if missing:
        return f"missing attribute(s) {', '.join(missing)}"
    roles = set(node.tensors)
    absent = sorted(spec.tensors - roles)
    if absent:
        return f"tensor(s) {', '.join(absent)} missing"
    unknown = sorted(roles - spec.tensors - spec.optional_tensors)
    if unknown:
        return f"unknown tensor role(s) {', '.join(unknown)}"
    if stored is not None:
        for role, tensor in node.tensors.items():
            if tensor not in stored:
                return f"its {role} tensor {tensor!r} is not stored in the file"
    return None


@dataclass
class Graph:
    """A network: one input (name and per-sample shape), nodes in execution order, and
    the names of the values it returns."""

    input_name: str
    input_shape: list[int]
    nodes: list[Node]
    outputs: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the file header."""
        return {
            "inputs": [{"name": self.input_name, "shape": self.input_shape, "dtype": "float32"}],
            "outputs": list(self.outputs),
            "nodes": [node.to_dict() for node in self.nodes],
        }

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def consumers(self) -> dict[str, list[Node]]:
        """For each value name, the nodes that read it (in order, repeated per use)."""
        users: dict[str, list[Node]] = {self.input_name: []}
        for node in self.nodes:
            users.setdefault(node.name, [])
            for source in node.inputs:
                users.setdefault(source, []).append(node)
        return users

    def check(self, tensor_names: Iterable[str] | None = None) -> None:
        """Raise :class:`RuntimeFormatError` unless every node is a known operation with
        its inputs defined before it, its required attributes and tensors present, and
        (when ``tensor_names`` is given) every referenced tensor stored."""
        stored = None if tensor_names is None else set(tensor_names)
        defined = {self.input_name}
        for node in self.nodes:
            problem = reference_problem(node, defined, stored)
            if problem is not None:
                raise RuntimeFormatError(f"node {node.name!r} ({node.op}): {problem}")
            defined.add(node.name)
        for output in self.outputs:
            if output not in defined:
                raise RuntimeFormatError(f"graph output {output!r} is not defined")
        if not self.outputs:
            raise RuntimeFormatError("the graph has no output")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Graph:
        """Read the JSON form back, every field of exactly its type (names are strings,
        shapes lists of ints, ...); a malformed one is a :class:`RuntimeFormatError`
        naming the field."""
        inputs = _field(data, "inputs", list, "the graph")
        if len(inputs) != 1:
            raise RuntimeFormatError(
                f"the graph must have exactly one input, the header lists {len(inputs)}"
            )
        graph_input = _mapping(inputs[0], "the graph input")
        dtype = graph_input.get("dtype", "float32")
        if dtype != "float32":
            raise RuntimeFormatError(f"the graph input must be float32, the header says {dtype!r}")
        nodes = []
        for index, item in enumerate(_field(data, "nodes", list, "the graph")):
            item = _mapping(item, f"node #{index}")
            where = f"node #{index}"
            name = _field(item, "name", str, where)
            where = f"node {name!r}"
            shape = item.get("shape")
            nodes.append(
                Node(
                    name=name,
                    op=_field(item, "op", str, where),
                    inputs=_strings(_field(item, "inputs", list, where), f"{where}: 'inputs'"),
                    attrs=dict(_field(item, "attrs", dict, where, {})),
                    tensors=_string_map(_field(item, "tensors", dict, where, {}), where),
                    shape=None if shape is None else _ints(shape, f"{where}: 'shape'"),
                    modules=_strings(
                        _field(item, "modules", list, where, []), f"{where}: 'modules'"
                    ),
                )
            )
        return cls(
            input_name=_field(graph_input, "name", str, "the graph input"),
            input_shape=_ints(
                _field(graph_input, "shape", list, "the graph input"), "the graph input's 'shape'"
            ),
            nodes=nodes,
            outputs=_strings(_field(data, "outputs", list, "the graph"), "the graph's 'outputs'"),
        )


_TYPE_NAMES = {list: "a list", dict: "an object", str: "a string"}


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RuntimeFormatError(
            f"the header's {where} must be an object, got {type(value).__name__}"
        )
    return value


def _field(item: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    """``item[key]`` when it is of ``kind`` (``default`` when absent and one is given)."""
    if key not in item and default is not None:
        return default
    if key not in item:
        raise RuntimeFormatError(f"the header's {where} lacks its {key!r} field")
    value = item[key]
    if type(value) is not kind:
        raise RuntimeFormatError(
            f"the header's {where}: {key!r} must be {_TYPE_NAMES[kind]}, got {type(value).__name__}"
        )
    return value


def _strings(values: list[Any], where: str) -> list[str]:
    if not all(type(v) is str for v in values):
        raise RuntimeFormatError(f"the header's {where} must be a list of strings")
    return list(values)


def _string_map(values: dict[str, Any], where: str) -> dict[str, str]:
    if not all(type(v) is str for v in values.values()):
        raise RuntimeFormatError(f"the header's {where}: 'tensors' must map roles to tensor names")
    return dict(values)


def _ints(values: Any, where: str) -> list[int]:
    if type(values) is not list or not all(type(v) is int for v in values):
        raise RuntimeFormatError(f"the header's {where} must be a list of ints")
    return list(values)
