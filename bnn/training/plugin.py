"""Hook implementations of the built-in optimizers (entry point ``bnn_training``)."""

from __future__ import annotations

from bnn_core import hookimpl
from bnn_core.hookspecs import RegisterComponent


@hookimpl
def bnn_register_optimizers(register: RegisterComponent) -> None:
    register("sgd", "torch.optim:SGD", aliases=["SGD"])
    register("adam", "torch.optim:Adam", aliases=["Adam"])
    register("adamw", "torch.optim:AdamW", aliases=["AdamW"])
    register("rmsprop", "torch.optim:RMSprop", aliases=["RMSprop"])
    register("bop", "bnn.optim:Bop", aliases=["Bop"])
