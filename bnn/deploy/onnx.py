"""``export_onnx``: the fake-binarized model as a standard ONNX graph, for tools that
read ONNX.

ONNX has no 1-bit tensors and no binarizer operators, so each binary layer becomes
the float computation it stands for, with standard operators only: its input through
``Where(x + threshold >= 0, 1, -1)`` (``Add``, ``GreaterOrEqual``, ``Where``; not
ONNX's ``Sign``, which maps 0 to 0), its weights stored as the constants
``{-1, +1}``, then ``Conv``/``Gemm`` and a per-channel ``Mul``/``Add`` for the scale and
bias (:mod:`bnn.deploy.binarizers` derives them through the binarizers' registered
lowerings, as for the packed file). Everything else is exported as PyTorch exports
it. Needs the ``onnx`` package (the ``onnx`` extra).
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bnn.deploy.binarizers import BinaryFold, conv_padding, fold_binary_layer
from bnn.deploy.errors import ExportError
from bnn.deploy.export import example_input
from bnn.deploy.lowerings import Lowerings
from bnn_core.layers import BinaryConv2d, is_binary_layer

OPSET = 17


class SignedLayer(nn.Module):
    """A binary layer written with standard operators: ``sign(x + threshold)`` into a
    convolution (or linear layer) with ``{-1, +1}`` weights, then ``* scale + bias``."""

    def __init__(self, layer: nn.Module, fold: BinaryFold) -> None:
        super().__init__()
        conv = isinstance(layer, BinaryConv2d)
        signs = torch.from_numpy(np.where(fold.signs, 1.0, -1.0)).to(layer.weight.dtype)
        self.register_buffer("weight", signs.permute(0, 3, 1, 2).contiguous() if conv else signs)
        shape = [1, -1, 1, 1] if conv else [1, -1]
        for name, array in (
            ("threshold", fold.threshold),
            ("scale", fold.scale),
            ("bias", fold.bias),
        ):
            value = None if array is None else torch.tensor(array, dtype=signs.dtype).reshape(shape)
            self.register_buffer(name, value)
        rows, cols = fold.spatial if fold.spatial is not None else (None, None)
        self.register_buffer(
            "rows", None if rows is None else torch.tensor(rows, dtype=signs.dtype)
        )
        self.register_buffer(
            "cols", None if cols is None else torch.tensor(cols, dtype=signs.dtype)
        )
        self.conv = conv
        if conv:
            self.stride = tuple(layer.stride)
            self.groups = layer.groups
            pad_h, pad_w = conv_padding(layer)
            self.pads = (pad_w, pad_w, pad_h, pad_h)
            self.pad_value = float(layer.bconfig.pad_value or 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = x if self.threshold is None else x + self.threshold
        signs = torch.where(shifted >= 0, 1.0, -1.0).to(x.dtype)
        if self.conv:
            if any(self.pads):
                signs = F.pad(signs, self.pads, value=self.pad_value)
            y = F.conv2d(signs, self.weight, None, self.stride, 0, 1, self.groups)
        else:
            y = F.linear(signs, self.weight)
        if self.scale is not None:
            y = y * self.scale
        if self.bias is not None:
            y = y + self.bias
        if self.rows is not None:
            height, width = y.shape[2], y.shape[3]
            y = y * (self.rows[:height, None] * self.cols[None, :width])
        return y


def signed_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) whose binary layers are :class:`SignedLayer`."""
    twin = copy.deepcopy(model).eval()
    lowerings = Lowerings()
    for name, module in list(twin.named_modules()):
        if is_binary_layer(module):
            replacement = SignedLayer(module, fold_binary_layer(name, module, lowerings))
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, child, replacement)
    return twin


def export_onnx(
    model: nn.Module, path: str | Path, input_shape: Sequence[int] | torch.Tensor
) -> Path:
    """Write the fake-binarized ``model`` to ``path`` as ONNX (opset 17, batch axis
    dynamic). Raises :class:`ExportError` when a binary layer cannot be expressed or the
    ``onnx`` package is missing."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx package: pip install 'bnn-core[onnx]'"
        ) from None
    twin = signed_twin(model)
    example = example_input(model, input_shape)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                twin,
                (example,),
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        except Exception as exc:  # the exporter's failures carry no common type
            raise ExportError(
                f"torch.onnx.export failed on {type(model).__name__}: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:500]}"
            ) from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path
