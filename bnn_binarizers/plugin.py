"""Hook implementations of the built-in binarizers (entry point ``bnn_binarizers``).

Targets are lazy references, so listing plugins does not import torch.
"""

from __future__ import annotations

from bnn_core import hookimpl
from bnn_core.hookspecs import RegisterComponent

BINARIZERS = {
    # name: (reference, aliases)
    "basic_input": ("bnn_binarizers.sign:BasicInputBinarizer", ["BasicInputBinarizer"]),
    "ste_sign": ("bnn_binarizers.sign:SteSign", []),
    "approx_sign": ("bnn_binarizers.sign:ApproxSign", []),
    "advanced_input": ("bnn_binarizers.sign:AdvancedInputBinarizer", ["AdvancedInputBinarizer"]),
    "stochastic_input": (
        "bnn_binarizers.sign:StochasticInputBinarizer",
        ["StochasticInputBinarizer"],
    ),
    "input_bias": ("bnn_binarizers.learnable:InputBiasBinarizer", ["InputBiasBinarizer", "rsign"]),
    "basic_scale": ("bnn_binarizers.learnable:BasicScaleBinarizer", ["BasicScaleBinarizer"]),
    "xnor_weight": ("bnn_binarizers.weight:XNORWeightBinarizer", ["XNORWeightBinarizer", "xnor"]),
}


@hookimpl
def bnn_register_binarizers(register: RegisterComponent) -> None:
    for name, (reference, aliases) in BINARIZERS.items():
        register(name, reference, aliases=aliases)
