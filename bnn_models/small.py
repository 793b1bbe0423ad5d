"""Small networks for 28x28 inputs (MNIST, Fashion-MNIST), laid out for binarization:
convolution, pooling, batch norm, then a hard-tanh activation, so that the next binary
layer sees a normalised input to take the sign of."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn


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


def lenet5(
    num_classes: int = 10, in_channels: int = 1, width: int = 32, hidden: int = 256
) -> LeNet5:
    """LeNet-5 style CNN for 28x28 images (LeCun et al., 1998), ``width`` channels in the
    first convolution and twice that in the second."""
    return LeNet5(num_classes, in_channels, width, hidden)


def binarynet_mlp(
    num_classes: int = 10, in_features: int = 784, hidden: Sequence[int] = (1024, 1024, 1024)
) -> nn.Sequential:
    """BinaryNet's MLP (Hubara et al., 2016): fully connected layers, each followed by batch
    norm and hard tanh; the input image is flattened."""
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
