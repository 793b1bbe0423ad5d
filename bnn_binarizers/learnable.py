"""Binarizers with learned per-channel parameters: a shifted sign (ReActNet's RSign)
and a learned output scale (XNOR-Net++)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from bnn_binarizers.functional import ClippedIdentity, approx_sign_derivative, surrogate_sign
from bnn_core.binarizer import INPUT, OUTPUT, Binarizer, ValueSet


def channel_shape(module: nn.Module, channels: int) -> list[int]:
    """Shape broadcasting a per-channel vector over a layer's activations: ``[1, C, 1, ...]``
    for convolutions, ``[1, C]`` for linear layers (seed-compatible state-dict shapes)."""
    weight = getattr(module, "weight", None)
    spatial = weight.dim() - 2 if isinstance(weight, torch.Tensor) and weight.dim() > 2 else 0
    return [1, channels] + [1] * spatial


def per_channel(parameter: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``parameter`` (shaped by :func:`channel_shape`) arranged to broadcast over ``x``:
    linear layers have channels last, whatever the leading dimensions; convolutions on
    an input without a batch axis drop the leading 1."""
    if parameter.dim() == 2:
        return parameter if x.dim() == 2 else parameter.reshape(-1)
    return parameter if x.dim() == parameter.dim() else parameter.squeeze(0)


def layer_channels(module: nn.Module | None, *attributes: str) -> int:
    """The first of ``attributes`` (``in_channels``, ``out_features``, ...) that ``module``
    has as an int; a clear TypeError when it has none."""
    for attribute in attributes:
        value = getattr(module, attribute, None)
        if isinstance(value, int):
            return value
    raise TypeError(
        f"this binarizer needs a layer with {' or '.join(attributes)}, got "
        f"{type(module).__name__ if module is not None else 'no layer'}"
    )


class InputBiasBinarizer(Binarizer):
    """RSign: sign of the input shifted by a learned per-input-channel bias (ReActNet).

    Forward ``sign(x + b)`` in {-1, +1}; backward, for ``x`` and ``b`` alike, the
    surrogate derivative at ``x + b``: with ``surrogate="clipped"`` (the default, as in
    the seed) the clipped straight-through estimator, 1 where ``|x + b| <= 1``; with
    ``surrogate="approx_sign"`` ReActNet's own choice, Bi-Real's ``2 - 2|x + b|`` for
    ``|x + b| <= 1``, else 0. ``b`` has one value per input channel, initialised to 0;
    works for Linear, Conv1d, Conv2d and Conv3d (the seed's version crashed on Conv1d
    and skipped Linear). Packable: the shift folds into a per-channel threshold.
    Liu et al., ReActNet, ECCV 2020.
    """

    roles = frozenset({INPUT})
    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True
    paper = "Liu et al., ReActNet, ECCV 2020"

    def __init__(
        self,
        module: nn.Module | None = None,
        surrogate: Literal["clipped", "approx_sign"] = "clipped",
    ) -> None:
        super().__init__()
        channels = layer_channels(module, "in_channels", "in_features")
        self.bias = nn.Parameter(torch.zeros(channel_shape(module, channels)))
        self.surrogate = surrogate
        self._derivative = (
            ClippedIdentity(1.0) if surrogate == "clipped" else approx_sign_derivative
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return surrogate_sign(x + per_channel(self.bias, x), self._derivative)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        shifted = (x + per_channel(self.bias, x)).abs()
        if self.surrogate == "clipped":
            return (shifted <= 1).to(x.dtype)
        return torch.where(shifted <= 1, 2 - 2 * shifted, torch.zeros_like(shifted))

    def extra_repr(self) -> str:
        return "" if self.surrogate == "clipped" else f"surrogate={self.surrogate!r}"


class BasicScaleBinarizer(Binarizer):
    """Learned per-output-channel scale of the layer output (XNOR-Net++).

    Forward ``y * alpha`` with ``alpha`` one learnable value per output channel,
    initialised to 1 and broadcast over the output; backward by autograd
    (``d/dy = alpha``). Real-valued output; packable (the scale folds into the output
    transform). Bulat & Tzimiropoulos, XNOR-Net++, BMVC 2019.
    """

    roles = frozenset({OUTPUT})
    value_set = ValueSet.REAL
    packable = True
    paper = "Bulat & Tzimiropoulos, XNOR-Net++, BMVC 2019"

    def __init__(self, module: nn.Module | None = None) -> None:
        super().__init__()
        channels = layer_channels(module, "out_channels", "out_features")
        self.alpha = nn.Parameter(torch.ones(channel_shape(module, channels)))

    def forward(self, x_after: torch.Tensor, x_before: torch.Tensor | None = None) -> torch.Tensor:
        return x_after * per_channel(self.alpha, x_after)

    def expected_grad(self, x: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output * per_channel(self.alpha, x)

    def extra_repr(self) -> str:
        return f"{list(self.alpha.shape)}"
