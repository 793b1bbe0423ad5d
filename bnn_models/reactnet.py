"""ReActNet-A: ReActNet's binary network on a MobileNet-V1 backbone.

MobileNet-V1's depthwise 3x3 + pointwise 1x1 pairs become two blocks, each a binary
convolution with batch norm, a real-valued shortcut around it and RPReLU: a full 3x3
convolution (the depthwise convolution replaced, since a binary depthwise one carries
too little information) that keeps the width, then a 1x1 convolution. Where the 3x3
convolution has stride 2 its shortcut is 2x2 average pooling; where the 1x1
convolution doubles the width its shortcut is the input duplicated along the channels.
The paper computes the doubling with two C -> C convolutions whose outputs, each
plus the input, are concatenated; here one C -> 2C convolution does the same (same
weights, same batch-norm channels, same binary input). RSign, the learned threshold
before each binary convolution, is the ``react`` method's input binarizer.

Widths: a float 3x3 stem with 32 channels and stride 2, then 13 blocks with
64, 128, 128, 256, 256, 512 (x6), 1024 and 1024 channels, average pooling and ``fc``.
Liu et al., ReActNet, ECCV 2020; Howard et al., MobileNets, 2017.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

import torch
from pydantic import PositiveInt
from torch import nn

from bnn_core.config import recommended_binarization
from bnn_models.binarization import FIRST_AND_LAST_FLOAT
from bnn_models.blocks import RPReLU

STEM_WIDTH = 32
WIDTHS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)


class ReActBlock(nn.Module):
    """A 3x3 and a 1x1 convolution (binary once prepared), each with batch norm, a
    real-valued shortcut and RPReLU. ``stride`` 2 halves the resolution in the 3x3
    part; ``out_channels`` is ``in_channels`` or twice it."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if out_channels not in (in_channels, 2 * in_channels):
            raise ValueError(
                f"a ReActNet block keeps or doubles the width, got {in_channels} -> "
                f"{out_channels} channels"
            )
        self.conv3x3 = nn.Conv2d(in_channels, in_channels, 3, stride, 1, bias=False)
        self.bn3x3 = nn.BatchNorm2d(in_channels)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else None
        self.act3x3 = RPReLU(in_channels)
        self.conv1x1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn1x1 = nn.BatchNorm2d(out_channels)
        self.act1x1 = RPReLU(out_channels)
        self.duplicate = out_channels == 2 * in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.pool is None else self.pool(x)
        x = self.act3x3(self.bn3x3(self.conv3x3(x)) + shortcut)
        shortcut = torch.cat([x, x], dim=1) if self.duplicate else x
        return self.act1x1(self.bn1x1(self.conv1x1(x)) + shortcut)


class ReActNetA(nn.Module):
    """The ReActNet-A network (see the module docstring)."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, STEM_WIDTH, 3, 2, 1, bias=False),
                bn=nn.BatchNorm2d(STEM_WIDTH),
            )
        )
        blocks = []
        for n_in, n_out in itertools.pairwise((STEM_WIDTH, *WIDTHS)):
            # Every widening block halves the resolution, except the first (32 -> 64).
            stride = 2 if n_out != n_in and n_in != STEM_WIDTH else 1
            blocks.append(ReActBlock(n_in, n_out, stride))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(WIDTHS[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.stem(x))
        return self.fc(self.pool(x).flatten(1))


@recommended_binarization("react", FIRST_AND_LAST_FLOAT)
def reactnet_a(num_classes: PositiveInt = 1000, in_channels: PositiveInt = 3) -> ReActNetA:
    """ReActNet-A for ImageNet, on MobileNet-V1 (Liu et al., 2020).

    MobileNet-V1 turned into 13 blocks of a binary 3x3 and a binary 1x1 convolution
    with real-valued shortcuts and RPReLU.

    Declared binarization: the ``react`` method (RSign inputs, mean-|W| scaled weights);
    only the stem convolution and the classifier stay float (every 1x1 convolution is
    binary, as in the paper). Liu et al., ReActNet, ECCV 2020.
    """
    return ReActNetA(num_classes, in_channels)
