"""Hook implementations of the built-in models (entry point ``bnn_models``).

Targets are lazy references and the torchvision bridge reads torchvision's source
without importing it, so registering the models imports neither torch nor torchvision.
Each model registers the shape of one input sample (``input_shape``, channels first),
which ``bnn summary NAME`` uses.
"""

from __future__ import annotations

from bnn_core import hookimpl
from bnn_core.hookspecs import RegisterComponent, RegisterLowering
from bnn_models.torchvision_bridge import register_torchvision_models

IMAGENET = (3, 224, 224)
CIFAR = (3, 32, 32)
MNIST = (1, 28, 28)

MODELS = {
    # name: (reference, input shape, aliases)
    "lenet5": ("bnn_models.small:lenet5", MNIST, []),
    "binarynet_mlp": ("bnn_models.small:binarynet_mlp", MNIST, []),
    "resnet8_bireal": ("bnn_models.small:resnet8_bireal", MNIST, []),
    "resnet18_cifar": ("bnn_models.cifar:resnet18_cifar", CIFAR, []),
    "resnet20_cifar": ("bnn_models.cifar:resnet20_cifar", CIFAR, []),
    "vgg_small": ("bnn_models.cifar:vgg_small", CIFAR, []),
    "resnet18_bireal": ("bnn_models.bireal:resnet18_bireal", IMAGENET, ["resnet18", "birealnet18"]),
    "resnet34_bireal": ("bnn_models.bireal:resnet34_bireal", IMAGENET, ["resnet34", "birealnet34"]),
    "resnet18_reactnet": ("bnn_models.bireal:resnet18_reactnet", IMAGENET, []),
    "reactnet_a": ("bnn_models.reactnet:reactnet_a", IMAGENET, ["reactnet"]),
}

TRAINED = {
    # name: (reference, input shape, weights relative to the builder's package, dataset)
    "lenet5_fashion_mnist": (
        "bnn_models.trained:lenet5_fashion_mnist",
        MNIST,
        "weights/lenet5_fashion_mnist.pt",
        "fashion_mnist",
    ),
}


@hookimpl
def bnn_register_models(register: RegisterComponent) -> None:
    for name, (reference, input_shape, aliases) in MODELS.items():
        register(name, reference, aliases=aliases, input_shape=input_shape)
    for name, (reference, input_shape, weights, dataset) in TRAINED.items():
        register(
            name, reference, input_shape=input_shape, weights={"path": weights}, dataset=dataset
        )
    register_torchvision_models(register)


@hookimpl
def bnn_register_blocks(register: RegisterComponent) -> None:
    register("rprelu", "bnn_models.blocks:RPReLU", aliases=["RPReLU"])
    register("learnable_bias", "bnn_models.blocks:LearnableBias", aliases=["LearnableBias", "move"])
    register("hardtanh", "bnn_models.blocks:HardTanh", aliases=["hard_tanh"])
    register("leaky_hardtanh", "bnn_models.blocks:LeakyHardTanh", aliases=["leaky_tanh"])


@hookimpl
def bnn_register_lowerings(register: RegisterLowering) -> None:
    register("bnn_models.blocks:RPReLU", "bnn_models.lowering:rprelu")
    register("bnn_models.blocks:LearnableBias", "bnn_models.lowering:learnable_bias")
    register("bnn_models.blocks:HardTanh", "bnn_models.lowering:hardtanh")
    register("bnn_models.blocks:LeakyHardTanh", "bnn_models.lowering:hardtanh")
