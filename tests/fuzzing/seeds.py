"""The seed files of the ``.bnnpack`` fuzzer: small networks exported by ``bnn.deploy``
that between them hold every operation of the format, a packed edge between binary
linear and between binary convolution layers, binary convolutions with a fused
shortcut and PReLU / RPReLU, grouped and depthwise float convolutions, a ``pad_value``
of +1, float16 tensors and int8 float layers (``qconv2d``, ``qlinear``). Inputs are
tiny, so one file loads and runs in milliseconds.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bnn import BConfig, convert, prepare_binary_model
from bnn.deploy import export
from bnn_core.registries import create_model
from tests.networks import Everything
from tests.packing import randomise


class BinaryChain(nn.Module):
    """Two binary convolutions joined by a batch norm and a hard tanh (a packed edge
    after export), 64 input channels (whole 64-bit words) then 40 (a partial word)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 64, 1)
        self.first = nn.Conv2d(64, 40, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(40)
        self.second = nn.Conv2d(40, 16, 3, stride=2, padding=1, bias=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(self.stem(x))
        x = self.second(F.hardtanh(self.norm(x)))
        return self.head(x.mean((2, 3)))


def _float_ops() -> nn.Module:
    model = Everything()
    model.binary.bconfig = BConfig(
        activation_pre_process="input_bias", weight_pre_process="xnor_weight", pad_value=1
    )
    return randomise(convert(model))


def _binary_chain() -> nn.Module:
    sign = BConfig(activation_pre_process="ste_sign", weight_pre_process="ste_sign")
    return randomise(prepare_binary_model(BinaryChain(), sign, ignore_layers_name=["stem", "head"]))


#: name -> (model builder, one sample's input shape, float dtype of the stored tensors)
SEEDS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], str]] = {
    "float_ops": (_float_ops, (4, 13, 11), "float32"),
    "binary_chain": (_binary_chain, (2, 8, 8), "float32"),
    "lenet_xnorpp": (
        lambda: randomise(create_model("lenet5", binarize="xnorpp", width=8, hidden=16)),
        (1, 28, 28),
        "float32",
    ),
    "mlp": (
        lambda: randomise(
            create_model("binarynet_mlp", binarize=True, in_features=64, hidden=(64, 64, 64))
        ),
        (1, 8, 8),
        "float32",
    ),
    "bireal_rprelu": (
        lambda: randomise(create_model("resnet8_bireal", binarize=True, width=8, rprelu=True)),
        (1, 16, 16),
        "float32",
    ),
    "bireal_half": (
        lambda: randomise(create_model("resnet8_bireal", binarize=True, width=8, stem_pool=True)),
        (1, 16, 16),
        "float16",
    ),
}


#: name -> (model builder, one sample's input shape): exported with int8 float layers,
#: calibrated on a few random batches.
INT8_SEEDS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "int8_float_ops": (_float_ops, (4, 13, 11)),
    "int8_bireal": (
        lambda: randomise(create_model("resnet8_bireal", binarize=True, width=8)),
        (1, 16, 16),
    ),
}


def export_seeds(directory: Path) -> dict[str, Path]:
    """Export every seed network into ``directory``; returns name -> file."""
    files = {}
    for name, (build, shape, dtype) in SEEDS.items():
        torch.manual_seed(0)
        path = directory / f"{name}.bnnpack"
        export(build(), path, shape, float_dtype=dtype, name=name)  # type: ignore[arg-type]
        files[name] = path
    for name, (build, shape) in INT8_SEEDS.items():
        torch.manual_seed(0)
        path = directory / f"{name}.bnnpack"
        batches = [torch.randn(4, *shape) for _ in range(2)]
        export(build(), path, shape, name=name, float_layers="int8", calibration=batches)
        files[name] = path
    return files


@functools.cache
def seed_files() -> dict[str, Path]:
    """The seeds, exported once per process into a temporary directory."""
    return export_seeds(Path(tempfile.mkdtemp(prefix="bnnpack-seeds-")))
