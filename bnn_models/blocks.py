"""Building blocks of binary networks that are not binary layers themselves: the learned
shifts and activations that ReActNet puts around its binary convolutions, and the
hard-tanh family BinaryNet-style models use before a sign.

Per-channel blocks take the channel axis to be dimension 1, as ``nn.BatchNorm*d`` and
``nn.PReLU`` do, so the same block works on ``(N, C)`` (after a linear layer) and
``(N, C, L)``, ``(N, C, H, W)``, ``(N, C, D, H, W)`` (after a convolution).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

Slope = Annotated[float, Field(ge=0.0, le=1.0)]


def _along_channels(vector: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``vector`` (one value per channel) shaped to broadcast over ``x`` along dim 1."""
    if x.dim() < 2:
        raise ValueError(
            f"expected an input of shape (N, C) or (N, C, ...), got shape {tuple(x.shape)}"
        )
    if x.shape[1] != vector.numel():
        raise ValueError(
            f"expected {vector.numel()} channels on dimension 1, got shape {tuple(x.shape)}"
        )
    return vector.view(1, -1, *([1] * (x.dim() - 2)))


class LearnableBias(nn.Module):
    """A learned per-channel shift ``y = x + b`` (ReActNet's "Move").

    ReActNet puts one before each sign, so the binarization threshold of every channel is
    learned, and two around each PReLU (see :class:`RPReLU`). ``b`` holds one value per
    channel, initialised to 0 (the block starts as the identity). Options: ``channels``.
    Liu et al., ReActNet, ECCV 2020.
    """

    def __init__(self, channels: PositiveInt) -> None:
        super().__init__()
        self.channels = channels
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _along_channels(self.bias, x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class RPReLU(nn.Module):
    """ReActNet's RPReLU: a PReLU between two learned per-channel shifts.

    ``y = prelu(x + shift_in) + shift_out``, that is ``x + shift_in + shift_out`` where
    ``x + shift_in > 0`` and ``slope * (x + shift_in) + shift_out`` elsewhere, with one
    ``shift_in``, ``slope`` and ``shift_out`` per channel (``3 * channels`` parameters).
    The paper writes the shifts as ``-gamma`` and ``zeta``: moving the kink and the output
    lets each channel reshape its activation distribution, which matters when the next
    layer only sees its sign. Shifts start at 0 and slopes at ``init`` (0.25, as
    ``nn.PReLU``). Options: ``channels``, ``init``. Liu et al., ReActNet, ECCV 2020.
    """

    def __init__(self, channels: PositiveInt, init: float = 0.25) -> None:
        super().__init__()
        self.channels = channels
        self.shift_in = nn.Parameter(torch.zeros(channels))
        self.slope = nn.Parameter(torch.full((channels,), float(init)))
        self.shift_out = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = x + _along_channels(self.shift_in, x)
        return F.prelu(shifted, self.slope) + _along_channels(self.shift_out, x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


def _leaky_clamp(x: torch.Tensor, slope: float) -> torch.Tensor:
    """``x`` on [-1, 1], ``±1 + slope * (x ∓ 1)`` outside. Written with ``where`` so the
    gradient is 1 on the closed interval, boundaries included, like the clipped
    straight-through estimator (``clamp``'s gradient at the boundary differs between
    torch versions)."""
    outside = x.clamp(-1.0, 1.0)
    if slope:
        outside = outside + slope * (x - outside)
    return torch.where(x.abs() <= 1.0, x, outside)


class HardTanh(nn.Module):
    """Hard tanh: ``y = clamp(x, -1, 1)``.

    The activation BinaryNet-style models put before a binary layer: it keeps the values
    the next sign sees in the range where the straight-through estimator passes the
    gradient. Its own gradient is 1 on [-1, 1] (boundaries included) and 0 outside. No
    options, no parameters (Larq's ``hard_tanh``). Hubara et al., Binarized Neural Networks, 2016.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _leaky_clamp(x, 0.0)


class LeakyHardTanh(nn.Module):
    """Leaky hard tanh: hard tanh with slope ``slope`` outside [-1, 1].

    ``y = x`` on [-1, 1], ``1 + slope * (x - 1)`` above and ``-1 + slope * (x + 1)`` below,
    so the gradient outside [-1, 1] is ``slope`` instead of 0 (1 on [-1, 1], boundaries
    included), as leaky ReLU is to ReLU. The default ``slope=0.2`` is Larq's
    ``leaky_tanh`` (its ``alpha``); 0 gives :class:`HardTanh`. Options: ``slope`` in
    [0, 1]; no parameters.
    """

    def __init__(self, slope: Slope = 0.2) -> None:
        super().__init__()
        self.slope = float(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _leaky_clamp(x, self.slope)

    def extra_repr(self) -> str:
        return f"slope={self.slope}"


__all__ = ["HardTanh", "LeakyHardTanh", "LearnableBias", "RPReLU"]
