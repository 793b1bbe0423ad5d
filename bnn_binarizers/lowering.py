"""Export lowerings of the built-in binarizers that carry learned state: how each folds
into a packed binary layer (registered in :mod:`bnn_binarizers.plugin`; the plain
signs use :data:`bnn_core.lowering.SIGN` and :data:`~bnn_core.lowering.WEIGHT_SIGN`)."""

from __future__ import annotations

import numpy as np
from torch import nn

from bnn_core.lowering import BinarizerLowering, ChannelAffine, LoweringError, to_array


def input_bias_threshold(binarizer: nn.Module, channels: int) -> np.ndarray:
    """RSign computes ``sign(x + b)``: its learned shift ``b`` is the threshold."""
    return to_array(binarizer.bias).reshape(-1)


def basic_scale_output(binarizer: nn.Module, channels: int) -> ChannelAffine:
    """``y * alpha``: alpha is the per-channel scale."""
    return ChannelAffine(scale=to_array(binarizer.alpha).reshape(-1))


def factorised_scale_output(binarizer: nn.Module, channels: int) -> ChannelAffine:
    """``y * alpha_c * alpha_h * alpha_w``: the channel factor is the scale, the two
    spatial factors the rows and columns of a spatial scale (none for a linear layer)."""
    factors = [to_array(f).reshape(-1) for f in binarizer.spatial_alpha]
    scale = to_array(binarizer.alpha).reshape(-1)
    if not factors:
        return ChannelAffine(scale=scale)
    if len(factors) != 2:
        raise LoweringError(f"a factorised scale needs 2 spatial axes here, not {len(factors)}")
    return ChannelAffine(scale=scale, spatial=(factors[0], factors[1]))


INPUT_BIAS = BinarizerLowering(threshold=input_bias_threshold)
BASIC_SCALE = BinarizerLowering(output=basic_scale_output)
FACTORISED_SCALE = BinarizerLowering(output=factorised_scale_output)
