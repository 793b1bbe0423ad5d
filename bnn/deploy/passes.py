"""Rewrites of a captured graph that fold per-channel float work into binary layers.

* A per-channel affine node (a batch norm, a learnable bias) whose input is a binary
  layer read by nothing else folds into that layer's output transform:
  ``g * (s * dot + b) + h = (g s) * dot + (g b + h)``; after a float convolution or
  linear layer it folds into the weights and bias (``W g``, ``b g + h``).
* A non-negative scale a binary layer derives from its weights alone (XNOR-Net's
  mean |W|, Bi-Real's magnitude) moves through a following max or average pooling into
  the per-channel affine node (a batch norm) after it, since
  ``pool(s * y) = s * pool(y)`` for ``s >= 0``.
* A hard tanh onto [-1, 1] read only by binary layers is dropped: for a threshold
  ``t`` in [-1, 1), ``clamp(y, -1, 1) + t >= 0`` exactly when ``y + t >= 0``, so the
  signs the next layers take are unchanged. Two binary layers then meet directly and
  the runtime passes packed bits between them.

Each rewrite keeps the computed function exactly (up to float rounding). The
captured graph counts the float values folding removes from what ``bnn summary``
counts (``merged``) and the derived scales it stores beyond it (``added``).
"""

from __future__ import annotations

import numpy as np

from bnn.deploy.capture import Captured
from bnn_runtime.graph import OPS, Graph, Node


def optimise(captured: Captured) -> None:
    """Apply every rewrite, in place."""
    _fold_affines(captured)
    _move_scales_through_pooling(captured)
    _drop_clamps_before_signs(captured)


def _tensor(captured: Captured, node: Node, role: str) -> np.ndarray | None:
    name = node.tensors.get(role)
    return None if name is None else captured.arrays[name]


def _set_tensor(captured: Captured, node: Node, role: str, array: np.ndarray | None) -> None:
    old = node.tensors.pop(role, None)
    if old is not None:
        del captured.arrays[old]
    if array is not None:
        node.tensors[role] = f"{node.name}.{role}"
        captured.arrays[node.tensors[role]] = array


def _remove(graph: Graph, node: Node, replacement: str) -> None:
    """Drop ``node``; whatever read it reads ``replacement`` instead."""
    graph.nodes.remove(node)
    for other in graph.nodes:
        other.inputs = [replacement if source == node.name else source for source in other.inputs]
    graph.outputs = [replacement if name == node.name else name for name in graph.outputs]


def _sole_reader(graph: Graph, name: str) -> Node | None:
    readers = graph.consumers().get(name, [])
    if len(readers) != 1 or name in graph.outputs:
        return None
    return readers[0]


def _stored(captured: Captured, *nodes: Node) -> int:
    """Float values stored for ``nodes`` (binary weights excluded)."""
    return sum(
        captured.arrays[name].size
        for node in nodes
        for role, name in node.tensors.items()
        if not (OPS[node.op].binary and role == "weight")
    )


def _fold_affines(captured: Captured) -> None:
    graph = captured.graph
    for node in list(graph.nodes):
        if node.op != "channel_affine":
            continue
        producer = next((n for n in graph.nodes if n.name == node.inputs[0]), None)
        if producer is None or _sole_reader(graph, producer.name) is not node:
            continue
        if producer.op not in ("conv2d", "linear") and not OPS[producer.op].binary:
            continue
        before = _stored(captured, producer, node)
        g, h = _tensor(captured, node, "scale"), _tensor(captured, node, "shift")
        derived = producer.name in captured.derived_scales and g is not None
        if OPS[producer.op].binary:
            _fold_into_transform(captured, producer, g, h)
        else:
            _fold_into_weights(captured, producer, g, h)
        producer.modules += node.modules
        _set_tensor(captured, node, "scale", None)
        _set_tensor(captured, node, "shift", None)
        _remove(graph, node, producer.name)
        merged = before - _stored(captured, producer)
        if derived:
            captured.derived_scales.discard(producer.name)
            captured.added -= g.size
            merged -= g.size
        captured.merged += merged


def _fold_into_transform(
    captured: Captured, producer: Node, g: np.ndarray | None, h: np.ndarray | None
) -> None:
    s, b = _tensor(captured, producer, "scale"), _tensor(captured, producer, "bias")
    if g is not None:
        s = g if s is None else g * s
        b = None if b is None else g * b
    if h is not None:
        b = h if b is None else b + h
    _set_tensor(captured, producer, "scale", s)
    _set_tensor(captured, producer, "bias", b)


def _fold_into_weights(
    captured: Captured, producer: Node, g: np.ndarray | None, h: np.ndarray | None
) -> None:
    weight = _tensor(captured, producer, "weight")
    bias = _tensor(captured, producer, "bias")
    assert weight is not None
    if g is not None:
        weight = weight * g.reshape(-1, *[1] * (weight.ndim - 1))
        bias = None if bias is None else bias * g
    if h is not None:
        bias = h if bias is None else bias + h
    _set_tensor(captured, producer, "weight", weight)
    _set_tensor(captured, producer, "bias", bias)


def _move_scales_through_pooling(captured: Captured) -> None:
    graph = captured.graph
    for node in list(graph.nodes):
        if node.name not in captured.derived_scales or "bias" in node.tensors:
            continue
        scale = _tensor(captured, node, "scale")
        pool = _sole_reader(graph, node.name)
        if scale is None or np.any(scale < 0) or pool is None:
            continue
        if pool.op not in ("max_pool2d", "avg_pool2d"):
            continue
        norm = _sole_reader(graph, pool.name)
        if norm is None or norm.op != "channel_affine":
            continue
        gain = _tensor(captured, norm, "scale")
        if gain is None:
            continue
        _set_tensor(captured, norm, "scale", gain * scale)
        _set_tensor(captured, node, "scale", None)
        captured.derived_scales.discard(node.name)
        captured.added -= scale.size


def _drop_clamps_before_signs(captured: Captured) -> None:
    graph = captured.graph
    for node in list(graph.nodes):
        if node.op != "hardtanh" or node.name in graph.outputs:
            continue
        if (node.attrs["min_val"], node.attrs["max_val"]) != (-1.0, 1.0):
            continue
        readers = graph.consumers().get(node.name, [])
        if not readers or not all(OPS[reader.op].binary for reader in readers):
            continue
        thresholds = [_tensor(captured, reader, "threshold") for reader in readers]
        if not all(t is None or bool(np.all((t >= -1) & (t < 1))) for t in thresholds):
            continue
        readers[0].modules = node.modules + readers[0].modules
        _remove(graph, node, node.inputs[0])
