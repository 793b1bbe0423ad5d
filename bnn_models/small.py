"""Small networks for 28x28 inputs (MNIST, Fashion-MNIST), laid out for binarization.

LeNet-5 and the BinaryNet MLP put batch norm and a hard tanh after each layer, so the
next binary layer sees a normalised input to take the sign of; the Bi-Real ResNet-8
carries real values around each binary convolution instead."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence

import torch
from pydantic import PositiveInt
from torch import nn

from bnn_core.config import recommended_binarization
from bnn_models.binarization import DOWNSAMPLE_FLOAT, FIRST_AND_LAST_FLOAT
from bnn_models.residual import BiRealResNet, conv_bn_stem


class LeNet5(nn.Module):
    """A LeNet-5 style CNN: two 5x5 convolutions and two fully connected layers."""

    def __init__(self, num_classes: int, in_channels: int, width: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc1 = nn.Linear(2 * width * 7 * 7, hidden, bias=False)
        self.bn3 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.Hardtanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        x = self.act(self.bn2(self.pool(self.conv2(x))))
        x = self.act(self.bn3(self.fc1(x.flatten(1))))
        return self.fc2(x)


@recommended_binarization("xnor", FIRST_AND_LAST_FLOAT)
def lenet5(
    num_classes: int = 10, in_channels: int = 1, width: int = 32, hidden: int = 256
) -> LeNet5:
    """LeNet-5 style CNN for 28x28 images (LeCun et al., 1998).

    Two 5x5 convolutions, ``width`` channels in the first and twice that in the second,
    then a hidden fully connected layer of ``hidden`` units and the classifier.

    Declared binarization: ``xnor`` (sign inputs, mean-|W| scaled weights); first
    convolution and classifier float, so ``conv2`` and ``fc1`` are binary."""
    return LeNet5(num_classes, in_channels, width, hidden)


@recommended_binarization("bnn", FIRST_AND_LAST_FLOAT)
def binarynet_mlp(
    num_classes: int = 10, in_features: int = 784, hidden: Sequence[int] = (1024, 1024, 1024)
) -> nn.Sequential:
    """BinaryNet's MLP for 28x28 images (Hubara et al., 2016).

    Fully connected layers, each followed by batch norm and hard tanh; the input image
    is flattened.

    Declared binarization: ``bnn`` (BinaryNet's clipped-STE signs on inputs and
    weights); the first and last fully connected layers float."""
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    sizes = [in_features, *hidden]
    for index, (n_in, n_out) in enumerate(itertools.pairwise(sizes), start=1):
        layers += [
            (f"fc{index}", nn.Linear(n_in, n_out, bias=False)),
            (f"bn{index}", nn.BatchNorm1d(n_out)),
            (f"act{index}", nn.Hardtanh()),
        ]
    layers.append((f"fc{len(sizes)}", nn.Linear(sizes[-1], num_classes)))

    return nn.Sequential(OrderedDict(layers))


@recommended_binarization("bireal", FIRST_AND_LAST_FLOAT, DOWNSAMPLE_FLOAT)
def resnet8_bireal(
    num_classes: PositiveInt = 10,
    in_channels: PositiveInt = 1,
    width: PositiveInt = 32,
    rprelu: bool = False,
    stem_pool: bool = False,
) -> BiRealResNet:
    """Bi-Real ResNet-8 for 28x28 images (MNIST, Fashion-MNIST).

    A float 3x3 stem with ``width`` channels, then 6 binary 3x3 convolutions in three
    stages (``width``, 2x and 4x channels at 28, 14 and 7 pixels), each with a
    real-valued shortcut and PReLU (RPReLU with ``rprelu``). ``stem_pool`` adds a 3x3
    max pooling with stride 2 after the stem, so the stages run at 14, 7 and 4 pixels:
    about a quarter of the arithmetic, which buys width or epochs on a CPU.

    Declared binarization: ``bireal``; stem, classifier and the two downsampling 1x1
    convolutions float. Liu et al., Bi-Real Net, ECCV 2018.
    """
    stages = [(width, 2, 1), (2 * width, 2, 2), (4 * width, 2, 2)]
    stem = conv_bn_stem(in_channels, width, max_pool=stem_pool)
    return BiRealResNet(stem, width, stages, num_classes, act="rprelu" if rprelu else "prelu")
