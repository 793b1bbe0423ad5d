"""Int8 for the layers a binary network keeps in float: the ``conv2d`` and ``linear``
nodes of an exported graph (the downsampling shortcuts and the classifier; the stem too
with ``include_input_layers``) become ``qconv2d`` or ``qlinear`` nodes with
per-output-channel symmetric int8 weights and a per-tensor input scale and zero point
calibrated on sample batches.

A node reading the network's input (the stem) stays float unless asked for: its output
feeds the first binary layer's signs, where its rounding error flips bits, and int8 there
changes the predicted class of a few percent of the inputs (see docs/deploy.md).

Calibration runs the float graph itself in the packed runtime, so the ranges are those
of exactly the values each node reads (after folding), not of a PyTorch module's input.
:mod:`bnn_runtime.int8_reference` defines the arithmetic the runtime then computes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnn.deploy.capture import Captured
from bnn.deploy.errors import ExportError
from bnn_runtime import float_ops, load
from bnn_runtime import format as pack_format
from bnn_runtime.graph import Graph, Node
from bnn_runtime.validate import INT8_INPUT_MAX, conv_output_size

#: Float operation -> its int8 form.
QUANTIZED_OPS = {"conv2d": "qconv2d", "linear": "qlinear"}
#: The largest int8 weight (symmetric: -128 is never used).
WEIGHT_MAX = 127


#: Nodes summing at most this many products per output get their weights rounded to
#: compensate each other's error on the calibration inputs (:func:`round_weights`);
#: deeper ones, and grouped convolutions, round each weight to nearest.
MAX_COMPENSATED_DEPTH = 4096
#: im2col rows of one calibration batch that enter a node's input statistics.
ROWS_PER_BATCH = 4096


@dataclass(frozen=True)
class Range:
    """The smallest and largest value a node's input took during calibration."""

    low: float
    high: float

    def quantization(self) -> tuple[float, int]:
        """The scale and zero point mapping [low, high] (widened to hold 0) onto the
        7-bit steps [0, 127], 0 falling exactly on a step."""
        low, high = min(self.low, 0.0), max(self.high, 0.0)
        scale = (high - low) / INT8_INPUT_MAX if high > low else 1.0
        zero_point = int(np.clip(round(-low / scale), 0, INT8_INPUT_MAX))
        return float(np.float32(scale)), zero_point


@dataclass
class Statistics:
    """What calibration saw of one node's input: its range and, for a node whose
    weights are compensated, the sum of ``r r^T`` over its im2col rows ``r``."""

    range: Range
    gram: np.ndarray | None = None


def quantized_nodes(graph: Graph, include_input_layers: bool = False) -> list[Node]:
    """The nodes that the int8 option stores as int8: the float convolutions and linear
    layers, those reading the network's input only with ``include_input_layers``."""
    return [
        node
        for node in graph.nodes
        if node.op in QUANTIZED_OPS
        and (include_input_layers or graph.input_name not in node.inputs)
    ]


def _depth(node: Node) -> int:
    attrs = node.attrs
    if node.op == "linear":
        return attrs["in_features"]
    kh, kw = attrs["kernel_size"]
    return kh * kw * attrs["in_channels"] // attrs["groups"]


def _compensated(node: Node) -> bool:
    return _depth(node) <= MAX_COMPENSATED_DEPTH and node.attrs.get("groups", 1) == 1


