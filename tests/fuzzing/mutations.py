"""Structure-aware mutations of a ``.bnnpack`` file, for the fuzzer in
:mod:`tests.fuzzing.bnnpack`.

A file is split into its JSON header (a dict, edited in place) and its data section (a
bytearray), mutated by one to three structured edits chosen by a seeded
:class:`random.Random`, and written back with a correct preamble and SHA-256 trailer
(``tests/bnnpack_edit.py``), so every edit reaches the header and graph checks instead
of stopping at the checksum. Some edits are plausible (an attribute off by one, a
weight one channel short with its bytes present, an input rewired to an earlier node),
to reach the checks that compare shapes across the graph; others are hostile (boundary integers,
NaN, strings, nulls, nested or huge values). Raw edits (truncation, byte flips,
preamble fields) then act on the written bytes, with and without a recomputed
checksum. Each edit returns a one-line description; a case's description lists them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnn_runtime.format import ALIGNMENT, DIGEST_BYTES
from bnn_runtime.graph import OPS
from tests.bnnpack_edit import PREAMBLE, read_parts, write_parts

#: Tensors whose edited shape would need more bytes than this are not regenerated.
MAX_NEW_ELEMENTS = 1 << 20
#: Nesting depth of the deeply nested JSON value (deeper than Python's recursion limit).
DEEP_NESTING = 100_000
#: Stands in for the nested value in the header until the file is written: a JSON
#: string exactly as long as the nested list, which then replaces it in place.
_DEEP_MARK = "~" * (2 * DEEP_NESTING - 2)

NAN, INF = float("nan"), float("inf")
#: Boundary and wrong-typed JSON values put where the format expects something else.
HOSTILE: list[Any] = [
    0, -1, 1, 2, 3, 2**31 - 1, 2**31, -(2**31), 2**32, 2**63 - 1, 2**63, -(2**63), 2**64,
    10**30, 1e30, -1e30, 0.5, -0.0, NAN, INF, -INF, "x", "", "3", None, True, False,
    [], [1], [1, 2, 3], [0, 0], [-1, -1], [2**31, 2**31], [2**63, 1], [[1]], [NAN, NAN],
    ["x", "y"], [None], {}, {"a": {"b": {"c": []}}}, {"0": 1},
]  # fmt: skip


def hostile(rng: random.Random) -> Any:
    """A value from :data:`HOSTILE`, or now and then a huge list."""
    if rng.random() < 0.04:
        return [rng.choice([0, 1, 2**31])] * rng.choice([1000, 100_000])
    return copy.deepcopy(rng.choice(HOSTILE))


def nudge(rng: random.Random, value: Any) -> Any:
    """A plausible neighbour of ``value``: an integer off by a little, a float scaled,
    one element of a list nudged, dropped or repeated."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, value * 2, value + rng.randint(2, 9), 0, -1])
    if isinstance(value, float):
        return rng.choice([value * 2, -value, 0.0, value + 1.0, value * 1e-3])
    if isinstance(value, list) and value:
        items = list(value)
        index = rng.randrange(len(items))
        action = rng.random()
        if action < 0.7:
            items[index] = nudge(rng, items[index])
        elif action < 0.85:
            del items[index]
        else:
            items.insert(index, items[index])
        return items
    if isinstance(value, str):
        return rng.choice([value + "x", value.upper(), ""])
    return hostile(rng)


@dataclass
class Parts:
    """A file split for editing: its JSON header and its data section."""

    header: Any
    data: bytearray

    def copy(self) -> Parts:
        """An independent copy."""
        return Parts(copy.deepcopy(self.header), bytearray(self.data))


def read_seed(path: Path) -> Parts:
    """Split a well-formed file into header and data section."""
    header, data = read_parts(path)
    return Parts(header, bytearray(data))


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def rechecksum(raw: bytes) -> bytes:
    """``raw`` with its last 32 bytes replaced by the SHA-256 of the rest."""
    body = raw[:-DIGEST_BYTES] if len(raw) > DIGEST_BYTES else raw
    return body + hashlib.sha256(body).digest()


# Accessors that tolerate a header already damaged by an earlier edit.


def _dict(value: Any, key: str) -> dict[str, Any]:
    item = value.get(key) if isinstance(value, dict) else None
    return item if isinstance(item, dict) else {}


