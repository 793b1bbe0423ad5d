"""The framework's own plugin: the module-swap map of the binary layers and ``identity``.

It is registered before any entry point and cannot be disabled, because the conversion
engine needs the layer map even when plugin autoloading is off.
"""

from __future__ import annotations

from bnn_core.hookspecs import RegisterComponent, RegisterLayer, hookimpl

_LAYERS = (
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
)


@hookimpl
def bnn_register_layers(register: RegisterLayer) -> None:
    for name in _LAYERS:
        register(f"torch.nn:{name}", f"bnn_core.layers:Binary{name}")


@hookimpl
def bnn_register_binarizers(register: RegisterComponent) -> None:
    register("identity", "bnn_core.binarizer:Identity", aliases=["Identity"])
