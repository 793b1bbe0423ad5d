"""Hook implementations of the built-in binarizers and binarization methods (entry
point ``bnn_binarizers``).

Targets are lazy references, so listing plugins does not import torch.
"""

from __future__ import annotations

from bnn_binarizers.bundles import BUNDLES
from bnn_core import hookimpl
from bnn_core.hookspecs import RegisterComponent, RegisterLowering

BINARIZERS = {
    # name: (reference, aliases)
    "basic_input": ("bnn_binarizers.sign:BasicInputBinarizer", ["BasicInputBinarizer"]),
    "ste_sign": ("bnn_binarizers.sign:SteSign", []),
    "approx_sign": ("bnn_binarizers.sign:ApproxSign", []),
    "swish_sign": ("bnn_binarizers.sign:SwishSign", []),
    "advanced_input": ("bnn_binarizers.sign:AdvancedInputBinarizer", ["AdvancedInputBinarizer"]),
    "stochastic_input": (
        "bnn_binarizers.sign:StochasticInputBinarizer",
        ["StochasticInputBinarizer"],
    ),
    "input_bias": ("bnn_binarizers.learnable:InputBiasBinarizer", ["InputBiasBinarizer", "rsign"]),
    "basic_scale": ("bnn_binarizers.learnable:BasicScaleBinarizer", ["BasicScaleBinarizer"]),
    "xnor_weight": ("bnn_binarizers.weight:XNORWeightBinarizer", ["XNORWeightBinarizer", "xnor"]),
    "magnitude_aware_sign": ("bnn_binarizers.weight:MagnitudeAwareSign", []),
    "ste_heaviside": ("bnn_binarizers.quantizers:SteHeaviside", []),
    "ste_tern": ("bnn_binarizers.quantizers:SteTern", []),
    "dorefa": ("bnn_binarizers.quantizers:DoReFaQuantizer", []),
    "scaled_input": ("bnn_binarizers.scaled:ScaledInputBinarizer", ["xnor_input"]),
    "factorised_scale": (
        "bnn_binarizers.scaled:FactorisedScaleBinarizer",
        ["factorized_scale", "xnorpp_scale"],
    ),
    "recu_weight": ("bnn_binarizers.standardised:ReCUWeightBinarizer", []),
    "fda_input": ("bnn_binarizers.progressive:FourierSign", ["fourier_sign"]),
    "fda_weight": ("bnn_binarizers.standardised:FDAWeightBinarizer", []),
    "irnet_input": ("bnn_binarizers.progressive:EdeSign", ["ede_sign"]),
    "irnet_weight": ("bnn_binarizers.standardised:LibraWeightBinarizer", ["libra_pb"]),
    "adabin_input": ("bnn_binarizers.affine:AdaBinActivation", []),
    "adabin_weight": ("bnn_binarizers.affine:AdaBinWeight", []),
}

#: Binarizer class -> its export lowering (bnn_core.lowering's SIGN and WEIGHT_SIGN, or
#: bnn_binarizers.lowering's). Subclasses (basic_input, fda_weight, irnet_weight) inherit.
LOWERINGS = {
    "bnn_binarizers.sign:SteSign": "bnn_core.lowering:SIGN",
    "bnn_binarizers.sign:ApproxSign": "bnn_core.lowering:SIGN",
    "bnn_binarizers.sign:SwishSign": "bnn_core.lowering:SIGN",
    "bnn_binarizers.sign:AdvancedInputBinarizer": "bnn_core.lowering:SIGN",
    "bnn_binarizers.sign:StochasticInputBinarizer": "bnn_core.lowering:SIGN",
    "bnn_binarizers.progressive:FourierSign": "bnn_core.lowering:SIGN",
    "bnn_binarizers.progressive:EdeSign": "bnn_core.lowering:SIGN",
    "bnn_binarizers.weight:XNORWeightBinarizer": "bnn_core.lowering:WEIGHT_SIGN",
    "bnn_binarizers.weight:MagnitudeAwareSign": "bnn_core.lowering:WEIGHT_SIGN",
    "bnn_binarizers.standardised:ReCUWeightBinarizer": "bnn_core.lowering:WEIGHT_SIGN",
    "bnn_binarizers.learnable:InputBiasBinarizer": "bnn_binarizers.lowering:INPUT_BIAS",
    "bnn_binarizers.learnable:BasicScaleBinarizer": "bnn_binarizers.lowering:BASIC_SCALE",
    "bnn_binarizers.scaled:FactorisedScaleBinarizer": "bnn_binarizers.lowering:FACTORISED_SCALE",
}


@hookimpl
def bnn_register_binarizers(register: RegisterComponent) -> None:
    for name, (reference, aliases) in BINARIZERS.items():
        register(name, reference, aliases=aliases)


@hookimpl
def bnn_register_bconfigs(register: RegisterComponent) -> None:
    for name, fields in BUNDLES.items():
        register(name, fields)


@hookimpl
def bnn_register_lowerings(register: RegisterLowering) -> None:
    for binarizer, lowering in LOWERINGS.items():
        register(binarizer, lowering)