def _nodes(parts: Parts) -> list[dict[str, Any]]:
    nodes = _dict(parts.header, "graph").get("nodes")
    return [n for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []


def _tensors(parts: Parts) -> dict[str, Any]:
    return _dict(parts.header, "tensors")


def _name(node: dict[str, Any]) -> str:
    return repr(node.get("name"))


# Structured edits: each returns a description, or None where it does not apply.

Edit = Callable[[random.Random, Parts], "str | None"]


def edit_attribute(rng: random.Random, parts: Parts) -> str | None:
    """An attribute of a node nudged or set to a hostile value."""
    nodes = [n for n in _nodes(parts) if isinstance(n.get("attrs"), dict) and n["attrs"]]
    if not nodes:
        return None
    node = rng.choice(nodes)
    key = rng.choice(sorted(node["attrs"]))
    old = node["attrs"][key]
    new = nudge(rng, old) if rng.random() < 0.5 else hostile(rng)
    node["attrs"][key] = new
    return f"node {_name(node)} attr {key}: {_short(old)} -> {_short(new)}"


def drop_or_add_attribute(rng: random.Random, parts: Parts) -> str | None:
    """An attribute of a node deleted, or one added with a hostile value."""
    nodes = [n for n in _nodes(parts) if isinstance(n.get("attrs"), dict)]
    if not nodes:
        return None
    node = rng.choice(nodes)
    if node["attrs"] and rng.random() < 0.6:
        key = rng.choice(sorted(node["attrs"]))
        del node["attrs"][key]
        return f"node {_name(node)}: attr {key} deleted"
    key = rng.choice(["groups", "stride", "kernel_size", "unknown", "padding", "axis"])
    value = hostile(rng)
    node["attrs"][key] = value
    return f"node {_name(node)}: attr {key} set to {_short(value)}"


def replace_attributes(rng: random.Random, parts: Parts) -> str | None:
    """A node's whole attribute object replaced by a hostile value."""
    nodes = _nodes(parts)
    if not nodes:
        return None
    node = rng.choice(nodes)
    value = hostile(rng)
    node["attrs"] = value
    return f"node {_name(node)}: attrs replaced by {_short(value)}"


#: The tensor dtypes of the format, which retyping and refilling draw from.
DTYPES = ("bits", "int8", "float16", "float32")


def _float_data(rng: random.Random, dtype: str, count: int) -> bytes:
    generator = np.random.default_rng(rng.getrandbits(32))
    if dtype == "bits":
        return generator.integers(0, 256, (count + 7) // 8, dtype=np.uint8).tobytes()
    if dtype == "int8":
        return generator.integers(-128, 128, count, dtype=np.int8).tobytes()
    values = generator.standard_normal(count).astype("<f2" if dtype == "float16" else "<f4")
    return values.tobytes()


def _append_blob(parts: Parts, blob: bytes) -> int:
    """Append ``blob`` to the data section at an aligned offset; returns the offset."""
    offset = _aligned(len(parts.data))
    parts.data.extend(bytes(offset - len(parts.data)))
    parts.data.extend(blob)
    return offset


def _nbytes(dtype: str, count: int) -> int:
    if dtype == "bits":
        return (count + 7) // 8
    return count * {"int8": 1, "float16": 2}.get(dtype, 4)


def _valid_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("dtype") in DTYPES
        and isinstance(entry.get("shape"), list)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in entry["shape"])
    )


def resize_tensor(rng: random.Random, parts: Parts) -> str | None:
    """A new shape with the bytes it needs (fresh values appended to the data
    section), so the entry is self-consistent and only the graph's shapes disagree."""
    tensors = {k: v for k, v in _tensors(parts).items() if _valid_entry(v)}
    if not tensors:
        return None
    name = rng.choice(sorted(tensors))
    entry = tensors[name]
    old = list(entry["shape"])
    shape = list(old)
    action = rng.choice(["nudge", "nudge", "nudge", "extra", "drop", "zero", "scalar"])
    if action == "nudge" and shape:
        index = rng.randrange(len(shape))
        shape[index] = max(0, rng.choice([shape[index] + 1, shape[index] - 1, shape[index] * 2]))
    elif action == "extra":
        shape.insert(rng.randrange(len(shape) + 1), rng.choice([1, 2]))
    elif action == "drop" and shape:
        del shape[rng.randrange(len(shape))]
    elif action == "zero" and shape:
        shape[rng.randrange(len(shape))] = 0
    else:
        shape = []
    count = math.prod(shape)
    if count > MAX_NEW_ELEMENTS or shape == old:
        return None
    blob = _float_data(rng, entry["dtype"], count)
    entry.update(shape=shape, offset=_append_blob(parts, blob), nbytes=len(blob))
    return f"tensor {name!r}: shape {old} -> {shape} with matching bytes"


