"""``export(model, path, input_shape)``: write a binarized model as a ``.bnnpack`` file
that :func:`bnn_runtime.load` runs without PyTorch.

The model is captured with ``torch.fx`` (:mod:`bnn.deploy.capture`), its binary layers
reduced to 1-bit weights with a per-channel output transform
(:mod:`bnn.deploy.binarizers`), batch norms and scales folded into them
(:mod:`bnn.deploy.passes`), and the graph written with the binary weights packed
1 bit each and every other tensor at the chosen float precision
(:mod:`bnn_runtime.format`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from bnn.deploy.capture import Captured, capture
from bnn.deploy.errors import ExportError
from bnn.deploy.int8 import calibrate, quantize
from bnn.deploy.passes import optimise
from bnn_runtime import format as pack_format
from bnn_runtime.graph import OPS, Graph

FloatDtype = Literal["float32", "float16"]
FloatLayers = Literal["float", "int8", "int8-all"]
#: The ``float_layers`` values that store int8 layers.
INT8_LAYERS = ("int8", "int8-all")
FLOAT_DTYPES: dict[str, type] = {"float32": np.float32, "float16": np.float16}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote. ``binary_weights`` counts the 1-bit weights;
    ``added_values`` and ``merged_values`` count float values stored beyond what
    ``bnn summary`` counts (derived weight scales) and counted by it but merged away by
    folding (see :mod:`bnn.deploy.size`)."""

    path: Path
    file_bytes: int
    tensor_bytes: int
    float_dtype: str
    graph: Graph
    binary_weights: int
    added_values: int
    merged_values: int
    int8_layers: int = 0
    float_layers: str = "float"

    @property
    def metadata_bytes(self) -> int:
        """Preamble, JSON header, alignment padding and checksum: the file's overhead."""
        return self.file_bytes - self.tensor_bytes

    @property
    def binary_layers(self) -> int:
        """Binary nodes (each a binary layer, with what folded into it)."""
        return sum(OPS[node.op].binary for node in self.graph.nodes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "path": str(self.path),
            "file_bytes": self.file_bytes,
            "tensor_bytes": self.tensor_bytes,
            "metadata_bytes": self.metadata_bytes,
            "float_dtype": self.float_dtype,
            "nodes": len(self.graph.nodes),
            "binary_layers": self.binary_layers,
            "binary_weights": self.binary_weights,
            "added_values": self.added_values,
            "merged_values": self.merged_values,
            "int8_layers": self.int8_layers,
            "float_layers": self.float_layers,
        }


def example_input(model: nn.Module, input_shape: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """A batch of one random sample of ``input_shape`` (or the tensor given), on the
    model's device and dtype."""
    reference = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    if isinstance(input_shape, torch.Tensor):
        return input_shape.to(device=device, dtype=dtype)
    shape = list(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ExportError(
            f"input_shape must be positive integers (one sample without the batch dimension, "
            f"for example (3, 32, 32)), got {input_shape!r}"
        )
    generator = torch.Generator().manual_seed(0)
    return torch.randn([1, *shape], generator=generator, dtype=dtype).to(device)


def build_graph(model: nn.Module, input_shape: Sequence[int] | torch.Tensor) -> Captured:
    """The optimised runtime graph of ``model`` with its float64 tensors (no file)."""
    captured = capture(model, example_input(model, input_shape))
    optimise(captured)
    return captured


def export(
    model: nn.Module,
    path: str | Path,
    input_shape: Sequence[int] | torch.Tensor,
    *,
    float_dtype: FloatDtype = "float32",
    name: str | None = None,
    source: Mapping[str, Any] | None = None,
    float_layers: FloatLayers = "float",
    calibration: Iterable[Any] | None = None,
) -> ExportResult:
    """Write ``model`` (binarized; any training mode, restored afterwards) to ``path``.

    ``input_shape`` is one sample's shape without the batch dimension (or an example
    tensor, batch first); the graph records the shapes it gives. Binary weights are
    stored 1 bit each, every other tensor as ``float_dtype``. ``name`` and ``source``
    (for example ``{"model": {"name": "lenet5", "options": {}}}``, which ``bnn bench``
    uses to rebuild the float twin) go into the header's metadata. With ``float_layers=
    "int8"`` the float convolutions and linear layers other than the stem (those reading
    the network's input) are stored with int8 weights and input scales calibrated on
    ``calibration`` (batches of sample inputs, batch first; :mod:`bnn.deploy.int8`);
    ``"int8-all"`` stores the stem as int8 too. Raises
    :class:`ExportError` naming the layer when a binarizer or an operation cannot run
    in the packed runtime.
    """
    if float_dtype not in FLOAT_DTYPES:
        raise ExportError(f"float_dtype must be float32 or float16, got {float_dtype!r}")
    if float_layers not in ("float", *INT8_LAYERS):
        raise ExportError(f"float_layers must be float, int8 or int8-all, got {float_layers!r}")
    if float_layers in INT8_LAYERS and calibration is None:
        raise ExportError(
            f"float_layers={float_layers!r} needs calibration batches of sample inputs"
        )
    captured = build_graph(model, input_shape)
    tensors = stored_tensors(captured, float_dtype)
    int8_layers = 0
    if float_layers in INT8_LAYERS:
        every = float_layers == "int8-all"
        stats = calibrate(captured, calibration or [], tensors, every)
        int8_layers = quantize(captured, stats, every)
        tensors = stored_tensors(captured, float_dtype)
    from bnn import __version__

    metadata = {
        "producer": f"bnn-core {__version__}",
        "model": name or type(model).__name__,
        "float_dtype": float_dtype,
        "float_layers": float_layers,
        "source": dict(source or {}),
    }
    written = pack_format.write(path, captured.graph, tensors, metadata)
    bits = sum(t.size for t in tensors.values() if isinstance(t, pack_format.BitTensor))
    return ExportResult(
        path=written.path,
        file_bytes=written.file_bytes,
        tensor_bytes=written.tensor_bytes,
        float_dtype=float_dtype,
        graph=captured.graph,
        binary_weights=bits,
        added_values=captured.added,
        merged_values=captured.merged,
        int8_layers=int8_layers,
        float_layers=float_layers,
    )


def stored_tensors(captured: Captured, float_dtype: FloatDtype) -> dict[str, Any]:
    """The tensors as the file stores them: binary weights as bits, int8 weights as
    int8, the rest as ``float_dtype``, in the order the nodes use them."""
    dtype = FLOAT_DTYPES[float_dtype]
    tensors: dict[str, Any] = {}
    for node in captured.graph.nodes:
        for role, name in node.tensors.items():
            array = captured.arrays[name]
            if OPS[node.op].binary and role == "weight":
                tensors[name] = pack_format.BitTensor.from_signs(array)
            elif array.dtype == np.int8:
                tensors[name] = array
            else:
                tensors[name] = np.ascontiguousarray(array, dtype=dtype)
    return tensors
