"""Hook implementations of the built-in datasets (entry point ``bnn_datasets``).

References are lazy ``module:attribute`` strings, so listing what is installed imports
neither torch nor torchvision.
"""

from __future__ import annotations

from bnn_core import hookimpl
from bnn_core.hookspecs import RegisterComponent


@hookimpl
def bnn_register_datasets(register: RegisterComponent) -> None:
    register("fashion_mnist", "bnn_datasets.idx:fashion_mnist")
    register("mnist", "bnn_datasets.idx:mnist")
    register("cifar10", "bnn_datasets.cifar:cifar10")
    register("cifar100", "bnn_datasets.cifar:cifar100")
    register("imagefolder", "bnn_datasets.folder:imagefolder")
    register("webdataset", "bnn_datasets.webdatasets:webdataset")
    register("imagenet_wds", "bnn_datasets.webdatasets:imagenet_wds")
    register("synthetic", "bnn_datasets.synthetic:synthetic")