def retype_tensor(rng: random.Random, parts: Parts) -> str | None:
    """Another dtype, stored consistently (size and offset follow)."""
    tensors = {k: v for k, v in _tensors(parts).items() if _valid_entry(v)}
    if not tensors:
        return None
    name = rng.choice(sorted(tensors))
    entry = tensors[name]
    old = entry["dtype"]
    new = rng.choice([d for d in DTYPES if d != old])
    count = math.prod(entry["shape"])
    if count > MAX_NEW_ELEMENTS:
        return None
    blob = _float_data(rng, new, count)
    entry.update(dtype=new, offset=_append_blob(parts, blob), nbytes=len(blob))
    return f"tensor {name!r}: dtype {old} -> {new} with matching bytes"


def corrupt_tensor_entry(rng: random.Random, parts: Parts) -> str | None:
    """A field of a tensor entry set to a boundary value, leaving the rest inconsistent."""
    tensors = _tensors(parts)
    if not tensors:
        return None
    name = rng.choice(sorted(tensors))
    entry = tensors[name]
    if not isinstance(entry, dict) or rng.random() < 0.1:
        value = hostile(rng)
        tensors[name] = value
        return f"tensor {name!r}: entry replaced by {_short(value)}"
    key = rng.choice(["dtype", "shape", "offset", "nbytes", "dtype", "shape", "offset"])
    old = entry.get(key)
    size = len(parts.data)
    choices: list[Any] = [hostile(rng), nudge(rng, old) if old is not None else hostile(rng)]
    if key == "dtype":
        choices += ["int8", "float64", "uint64", "BITS", "bool"]
    elif key == "offset":
        choices += [size, size - 1, size + 16, 1, -16, 2**63 - 16, (old or 0) + rng.randint(1, 15)]
        choices += [v.get("offset") for v in tensors.values() if isinstance(v, dict)]
    elif key == "nbytes":
        choices += [0, size, size + 1, 2**63, -(old or 0)]
    elif key == "shape" and isinstance(old, list):
        choices += [[-1, *old[1:]], [*old, 1], old[:-1], [2**31, 2**31, 2**31, 2**31], [2**62, 4]]
    new = rng.choice(choices)
    entry[key] = new
    return f"tensor {name!r}: {key} {_short(old)} -> {_short(new)}"


def refill_tensor(rng: random.Random, parts: Parts) -> str | None:
    """A float tensor's values all set to NaN, an infinity, a huge number or zero."""
    tensors = {
        k: v
        for k, v in _tensors(parts).items()
        if _valid_entry(v)
        and v["dtype"] in ("float16", "float32")
        and isinstance(v.get("offset"), int)
    }
    if not tensors:
        return None
    name = rng.choice(sorted(tensors))
    entry = tensors[name]
    value = rng.choice([NAN, INF, -INF, 1e30, -1e30, 0.0, 65504.0, 1e-45])
    count = math.prod(entry["shape"])
    dtype = "<f2" if entry["dtype"] == "float16" else "<f4"
    with np.errstate(over="ignore"):
        blob = np.full(count, value, dtype=dtype).tobytes()
    start = entry["offset"]
    if start < 0 or start + len(blob) > len(parts.data):
        return None
    parts.data[start : start + len(blob)] = blob
    return f"tensor {name!r}: every value set to {value!r}"


def drop_or_alias_tensor(rng: random.Random, parts: Parts) -> str | None:
    """A tensor entry deleted or copied from another, or the tensors section replaced."""
    tensors = _tensors(parts)
    if not tensors:
        return None
    name = rng.choice(sorted(tensors))
    action = rng.random()
    if action < 0.4:
        del tensors[name]
        return f"tensor {name!r}: entry deleted"
    if action < 0.7:
        other = rng.choice(sorted(tensors))
        tensors[name] = copy.deepcopy(tensors[other])
        return f"tensor {name!r}: entry replaced by a copy of {other!r}'s"
    value = hostile(rng)
    parts.header["tensors"] = value
    return f"tensors section replaced by {_short(value)}"


