"""The protocol by which a plugin says how its modules export to the packed runtime.

A plugin registers lowerings through the ``bnn_register_lowerings`` hook,
``register(module_type, lowering)``; the lowering of a module type applies to its
subclasses too (the nearest registered class in the MRO wins). A lowering is one of:

* a :class:`BinarizerLowering`, for a binarizer used inside a binary layer: how it folds
  into the layer's per-channel threshold (input role), its 1-bit weights (weight role)
  or its per-channel output scale and shift (output role);
* a module lowering, a function ``lower(ctx, module) -> str`` that appends runtime
  nodes through ``ctx`` (a :class:`LoweringContext`) and returns the name of the value
  holding the module's output. A module with a module lowering is a leaf when the model
  is traced: its ``forward`` is not traced through.

To refuse a module it cannot lower (an unsupported option), a lowering raises
:class:`LoweringError` with the reason; the exporter names the layer. docs/deploy.md,
"Adding a lowering", walks through a complete example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from bnn_core.errors import BnnError

__all__ = [
    "SIGN",
    "WEIGHT_SIGN",
    "BinarizerLowering",
    "ChannelAffine",
    "LoweringContext",
    "LoweringError",
    "ModuleLowering",
    "no_threshold",
    "to_array",
]


class LoweringError(BnnError, ValueError):
    """A lowering cannot express this module in the packed runtime; the message says why
    (the exporter prefixes the layer's name)."""


@dataclass(frozen=True)
class ChannelAffine:
    """An output binarizer in the runtime's terms: ``y * scale[c] + shift[c]`` per output
    channel, that times ``rows[h] * cols[w]`` when ``spatial`` is ``(rows, cols)`` (1-D
    arrays at least as long as the output's height and width). ``None`` means neutral."""

    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    spatial: tuple[np.ndarray, np.ndarray] | None = None


#: ``threshold(binarizer, channels)``: the per-input-channel ``t`` of ``sign(x + t)``
#: (a float array of ``channels`` values), or ``None`` for 0.
ThresholdFold = Callable[[nn.Module, int], "np.ndarray | None"]
#: ``output(binarizer, channels)``: the binarizer as a per-output-channel affine map.
OutputFold = Callable[[nn.Module, int], ChannelAffine]


@dataclass(frozen=True)
class BinarizerLowering:
    """How a binarizer folds into a packed binary layer, for each role it can fold in.

    * ``threshold``: in ``activation_pre_process``, the binarizer computes
      ``sign(x + t)`` (``+1`` for ``>= 0``) with ``t`` what this function returns;
    * ``weight``: in ``weight_pre_process``, the binarizer's output is a sign times one
      magnitude per output channel; the exporter evaluates it once on the weights and
      stores the signs as bits and the magnitudes as the layer's scale;
    * ``output``: in ``activation_post_process``, the binarizer is the affine map this
      function returns.

    A role left unset is refused for this binarizer. The exporter checks every fold on a
    probe input, so a lowering that does not describe what the binarizer computes is
    refused rather than exported wrong.
    """

    threshold: ThresholdFold | None = None
    weight: bool = False
    output: OutputFold | None = None


def no_threshold(binarizer: nn.Module, channels: int) -> None:
    """The threshold of a plain sign, ``sign(x)``: 0 (returned as ``None``)."""
    return None


#: A sign binarizer (``+1`` for ``x >= 0``, else ``-1``) usable on inputs and weights.
SIGN = BinarizerLowering(threshold=no_threshold, weight=True)
#: A weight binarizer giving a sign times one magnitude per output channel.
WEIGHT_SIGN = BinarizerLowering(weight=True)


class LoweringContext(Protocol):
    """What a module lowering sees of the graph being built (the exporter implements it).

    Shapes are batch first (``[N, C, H, W]``); ``None`` where the value is not a tensor.
    """

    @property
    def name(self) -> str:
        """The module's qualified name in the model (``layer1.0.conv``)."""
        ...

    @property
    def inputs(self) -> list[str]:
        """The runtime values of the module's tensor arguments, in call order."""
        ...

    @property
    def input_shapes(self) -> list[list[int] | None]:
        """The shapes of :attr:`inputs`."""
        ...

    @property
    def output_shape(self) -> list[int] | None:
        """The shape of the module's output."""
        ...

    def add(
        self,
        op: str,
        inputs: Sequence[str],
        attrs: dict[str, Any] | None = None,
        tensors: dict[str, np.ndarray] | None = None,
        *,
        name: str | None = None,
        shape: list[int] | None = None,
    ) -> str:
        """Append a runtime node: ``op`` (an operation of the ``.bnnpack`` format, see
        docs/deploy.md) reading the values ``inputs``, with its attributes and its float
        tensors by role; return its value name. ``name`` defaults to the module's name
        (made unique); ``shape`` defaults to the module's output shape."""
        ...

    def binary(self, layer: nn.Module) -> str:
        """Lower ``layer``, a binary ``nn.Conv2d`` or ``nn.Linear`` subclass with the three
        binarizer slots, to one packed binary node (plus a ``spatial_scale`` node for a
        spatial output scale), folding its binarizers through their lowerings."""
        ...


#: ``lower(ctx, module) -> value name``: a module lowering.
ModuleLowering = Callable[[LoweringContext, nn.Module], str]


def to_array(tensor: torch.Tensor) -> np.ndarray:
    """A float64 NumPy copy of ``tensor`` (detached, on the CPU), as nodes store it."""
    return tensor.detach().double().cpu().numpy().copy()
