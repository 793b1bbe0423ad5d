"""A tiny CNN laid out for binarization: convolution, batch norm, then a shifted hard
tanh, so every binary layer after the first sees a normalised input to take the sign of."""

from __future__ import annotations

import torch
from bnn_core import ConfigError
from torch import nn


class ShiftedHardTanh(nn.Module):
    """``clamp(x + shift, -1, 1)`` with one learned ``shift`` per channel (initialised to
    0): where the sign a following binary layer takes flips, learned per channel. Its
    export lowering is in ``lowering.py``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x + self.shift.reshape(1, -1, 1, 1), -1.0, 1.0)


class TinyCNN(nn.Module):
    """Three 3x3 convolutions (the last two at half resolution), each followed by batch
    norm and a shifted hard tanh, global average pooling and a linear classifier."""

    def __init__(self, num_classes: int, in_channels: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.conv3 = nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(2 * width)
        self.pool = nn.MaxPool2d(2)
        self.act1 = ShiftedHardTanh(width)
        self.act2 = ShiftedHardTanh(2 * width)
        self.act3 = ShiftedHardTanh(2 * width)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.pool(self.conv2(x))))
        x = self.act3(self.bn3(self.conv3(x)))
        return self.fc(x.mean(dim=(2, 3)))


def tiny_cnn(num_classes: int = 2, in_channels: int = 1, width: int = 8) -> TinyCNN:
    """A three-layer CNN for small images of any size (16x16 stripes by default):
    ``width`` channels, then twice that; ``num_classes`` logits."""
    if min(num_classes, in_channels, width) < 1:
        raise ConfigError(
            "example_tiny_cnn: num_classes, in_channels and width must be >= 1, got "
            f"{num_classes}, {in_channels}, {width}"
        )
    return TinyCNN(num_classes, in_channels, width)