def rewire_tensor_role(rng: random.Random, parts: Parts) -> str | None:
    """A node's tensor role pointed at another stored tensor, dropped, added or dangling."""
    nodes = [n for n in _nodes(parts) if isinstance(n.get("tensors"), dict)]
    if not nodes:
        return None
    node = rng.choice(nodes)
    roles = node["tensors"]
    stored = sorted(_tensors(parts)) or ["nothing"]
    action = rng.random()
    if roles and action < 0.45:
        role = rng.choice(sorted(roles))
        old, new = roles[role], rng.choice(stored)
        roles[role] = new
        return f"node {_name(node)}: {role} tensor {old!r} -> {new!r}"
    if roles and action < 0.6:
        role = rng.choice(sorted(roles))
        del roles[role]
        return f"node {_name(node)}: {role} tensor role deleted"
    if action < 0.85:
        spec = OPS.get(node.get("op")) if isinstance(node.get("op"), str) else None
        candidates = sorted(spec.tensors | spec.optional_tensors) if spec else []
        role = rng.choice([*candidates, "weight", "threshold", "slope", "bogus"])
        new = rng.choice(stored)
        roles[role] = new
        return f"node {_name(node)}: {role} tensor set to {new!r}"
    role = rng.choice(sorted(roles) or ["weight"])
    value = rng.choice(["missing_tensor", hostile(rng)])
    roles[role] = value
    return f"node {_name(node)}: {role} tensor set to {_short(value)}"


def change_op(rng: random.Random, parts: Parts) -> str | None:
    """A node's operation changed to another one, an unknown name or a hostile value."""
    nodes = _nodes(parts)
    if not nodes:
        return None
    node = rng.choice(nodes)
    old = node.get("op")
    new = rng.choice([*OPS, *OPS, "gelu", "Conv2d", hostile(rng)])
    node["op"] = new
    return f"node {_name(node)}: op {_short(old)} -> {_short(new)}"


def rewire_inputs(rng: random.Random, parts: Parts) -> str | None:
    """An input made dangling, self-referencing, a forward reference, duplicated,
    dropped, or pointed at an earlier value of another shape."""
    nodes = _nodes(parts)
    if not nodes:
        return None
    index = rng.randrange(len(nodes))
    node = nodes[index]
    inputs = node.get("inputs")
    inputs = list(inputs) if isinstance(inputs, list) else []
    names = [n.get("name") for n in nodes]
    graph_inputs = _dict(parts.header, "graph").get("inputs")
    first = graph_inputs[0] if isinstance(graph_inputs, list) and graph_inputs else {}
    earlier = [*names[:index], first.get("name") if isinstance(first, dict) else None]
    slot = rng.randrange(len(inputs)) if inputs else 0
    action = rng.choice(["dangling", "self", "forward", "earlier", "earlier", "earlier",
                         "duplicate", "extra", "empty", "hostile"])  # fmt: skip
    if action == "dangling":
        inputs[slot : slot + 1] = ["nowhere"]
    elif action == "self":
        inputs[slot : slot + 1] = [node.get("name")]
    elif action == "forward" and index + 1 < len(nodes):
        inputs[slot : slot + 1] = [rng.choice(names[index + 1 :])]
    elif action == "earlier":
        inputs[slot : slot + 1] = [rng.choice(earlier)]
    elif action == "duplicate" and inputs:
        inputs = [inputs[0]] * rng.choice([2, 3])
    elif action == "extra":
        inputs.append(rng.choice(earlier))
    elif action == "empty":
        inputs = []
    else:
        node["inputs"] = hostile(rng)
        return f"node {_name(node)}: inputs replaced by {_short(node['inputs'])}"
    old = node.get("inputs")
    node["inputs"] = inputs
    return f"node {_name(node)}: inputs {_short(old)} -> {_short(inputs)} ({action})"


def rename_node(rng: random.Random, parts: Parts) -> str | None:
    """A node renamed to another node's name, the graph input's or a hostile value."""
    nodes = _nodes(parts)
    if not nodes:
        return None
    node = rng.choice(nodes)
    old = node.get("name")
    graph_inputs = _dict(parts.header, "graph").get("inputs")
    first = graph_inputs[0] if isinstance(graph_inputs, list) and graph_inputs else {}
    new = rng.choice(
        [rng.choice(nodes).get("name"), first.get("name") if isinstance(first, dict) else None,
         hostile(rng), "renamed"]
    )  # fmt: skip
    node["name"] = new
    return f"node {_short(old)}: renamed to {_short(new)}"


def reshape_node(rng: random.Random, parts: Parts) -> str | None:
    """The output shape a node records nudged or replaced."""
    nodes = _nodes(parts)
    if not nodes:
        return None
    node = rng.choice(nodes)
    old = node.get("shape")
    new = nudge(rng, old) if isinstance(old, list) and rng.random() < 0.6 else hostile(rng)
    node["shape"] = new
    return f"node {_name(node)}: recorded shape {_short(old)} -> {_short(new)}"


