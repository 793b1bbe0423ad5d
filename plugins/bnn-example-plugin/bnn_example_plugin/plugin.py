"""Hook implementations of bnn-example-plugin (entry point ``bnn-example-plugin``).

Every target is a lazy ``"module:attribute"`` reference: bnn imports it on first use,
so listing plugins (``bnn list-plugins``) stays fast and never imports torch.
"""

from __future__ import annotations

from bnn_core import hookimpl
from bnn_core.hookspecs import RegisterComponent, RegisterLowering


@hookimpl
def bnn_register_binarizers(register: RegisterComponent) -> None:
    """Register the SignSwish binarizer."""
    register("example_swish_sign", "bnn_example_plugin.binarizers:SwishSign")


@hookimpl
def bnn_register_models(register: RegisterComponent) -> None:
    """Register the tiny CNN builder."""
    register("example_tiny_cnn", "bnn_example_plugin.models:tiny_cnn")


@hookimpl
def bnn_register_datasets(register: RegisterComponent) -> None:
    """Register the generated stripes dataset."""
    register("example_stripes", "bnn_example_plugin.datasets:stripes")


@hookimpl
def bnn_register_lowerings(register: RegisterLowering) -> None:
    """Register how the binarizer and the model's block export to the packed runtime."""
    register(
        "bnn_example_plugin.binarizers:SwishSign",
        "bnn_core.lowering:SIGN",
        name="example_swish_sign",
    )
    register(
        "bnn_example_plugin.models:ShiftedHardTanh",
        "bnn_example_plugin.lowering:shifted_hardtanh",
        name="example_shifted_hardtanh",
    )
