"""Models that ship trained: their builders return the binarized network the weights
fit, so ``create_model(name, pretrained=True)`` gives the trained model in one call.

The weights are package data under ``bnn_models/weights/``, each with a model card
(``NAME.card.yaml``: data, recipe, accuracy, sizes, latency and the file's SHA-256, which
is checked before the weights are read); ``scripts/ship_trained_model.py`` makes both
from a ``bnn train`` checkpoint.
"""

from __future__ import annotations

from torch import nn

from bnn_core.config import binarization_for, recommended_binarization
from bnn_core.engine import binarize_with
from bnn_models.binarization import FIRST_AND_LAST_FLOAT
from bnn_models.small import LeNet5

#: The binarizers of recipes/fashion_mnist_binary.yaml: signs of inputs shifted by a
#: learned per-channel bias, XNOR-scaled sign weights and learned output scales.
FASHION_MNIST_BCONFIG = {
    "activation_pre_process": {"name": "input_bias", "surrogate": "approx_sign"},
    "weight_pre_process": {"name": "xnor_weight", "compute_alpha": True},
    "activation_post_process": "basic_scale",
}


@recommended_binarization(FASHION_MNIST_BCONFIG, FIRST_AND_LAST_FLOAT)
def lenet5_fashion_mnist() -> nn.Module:
    """LeNet-5 (64 and 128 channels, 512 hidden units) trained W1A1 on Fashion-MNIST.

    ``conv2`` and ``fc1`` are binary, ``conv1`` and the classifier float; built already
    binarized, as recipes/fashion_mnist_binary.yaml trains it. ``pretrained=True`` loads
    the shipped weights; its model card gives their accuracy, size and packed latency."""
    model = LeNet5(num_classes=10, in_channels=1, width=64, hidden=512)
    return binarize_with(model, binarization_for(lenet5_fashion_mnist, True), inplace=True)