def delete_duplicate_or_move_node(rng: random.Random, parts: Parts) -> str | None:
    """A node deleted, duplicated (same name or a new one), moved or replaced."""
    nodes = _dict(parts.header, "graph").get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return None
    index = rng.randrange(len(nodes))
    name = nodes[index].get("name") if isinstance(nodes[index], dict) else None
    action = rng.choice(["delete", "duplicate", "duplicate_renamed", "move", "hostile"])
    if action == "delete":
        del nodes[index]
    elif action == "duplicate":
        nodes.insert(index + rng.choice([0, 1]), copy.deepcopy(nodes[index]))
    elif action == "duplicate_renamed" and isinstance(nodes[index], dict):
        twin = copy.deepcopy(nodes[index])
        twin["name"] = f"{name}_twin"
        nodes.insert(rng.randrange(len(nodes) + 1), twin)
    elif action == "move" and len(nodes) > 1:
        nodes.insert(rng.randrange(len(nodes)), nodes.pop(index))
    else:
        action = "replaced by a hostile value"
        nodes[index] = hostile(rng)
    return f"node {_short(name)}: {action}"


def edit_graph_input(rng: random.Random, parts: Parts) -> str | None:
    """The graph input's shape, name or dtype changed, duplicated or removed."""
    graph = _dict(parts.header, "graph")
    inputs = graph.get("inputs")
    if not isinstance(inputs, list) or not inputs or not isinstance(inputs[0], dict):
        return None
    entry = inputs[0]
    action = rng.choice(["shape", "shape", "shape", "name", "dtype", "second", "empty", "hostile"])
    if action == "shape":
        old = entry.get("shape")
        shape = list(old) if isinstance(old, list) else []
        new = rng.choice(
            [nudge(rng, shape), nudge(rng, shape), [*shape, 2], shape[:-1], [shape[0] if shape
             else 1, 0, 0], [-1, *shape[1:]], [1, 2**31, 2**31], [3, 10**6, 10**6], hostile(rng)]
        )  # fmt: skip
        entry["shape"] = new
        return f"graph input shape {_short(old)} -> {_short(new)}"
    if action == "name":
        names = [n.get("name") for n in _nodes(parts)] or ["x"]
        new = rng.choice([rng.choice(names), "renamed", hostile(rng)])
        entry["name"] = new
        return f"graph input renamed to {_short(new)}"
    if action == "dtype":
        new = rng.choice(["float16", "int8", hostile(rng)])
        entry["dtype"] = new
        return f"graph input dtype set to {_short(new)}"
    if action == "second":
        inputs.append(copy.deepcopy(entry))
        return "graph input duplicated (two inputs)"
    if action == "empty":
        graph["inputs"] = []
        return "graph inputs emptied"
    graph["inputs"] = hostile(rng)
    return f"graph inputs replaced by {_short(graph['inputs'])}"


def edit_graph_outputs(rng: random.Random, parts: Parts) -> str | None:
    """The graph outputs emptied, dangling, duplicated or replaced."""
    graph = _dict(parts.header, "graph")
    if not graph:
        return None
    old = graph.get("outputs")
    outputs = list(old) if isinstance(old, list) else []
    names = [n.get("name") for n in _nodes(parts)] or ["x"]
    graph_inputs = graph.get("inputs")
    first = graph_inputs[0] if isinstance(graph_inputs, list) and graph_inputs else {}
    new = rng.choice(
        [[], ["nowhere"], outputs * 2, [rng.choice(names)], [*outputs, rng.choice(names)],
         [first.get("name") if isinstance(first, dict) else None], hostile(rng)]
    )  # fmt: skip
    graph["outputs"] = new
    return f"graph outputs {_short(old)} -> {_short(new)}"


def edit_metadata(rng: random.Random, parts: Parts) -> str | None:
    """The metadata replaced by a hostile, deeply nested or odd value."""
    if not isinstance(parts.header, dict):
        return None
    value = rng.choice([hostile(rng), _DEEP_MARK, {"model": hostile(rng)}, "é\x00"])
    parts.header["metadata"] = value
    if value == _DEEP_MARK:
        return f"metadata replaced by a list nested {DEEP_NESTING} deep"
    return f"metadata replaced by {_short(value)}"


