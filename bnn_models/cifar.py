"""Networks for 32x32 images (CIFAR-10/100) used throughout the binary-network
literature: a Bi-Real ResNet-18, the 3-stage ResNet-20 and VGG-small.

The ResNets use Bi-Real Net's one-convolution blocks (see :mod:`bnn_models.residual`)
behind a 3x3 stem without pooling, as in the CIFAR experiments of IR-Net, ReCU and
BiBench. VGG-small is the convolution stack of BinaryNet's CIFAR-10 network with the
single classifier of LQ-Nets / XNOR-Net-style comparisons.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

from pydantic import PositiveInt
from torch import nn

from bnn_core.config import recommended_binarization
from bnn_models.binarization import DOWNSAMPLE_FLOAT, FIRST_AND_LAST_FLOAT
from bnn_models.blocks import HardTanh
from bnn_models.residual import BiRealResNet, conv_bn_stem

VGG_SMALL_WIDTHS = (128, 128, 256, 256, 512, 512)


@recommended_binarization("bireal", FIRST_AND_LAST_FLOAT, DOWNSAMPLE_FLOAT)
def resnet18_cifar(
    num_classes: PositiveInt = 10, in_channels: PositiveInt = 3, rprelu: bool = False
) -> BiRealResNet:
    """Bi-Real ResNet-18 for CIFAR (32x32 images).

    A 3x3 stem with 64 channels, then 16 binary 3x3 convolutions in four stages (64,
    128, 256, 512 channels; 4 blocks each), each with a real-valued shortcut and PReLU
    (RPReLU with ``rprelu``).

    Declared binarization: ``bireal``; stem, classifier and downsampling 1x1
    convolutions float. 11.2M parameters with 10 classes, as the usual CIFAR ResNet-18.
    Liu et al., Bi-Real Net, ECCV 2018.
    """
    stages = [(64, 4, 1), (128, 4, 2), (256, 4, 2), (512, 4, 2)]
    stem = conv_bn_stem(in_channels, 64)
    return BiRealResNet(stem, 64, stages, num_classes, act="rprelu" if rprelu else "prelu")


@recommended_binarization("bireal", FIRST_AND_LAST_FLOAT)
def resnet20_cifar(
    num_classes: PositiveInt = 10, in_channels: PositiveInt = 3, rprelu: bool = False
) -> BiRealResNet:
    """ResNet-20 for CIFAR (32x32 images) with Bi-Real shortcuts.

    He et al.'s CIFAR ResNet-20 (2016): a 3x3 stem with 16 channels, then three stages
    of 16, 32 and 64 channels with 6 binary 3x3 convolutions each, each with a
    real-valued shortcut (Bi-Real style, as IR-Net binarizes it) and PReLU (RPReLU with
    ``rprelu``). Downsampling shortcuts are parameter-free (subsample and zero-pad, He
    et al.'s option A), so the model has the paper's 0.27M parameters.

    Declared binarization: ``bireal``; stem and classifier float.
    """
    stages = [(16, 6, 1), (32, 6, 2), (64, 6, 2)]
    stem = conv_bn_stem(in_channels, 16)
    return BiRealResNet(
        stem,
        16,
        stages,
        num_classes,
        act="rprelu" if rprelu else "prelu",
        shortcut="zero_pad",
    )


@recommended_binarization("xnor", FIRST_AND_LAST_FLOAT)
def vgg_small(
    num_classes: PositiveInt = 10,
    in_channels: PositiveInt = 3,
    hidden: tuple[PositiveInt, ...] = (),
) -> nn.Sequential:
    """VGG-small for CIFAR (32x32 images), the BNN papers' VGG.

    3x3 convolutions of 128, 128, 256, 256, 512 and 512
    channels, max pooling after every second one, each followed by batch norm and hard
    tanh, then a linear classifier on the 512x4x4 features. ``hidden=(1024, 1024)``
    adds BinaryNet's two hidden fully connected layers.

    Declared binarization: ``xnor`` (sign inputs, mean-|W| scaled weights); first
    convolution and classifier float. Courbariaux, Hubara et al., BinaryNet, 2016;
    Zhang et al., LQ-Nets, ECCV 2018.
    """
    layers: list[tuple[str, nn.Module]] = []
    widths = (in_channels, *VGG_SMALL_WIDTHS)
    for index, (n_in, n_out) in enumerate(itertools.pairwise(widths), start=1):
        layers.append((f"conv{index}", nn.Conv2d(n_in, n_out, 3, padding=1, bias=False)))
        if index % 2 == 0:
            layers.append((f"pool{index}", nn.MaxPool2d(2)))
        layers += [(f"bn{index}", nn.BatchNorm2d(n_out)), (f"act{index}", HardTanh())]
    layers.append(("flatten", nn.Flatten()))
    sizes = (VGG_SMALL_WIDTHS[-1] * 4 * 4, *hidden)
    for index, (n_in, n_out) in enumerate(itertools.pairwise(sizes), start=1):
        layers += [
            (f"fc{index}", nn.Linear(n_in, n_out, bias=False)),
            (f"fc_bn{index}", nn.BatchNorm1d(n_out)),
            (f"fc_act{index}", HardTanh()),
        ]
    layers.append(("fc", nn.Linear(sizes[-1], num_classes)))
    return nn.Sequential(OrderedDict(layers))
