"""Export lowerings of the built-in blocks (registered in :mod:`bnn_models.plugin`
through ``bnn_register_lowerings``, as a third-party plugin would)."""

from __future__ import annotations

from bnn_core.lowering import LoweringContext, to_array
from bnn_models.blocks import HardTanh, LeakyHardTanh, LearnableBias, RPReLU


def rprelu(ctx: LoweringContext, module: RPReLU) -> str:
    """RPReLU: the runtime's ``rprelu`` node with its three per-channel vectors."""
    tensors = {
        "shift_in": to_array(module.shift_in),
        "slope": to_array(module.slope),
        "shift_out": to_array(module.shift_out),
    }
    return ctx.add("rprelu", ctx.inputs[:1], tensors=tensors)


def learnable_bias(ctx: LoweringContext, module: LearnableBias) -> str:
    """LearnableBias: a per-channel shift (folds into a preceding binary layer)."""
    return ctx.add("channel_affine", ctx.inputs[:1], tensors={"shift": to_array(module.bias)})


def hardtanh(ctx: LoweringContext, module: HardTanh | LeakyHardTanh) -> str:
    """HardTanh and LeakyHardTanh: ``hardtanh`` onto [-1, 1] with the module's slope
    outside (0 for HardTanh)."""
    attrs = {"min_val": -1.0, "max_val": 1.0, "slope": float(getattr(module, "slope", 0.0))}
    return ctx.add("hardtanh", ctx.inputs[:1], attrs)
