"""Hook implementations of the built-in models (entry point ``bnn_models``)."""

from __future__ import annotations

from bnn_core import hookimpl
from bnn_core.hookspecs import RegisterComponent


@hookimpl
def bnn_register_models(register: RegisterComponent) -> None:
    register("lenet5", "bnn_models.small:lenet5")
    register("binarynet_mlp", "bnn_models.small:binarynet_mlp")


@hookimpl
def bnn_register_blocks(register: RegisterComponent) -> None:
    register("rprelu", "bnn_models.blocks:RPReLU", aliases=["RPReLU"])
    register("learnable_bias", "bnn_models.blocks:LearnableBias", aliases=["LearnableBias", "move"])
    register("hardtanh", "bnn_models.blocks:HardTanh", aliases=["hard_tanh"])
    register("leaky_hardtanh", "bnn_models.blocks:LeakyHardTanh", aliases=["leaky_tanh"])
