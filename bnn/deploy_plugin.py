"""Hook implementations of the export lowerings of PyTorch's own layers and of
bnn_core's binary layers (entry point ``bnn_deploy``).

They go through the same hook as any plugin's; targets are lazy references, so listing
plugins imports neither torch nor the exporter.
"""

from __future__ import annotations

from bnn_core import hookimpl
from bnn_core.hookspecs import RegisterLowering

_LOWERINGS = "bnn.deploy.nn_lowerings"

#: torch.nn class name -> its lowering in bnn.deploy.nn_lowerings.
TORCH_LAYERS = {
    "Conv2d": "conv2d",
    "Linear": "linear",
    "BatchNorm1d": "batch_norm",
    "BatchNorm2d": "batch_norm",
    "PReLU": "prelu",
    "ReLU": "relu",
    "LeakyReLU": "leaky_relu",
    "Hardtanh": "hardtanh",
    "MaxPool2d": "max_pool2d",
    "AvgPool2d": "avg_pool2d",
    "AdaptiveAvgPool2d": "adaptive_avg_pool2d",
    "Flatten": "flatten_module",
    "Softmax": "softmax_module",
    "Identity": "identity",
    "Dropout": "identity",
    "Dropout1d": "identity",
    "Dropout2d": "identity",
    "AlphaDropout": "identity",
}


@hookimpl
def bnn_register_lowerings(register: RegisterLowering) -> None:
    for layer, lowering in TORCH_LAYERS.items():
        register(f"torch.nn:{layer}", f"{_LOWERINGS}:{lowering}")
    register("bnn_core.layers:BinaryLayerMixin", f"{_LOWERINGS}:binary_layer")
