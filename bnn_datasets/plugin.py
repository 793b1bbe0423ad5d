"""Hook implementations of the built-in datasets (entry point ``bnn_datasets``)."""

from __future__ import annotations

from bnn_core import hookimpl
from bnn_core.hookspecs import RegisterComponent


@hookimpl
def bnn_register_datasets(register: RegisterComponent) -> None:
    register("fashion_mnist", "bnn_datasets.idx:fashion_mnist")
    register("mnist", "bnn_datasets.idx:mnist")
    register("synthetic", "bnn_datasets.synthetic:synthetic")