def input_rows(node: Node, value: np.ndarray) -> np.ndarray:
    """The rows ``node`` multiplies by its weight for the input ``value`` (``[N, F]``,
    or NCHW for a convolution: its im2col rows in (kernel row, kernel column, channel)
    order), at most :data:`ROWS_PER_BATCH` of them, evenly spaced."""
    if node.op == "linear":
        rows = value
    else:
        attrs = node.attrs
        (ph, pw), (kh, kw) = attrs["padding"], attrs["kernel_size"]
        x = np.ascontiguousarray(value.transpose(0, 2, 3, 1), dtype=np.float64)
        padded = float_ops.pad_spatial(x, ph, ph, pw, pw, 0.0)
        out = [
            conv_output_size(size, k, s, p, d)
            for size, k, s, p, d in zip(
                value.shape[2:], (kh, kw), attrs["stride"], (ph, pw), attrs["dilation"],
                strict=True,
            )
        ]  # fmt: skip
        view = float_ops.windows(padded, (kh, kw), attrs["stride"], attrs["dilation"], out)
        rows = view.reshape(-1, _depth(node))
    return np.asarray(rows[:: max(1, len(rows) // ROWS_PER_BATCH)], dtype=np.float64)


def calibrate(
    captured: Captured,
    batches: Iterable[Any],
    tensors: dict[str, Any],
    include_input_layers: bool = False,
) -> dict[str, Statistics]:
    """Each quantized node's input statistics over ``batches`` (arrays or tensors,
    ``[N, *input_shape]``), running the float graph ``captured`` with its stored
    ``tensors``."""
    graph = captured.graph
    nodes = quantized_nodes(graph, include_input_layers)
    sources = list(dict.fromkeys(node.inputs[0] for node in nodes))
    if not sources:
        return {}
    probe = Graph(graph.input_name, graph.input_shape, graph.nodes, sources)
    stats: dict[str, Statistics] = {}
    seen = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "calibration.bnnpack"
        pack_format.write(path, probe, tensors, {})
        network = load(path)
        for batch in batches:
            x = np.asarray(batch.detach().cpu() if hasattr(batch, "detach") else batch)
            outputs, _ = network.run(x.astype(np.float32))
            values = dict(zip(sources, outputs, strict=True))
            for node in nodes:
                value = values[node.inputs[0]]
                found = Range(float(value.min()), float(value.max()))
                old = stats.get(node.name)
                if old is not None:
                    found = Range(min(found.low, old.range.low), max(found.high, old.range.high))
                gram = old.gram if old is not None else None
                if _compensated(node):
                    rows = input_rows(node, value)
                    gram = rows.T @ rows + (0 if gram is None else gram)
                stats[node.name] = Statistics(found, gram)
            seen += 1
    if not seen:
        raise ExportError("int8 calibration needs at least one batch of sample inputs, got none")
    return stats


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` (output channels first) as int8 and its per-output-channel scales: each
    channel's largest magnitude maps to 127."""
    flat = weight.reshape(weight.shape[0], -1)
    largest = np.abs(flat).max(axis=1)
    scale = np.where(largest > 0, largest / WEIGHT_MAX, 1.0).astype(np.float32)
    steps = np.rint(flat / scale.astype(np.float64)[:, None])
    return np.clip(steps, -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8).reshape(weight.shape), scale


def round_weights(matrix: np.ndarray, scale: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """The int8 steps of ``matrix`` ``[O, K]`` (per-row ``scale``) chosen one column at a
    time, each column's rounding error spread over the columns not yet rounded so as to
    least change the outputs on the calibration rows whose ``gram`` (``sum r r^T``) is
    given (the GPTQ procedure: Frantar et al., 2022)."""
    weights = matrix.astype(np.float64).copy()
    hessian = gram / max(float(np.trace(gram)) / len(gram), 1e-12)
    dead = np.diag(hessian) == 0
    hessian[dead, dead] = 1.0
    weights[:, dead] = 0.0
    hessian += 0.01 * np.mean(np.diag(hessian)) * np.eye(len(hessian))
    upper = np.linalg.cholesky(np.linalg.inv(hessian)).T
    steps = np.empty(weights.shape, dtype=np.int8)
    step = scale.astype(np.float64)
    for i in range(weights.shape[1]):
        q = np.clip(np.rint(weights[:, i] / step), -WEIGHT_MAX, WEIGHT_MAX)
        steps[:, i] = q
        error = (weights[:, i] - q * step) / upper[i, i]
        weights[:, i + 1 :] -= np.outer(error, upper[i, i + 1 :])
    return steps


def quantize(
    captured: Captured, stats: dict[str, Statistics], include_input_layers: bool = False
) -> int:
    """Turn the float convolutions and linear layers of ``captured`` (see
    :func:`quantized_nodes`) into their int8 forms in place, with the calibrated input
    statistics; returns how many."""
    nodes = quantized_nodes(captured.graph, include_input_layers)
    for node in nodes:
        seen = stats[node.name]
        scale, zero_point = seen.range.quantization()
        original = captured.arrays[node.tensors["weight"]]
        weight, weight_scale = quantize_weight(original)
        if seen.gram is not None:
            order = original if original.ndim == 2 else original.transpose(0, 2, 3, 1)
            steps = round_weights(order.reshape(len(order), -1), weight_scale, seen.gram)
            steps = steps.reshape(order.shape)
            weight = steps if original.ndim == 2 else steps.transpose(0, 3, 1, 2).copy()
        captured.arrays[node.tensors["weight"]] = weight
        scale_name = f"{node.tensors['weight']}.scale"
        captured.arrays[scale_name] = weight_scale
        node.tensors = {**node.tensors, "weight_scale": scale_name}
        node.op = QUANTIZED_OPS[node.op]
        node.attrs = {**node.attrs, "input_scale": scale, "input_zero_point": zero_point}
    return len(nodes)


#: Samples ``bnn export --calibrate`` takes from a recipe's training split, and per batch.
CALIBRATION_SAMPLES = 256
CALIBRATION_BATCH = 32


def recipe_batches(
    recipe: Path, input_shape: tuple[int, ...], samples: int = CALIBRATION_SAMPLES
) -> list[np.ndarray]:
    """Calibration batches: ``samples`` samples spread evenly over the training split of
    ``recipe``'s dataset (:func:`bnn.deploy.calibration.recipe_samples`)."""
    from bnn.deploy.calibration import recipe_samples

    return recipe_samples(recipe, input_shape, samples, CALIBRATION_BATCH)[0]
