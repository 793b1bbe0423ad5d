"""Bi-Real Net's residual design, shared by the ImageNet, CIFAR and 28x28 ResNets.

Bi-Real Net gives every binary 3x3 convolution its own real-valued shortcut ("one
block per convolution") instead of one shortcut per two convolutions: the real
activations before each sign reach the next block, so the information the sign
discards is carried around it. Where a block changes resolution or width, the shortcut
is an average pooling followed by a 1x1 convolution and batch norm (kept real-valued),
or, in the CIFAR ResNet-20, He et al.'s parameter-free subsample-and-zero-pad shortcut.

A block computes ``act(bn(conv3x3(x)) + shortcut(x))``; the sign in front of the
convolution is not part of the model: it is the ``activation_pre_process`` binarizer
the binary layer gets when the model is prepared. Unprepared, the network is the
real-valued counterpart (the teacher of two-stage training and distillation).
Liu et al., Bi-Real Net, ECCV 2018; Liu et al., ReActNet, ECCV 2020.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bnn_models.blocks import RPReLU

Activation = Literal["prelu", "rprelu"]
Shortcut = Literal["projection", "zero_pad"]


def activation(kind: Activation, channels: int) -> nn.Module:
    """The activation after each shortcut addition: PReLU, or ReActNet's RPReLU."""
    return RPReLU(channels) if kind == "rprelu" else nn.PReLU(channels)


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Bi-Real Net's downsampling shortcut: 2x2 average pooling (when ``stride`` is 2),
    a 1x1 convolution and batch norm. The pooling rounds up, as a padded 3x3
    convolution with stride 2 does, so odd sizes match the block's output."""
    layers: list[tuple[str, nn.Module]] = []
    if stride != 1:
        layers.append(("pool", nn.AvgPool2d(stride, stride, ceil_mode=True)))
    layers += [
        ("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False)),
        ("bn", nn.BatchNorm2d(out_channels)),
    ]
    return nn.Sequential(OrderedDict(layers))


class ZeroPadShortcut(nn.Module):
    """He et al.'s parameter-free shortcut (option A): keep every ``stride``-th pixel
    and append zero channels up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra}"


class BiRealBlock(nn.Module):
    """One 3x3 convolution (binary once prepared) with batch norm, its real-valued
    shortcut and an activation: ``act(bn(conv(x)) + shortcut(x))``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        act: Activation = "prelu",
        shortcut: Shortcut = "projection",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = (
                projection(in_channels, out_channels, stride)
                if shortcut == "projection"
                else ZeroPadShortcut(in_channels, out_channels, stride)
            )
        self.act = activation(act, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(self.bn(self.conv(x)) + shortcut)


class BiRealResNet(nn.Module):
    """A stem, stages of :class:`BiRealBlock` (``layer1``, ``layer2``, ...; the first
    block of a stage changes stride and width), global average pooling and a linear
    classifier ``fc``.

    ``stages`` lists ``(channels, blocks, stride)`` per stage; ``stem`` is any module
    producing ``stem_channels`` channels.
    """

    def __init__(
        self,
        stem: nn.Module,
        stem_channels: int,
        stages: Sequence[tuple[int, int, int]],
        num_classes: int,
        act: Activation = "prelu",
        shortcut: Shortcut = "projection",
    ) -> None:
        super().__init__()
        self.stem = stem
        channels = stem_channels
        for index, (width, blocks, stride) in enumerate(stages, start=1):
            stage = [BiRealBlock(channels, width, stride, act, shortcut)]
            stage += [BiRealBlock(width, width, 1, act, shortcut) for _ in range(blocks - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*stage))
            channels = width
        self.num_stages = len(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.fc(self.pool(x).flatten(1))


def conv_bn_stem(
    in_channels: int, channels: int, kernel_size: int = 3, stride: int = 1, max_pool: bool = False
) -> nn.Sequential:
    """A float convolution and batch norm, then optionally ResNet's 3x3 max pooling with
    stride 2. No activation: the next block's sign (or shortcut) takes the normalised
    values, as in Bi-Real Net."""
    layers: list[tuple[str, nn.Module]] = [
        (
            "conv",
            nn.Conv2d(in_channels, channels, kernel_size, stride, kernel_size // 2, bias=False),
        ),
        ("bn", nn.BatchNorm2d(channels)),
    ]
    if max_pool:
        layers.append(("pool", nn.MaxPool2d(3, 2, 1)))
    return nn.Sequential(OrderedDict(layers))


__all__ = ["BiRealBlock", "BiRealResNet", "ZeroPadShortcut", "conv_bn_stem", "projection"]
