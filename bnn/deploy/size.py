"""The exported file's size against what ``bnn summary`` predicts.

``bnn summary``'s model size counts every stored parameter at its bit width: binary
weights at 1 bit, everything else (float layers, batch-norm statistics, binarizer
scales and thresholds) at 32 bits; with float16 storage the prediction here counts
those at 16. The file stores the same values, so

    tensor bytes = prediction
                   + rounding (each binary layer's bits rounded up to a whole byte)
                   + (added - merged) x float size

where ``merged`` counts values that folding combined (a batch norm folded into the
convolution or binary layer before it leaves one scale and one shift per channel where
the summary counts its two statistics plus that layer's bias or scale), and ``added``
the weight scales a binary layer derives from its weights rather than stores as a
parameter (XNOR-Net's mean |W|) when no batch norm absorbs them. On top of the tensors
come the preamble, JSON header, alignment padding and checksum: the metadata overhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bnn.deploy.export import ExportResult

FLOAT_BYTES = {"float32": 4, "float16": 2}


@dataclass(frozen=True)
class SizeCheck:
    """The prediction, its exact reconciliation with the file, and the file's parts."""

    predicted_bytes: float
    rounding_bytes: float
    added_bytes: int
    merged_bytes: int
    tensor_bytes: int
    metadata_bytes: int

    @property
    def file_bytes(self) -> int:
        """The whole file."""
        return self.tensor_bytes + self.metadata_bytes

    @property
    def reconciled_bytes(self) -> float:
        """Prediction + rounding + added - merged: what the tensors must take."""
        return self.predicted_bytes + self.rounding_bytes + self.added_bytes - self.merged_bytes

    @property
    def matches(self) -> bool:
        """Whether the tensors take exactly the reconciled prediction."""
        return abs(self.tensor_bytes - self.reconciled_bytes) < 1e-6

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "predicted_bytes": self.predicted_bytes,
            "rounding_bytes": self.rounding_bytes,
            "added_bytes": self.added_bytes,
            "merged_bytes": self.merged_bytes,
            "tensor_bytes": self.tensor_bytes,
            "metadata_bytes": self.metadata_bytes,
            "file_bytes": self.file_bytes,
            "matches": self.matches,
        }


def predicted_bytes(
    model: nn.Module, input_shape: Sequence[int] | torch.Tensor, float_dtype: str = "float32"
) -> tuple[float, int]:
    """``bnn summary``'s model size with its 32-bit parameters at ``float_dtype``, and
    its count of 1-bit parameters."""
    from bnn.summary import summary

    counts = summary(model, input_shape).params_by_bits
    float_bits = FLOAT_BYTES[float_dtype] * 8
    total = sum(n * (float_bits if bits == 32 else bits) for bits, n in counts.items()) / 8
    return total, counts.get(1, 0)


def check_size(
    model: nn.Module, input_shape: Sequence[int] | torch.Tensor, result: ExportResult
) -> SizeCheck:
    """Reconcile an export's file with the summary's prediction for the same model."""
    predicted, one_bit = predicted_bytes(model, input_shape, result.float_dtype)
    stored_bits = sum((count + 7) // 8 for count in _bit_tensor_sizes(result))
    item = FLOAT_BYTES[result.float_dtype]
    return SizeCheck(
        predicted_bytes=predicted,
        rounding_bytes=stored_bits - one_bit / 8,
        added_bytes=result.added_values * item,
        merged_bytes=result.merged_values * item,
        tensor_bytes=result.tensor_bytes,
        metadata_bytes=result.metadata_bytes,
    )


def _bit_tensor_sizes(result: ExportResult) -> list[int]:
    """The number of signs of each binary layer's weight."""
    from bnn_runtime.graph import OPS

    sizes = []
    for node in result.graph.nodes:
        if OPS[node.op].binary:
            attrs = node.attrs
            if node.op == "binary_linear":
                sizes.append(attrs["in_features"] * attrs["out_features"])
            else:
                kh, kw = attrs["kernel_size"]
                per_group = attrs["in_channels"] // attrs["groups"]
                sizes.append(attrs["out_channels"] * kh * kw * per_group)
    return sizes