def edit_top_level(rng: random.Random, parts: Parts) -> str | None:
    """A top-level header key deleted or changed, or the whole header replaced."""
    if not isinstance(parts.header, dict):
        return None
    key = rng.choice(["format", "version", "graph", "tensors", "metadata", "extra"])
    action = rng.random()
    if action < 0.3 and key in parts.header:
        del parts.header[key]
        return f"header key {key!r} deleted"
    if action < 0.4:
        parts.header = hostile(rng)
        return f"header replaced by {_short(parts.header)}"
    value = rng.choice([hostile(rng), "BNNPACK", 2])
    parts.header[key] = value
    return f"header key {key!r} set to {_short(value)}"


#: Structured edits with their weights: graph and tensor edits dominate.
EDITS: list[tuple[Edit, int]] = [
    (edit_attribute, 12),
    (drop_or_add_attribute, 3),
    (replace_attributes, 1),
    (resize_tensor, 10),
    (retype_tensor, 4),
    (corrupt_tensor_entry, 8),
    (refill_tensor, 4),
    (drop_or_alias_tensor, 3),
    (rewire_tensor_role, 8),
    (change_op, 6),
    (rewire_inputs, 10),
    (rename_node, 3),
    (reshape_node, 2),
    (delete_duplicate_or_move_node, 5),
    (edit_graph_input, 6),
    (edit_graph_outputs, 3),
    (edit_metadata, 1),
    (edit_top_level, 1),
]


# Raw edits of the written bytes.


def raw_edit(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    """Truncate, flip bytes, or rewrite a preamble field of a whole file."""
    action = rng.choice(["truncate", "flip", "flip_rechecksum", "preamble"])
    if action == "truncate":
        cut = rng.choice([rng.randrange(len(raw)), len(raw) - DIGEST_BYTES, rng.randrange(40)])
        return raw[:cut], f"truncated to {cut} of {len(raw)} bytes"
    if action in ("flip", "flip_rechecksum"):
        data = bytearray(raw)
        (header_len,) = struct.unpack_from("<Q", raw, 16)
        where = rng.choice(["header", "data", "anywhere"])
        low, high = {
            "header": (PREAMBLE.size, PREAMBLE.size + header_len),
            "data": (PREAMBLE.size + header_len, len(raw) - DIGEST_BYTES),
            "anywhere": (0, len(raw)),
        }[where]
        count = rng.choice([1, 1, 2, 8])
        for _ in range(count):
            position = rng.randrange(low, max(low + 1, high))
            data[min(position, len(data) - 1)] ^= 1 << rng.randrange(8)
        if action == "flip_rechecksum":
            return rechecksum(bytes(data)), f"{count} bit(s) flipped in the {where}, checksummed"
        return bytes(data), f"{count} bit(s) flipped in the {where}, checksum stale"
    data = bytearray(raw)
    field, offset, fmt = rng.choice(
        [("version", 8, "<I"), ("flags", 12, "<I"), ("header_len", 16, "<Q"),
         ("file_len", 24, "<Q")]
    )  # fmt: skip
    (old,) = struct.unpack_from(fmt, raw, offset)
    limit = 2**32 - 1 if fmt == "<I" else 2**64 - 1
    new = rng.choice([0, 1, old + 1, old - 1, old * 2, limit, len(raw), len(raw) * 2]) % (limit + 1)
    struct.pack_into(fmt, data, offset, new)
    return rechecksum(bytes(data)), f"preamble {field} {old} -> {new}, checksummed"


def mutate(rng: random.Random, seed: Parts, path: Path) -> list[str]:
    """Write to ``path`` a mutated copy of ``seed``: one to three structured edits
    (most cases), then possibly a raw edit; returns the edits' descriptions."""
    parts = seed.copy()
    steps: list[str] = []
    functions, weights = zip(*EDITS, strict=True)
    if rng.random() < 0.9:
        wanted = rng.choice([1, 1, 1, 2, 2, 3])
        for _ in range(20):
            if len(steps) == wanted:
                break
            description = rng.choices(functions, weights)[0](rng, parts)
            if description:
                steps.append(description)
    write_parts(path, parts.header, bytes(parts.data))
    raw = path.read_bytes()
    mark = json.dumps(_DEEP_MARK).encode()
    if mark in raw:
        nested = b"[" * DEEP_NESTING + b"]" * DEEP_NESTING
        raw = rechecksum(raw.replace(mark, nested, 1))
    if not steps or rng.random() < 0.15:
        raw, description = raw_edit(rng, raw)
        steps.append(description)
    path.write_bytes(raw)
    return steps


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 25]}...({len(text)} chars)"
