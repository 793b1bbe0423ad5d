"""Binarization methods as whole BConfigs, selected by one name (``bconfig: react``).

Each is a plain mapping of BConfig fields naming registered binarizers, following the
BiBench table of binary convolution families (plus IR-Net and AdaBin). Architecture
changes that some methods also make (Bi-Real's real-valued shortcuts, ReActNet's
RPReLU, FDA's noise-adaptation branch) belong to the model, not to the BConfig.
This module imports nothing, so registering the methods stays free of torch.
"""

from __future__ import annotations

from typing import Any

CLIPPED_SIGN = "ste_sign"
MEAN_ABS_SIGN = "xnor_weight"

BUNDLES: dict[str, dict[str, Any]] = {
    # BinaryNet: sign with the clipped STE on inputs and weights.
    "bnn": {"activation_pre_process": CLIPPED_SIGN, "weight_pre_process": CLIPPED_SIGN},
    # XNOR-Net: weights scaled by mean(|W|) per output channel (the input scale K is
    # optional: use scaled_input as activation_pre_process to add it).
    "xnor": {"activation_pre_process": CLIPPED_SIGN, "weight_pre_process": MEAN_ABS_SIGN},
    # DoReFa-Net at 1 bit: the same binarizers as XNOR-Net without K.
    "dorefa1": {"activation_pre_process": CLIPPED_SIGN, "weight_pre_process": MEAN_ABS_SIGN},
    # Bi-Real Net: ApproxSign gradient on inputs, magnitude-aware weights.
    "bireal": {
        "activation_pre_process": "approx_sign",
        "weight_pre_process": "magnitude_aware_sign",
    },
    # XNOR-Net++: plain signs and a learned, factorised output scale.
    "xnorpp": {
        "activation_pre_process": CLIPPED_SIGN,
        "weight_pre_process": CLIPPED_SIGN,
        "activation_post_process": "factorised_scale",
    },
    # ReActNet: RSign (learned per-channel shift, ApproxSign gradient).
    "react": {
        "activation_pre_process": {"name": "input_bias", "surrogate": "approx_sign"},
        "weight_pre_process": MEAN_ABS_SIGN,
    },
    # ReCU: ApproxSign-shaped input gradient, quantile-clamped standardised weights.
    "recu": {"activation_pre_process": "approx_sign", "weight_pre_process": "recu_weight"},
    # FDA: Fourier-series gradients on inputs and standardised weights.
    "fda": {"activation_pre_process": "fda_input", "weight_pre_process": "fda_weight"},
    # IR-Net: EDE gradient, Libra-PB weights.
    "irnet": {"activation_pre_process": "irnet_input", "weight_pre_process": "irnet_weight"},
    # AdaBin: adaptive binary sets for inputs and weights.
    "adabin": {"activation_pre_process": "adabin_input", "weight_pre_process": "adabin_weight"},
}
