"""Bi-Real Net ResNet-18 / ResNet-34 for ImageNet, and ReActNet's ResNet-18 variant.

The layout of torchvision's ResNets (7x7 stem with stride 2, 3x3 max pooling, four
stages of 64, 128, 256 and 512 channels, average pooling, ``fc``) with Bi-Real Net's
one-convolution blocks (see :mod:`bnn_models.residual`): ResNet-18 has 4 blocks per
stage (16 binary 3x3 convolutions), ResNet-34 has 6, 8, 12 and 6 (32). The stem
convolution, the classifier and the three 1x1 downsampling convolutions stay float,
as in the paper, whose memory and OPs figures count them so. The parameter count is
that of the torchvision ResNet of the same depth (11.7M and 21.8M with 1000 classes).
Liu et al., Bi-Real Net, ECCV 2018; Liu et al., ReActNet, ECCV 2020.
"""

from __future__ import annotations

from pydantic import PositiveInt

from bnn_core.config import recommended_binarization
from bnn_models.binarization import DOWNSAMPLE_FLOAT, FIRST_AND_LAST_FLOAT
from bnn_models.residual import BiRealResNet, conv_bn_stem

WIDTHS = (64, 128, 256, 512)
DEPTHS = {18: (4, 4, 4, 4), 34: (6, 8, 12, 6)}


def bireal_imagenet(depth: int, num_classes: int, in_channels: int, rprelu: bool) -> BiRealResNet:
    """A Bi-Real ResNet of ``depth`` 18 or 34 with the ImageNet stem."""
    stages = [
        (width, blocks, 1 if index == 0 else 2)
        for index, (width, blocks) in enumerate(zip(WIDTHS, DEPTHS[depth], strict=True))
    ]
    stem = conv_bn_stem(in_channels, WIDTHS[0], kernel_size=7, stride=2, max_pool=True)
    return BiRealResNet(stem, WIDTHS[0], stages, num_classes, act="rprelu" if rprelu else "prelu")


@recommended_binarization("bireal", FIRST_AND_LAST_FLOAT, DOWNSAMPLE_FLOAT)
def resnet18_bireal(
    num_classes: PositiveInt = 1000, in_channels: PositiveInt = 3, rprelu: bool = False
) -> BiRealResNet:
    """Bi-Real Net ResNet-18 for ImageNet (Liu et al., 2018).

    16 binary 3x3 convolutions, each with a real-valued shortcut, PReLU after each
    addition (RPReLU with ``rprelu``).

    Declared binarization: the ``bireal`` method (ApproxSign inputs, magnitude-aware
    weights); stem, classifier and downsampling 1x1 convolutions float. Liu et al.,
    Bi-Real Net, ECCV 2018.
    """
    return bireal_imagenet(18, num_classes, in_channels, rprelu)


@recommended_binarization("bireal", FIRST_AND_LAST_FLOAT, DOWNSAMPLE_FLOAT)
def resnet34_bireal(
    num_classes: PositiveInt = 1000, in_channels: PositiveInt = 3, rprelu: bool = False
) -> BiRealResNet:
    """Bi-Real Net ResNet-34 for ImageNet (Liu et al., 2018).

    32 binary 3x3 convolutions, each with a real-valued shortcut, PReLU after each
    addition (RPReLU with ``rprelu``).

    Declared binarization as :func:`resnet18_bireal`. Liu et al., Bi-Real Net, ECCV 2018.
    """
    return bireal_imagenet(34, num_classes, in_channels, rprelu)


@recommended_binarization("react", FIRST_AND_LAST_FLOAT, DOWNSAMPLE_FLOAT)
def resnet18_reactnet(
    num_classes: PositiveInt = 1000, in_channels: PositiveInt = 3
) -> BiRealResNet:
    """ReActNet's ResNet-18 for ImageNet (Liu et al., 2020).

    Bi-Real Net ResNet-18 with RPReLU after each addition and RSign (a learned
    per-channel threshold) before each binary convolution.

    Declared binarization: the ``react`` method (RSign inputs, mean-|W| scaled weights);
    stem, classifier and downsampling 1x1 convolutions float. Liu et al., ReActNet,
    ECCV 2020.
    """
    return bireal_imagenet(18, num_classes, in_channels, rprelu=True)
