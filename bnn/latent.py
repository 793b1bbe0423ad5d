"""Which parameters of a model are latent binary weights, and which belong to binarizers.

A binary layer keeps a float ``weight`` and binarizes it on every forward pass through its
``weight_pre_process``. That float tensor is the *latent* weight: only its sign reaches
the network, so training tricks treat it apart from ordinary parameters (no weight decay,
clipping, Bop, flip counting). A layer's weight counts as binary when its weight
binarizer declares a binary output: ``value_set`` ``{-1,+1}`` or ``alpha*{-1,+1}``, or
``bit_width`` 1 (see :class:`bnn_core.Binarizer`). A layer left float, or with the
identity or an undeclared module on its weight, does not count.
"""

from __future__ import annotations

from torch import nn

from bnn_core.binarizer import ValueSet
from bnn_core.layers import SLOTS, is_binary_layer

BINARY_VALUE_SETS = frozenset({ValueSet.BINARY, ValueSet.SCALED_BINARY})


def binarizes(binarizer: nn.Module) -> bool:
    """Whether ``binarizer`` declares a 1-bit output (``{-1,+1}``, ``alpha*{-1,+1}`` or
    ``bit_width`` 1)."""
    return (
        getattr(binarizer, "value_set", None) in BINARY_VALUE_SETS
        or getattr(binarizer, "bit_width", None) == 1
    )


def binary_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The latent weights of ``model``'s binary layers whose weight binarizer binarizes,
    by qualified parameter name (``"features.0.weight"``), in definition order. A weight
    shared by several layers appears once, under its first name."""
    found: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        if not is_binary_layer(module) or not binarizes(module.weight_pre_process):
            continue
        weight = module.weight
        if isinstance(weight, nn.Parameter) and id(weight) not in seen:
            seen.add(id(weight))
            found[f"{name}.weight" if name else "weight"] = weight
    return found


def binarizer_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters held by the binarizers of ``model``'s binary layers (learned scales,
    thresholds, ...), by qualified name, in definition order, each once."""
    found: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        if not is_binary_layer(module):
            continue
        for slot in SLOTS:
            prefix = f"{name}.{slot}" if name else slot
            for key, parameter in getattr(module, slot).named_parameters(prefix=prefix):
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    found[key] = parameter
    return found
