"""How the plugin's block exports to bnn's packed runtime (``bnn.deploy.export``).

A module lowering receives a context (``bnn_core.lowering.LoweringContext``) and the
module, appends runtime nodes, and returns the name of the value holding the module's
output. The binarizer needs no code: ``SwishSign`` computes a plain sign, so
``plugin.py`` registers bnn_core's ready-made ``SIGN`` lowering for it.
"""

from __future__ import annotations

from bnn_core.lowering import LoweringContext, to_array

from bnn_example_plugin.models import ShiftedHardTanh


def shifted_hardtanh(ctx: LoweringContext, module: ShiftedHardTanh) -> str:
    """``clamp(x + shift, -1, 1)``: a per-channel shift, then a hard tanh."""
    shifted = ctx.add(
        "channel_affine",
        ctx.inputs[:1],
        tensors={"shift": to_array(module.shift)},
        name=f"{ctx.name}.shift",
    )
    attrs = {"min_val": -1.0, "max_val": 1.0, "slope": 0.0}
    return ctx.add("hardtanh", [shifted], attrs)
