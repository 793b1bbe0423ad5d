"""Hook implementations of the built-in optimizers, losses, metrics and callbacks (entry
point ``bnn_training``). Targets are lazy references, so listing them imports no torch."""

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


@hookimpl
def bnn_register_losses(register: RegisterComponent) -> None:
    register(
        "cross_entropy",
        "bnn.training.losses:CrossEntropy",
        aliases=["ce"],
        description="cross-entropy on the labels, with optional label smoothing",
    )
    register(
        "distillation",
        "bnn.training.losses:Distillation",
        description="KL divergence to a teacher's softmax, mixed with cross-entropy",
    )


@hookimpl
def bnn_register_metrics(register: RegisterComponent) -> None:
    register("accuracy", "bnn.training.metrics:Accuracy", description="top-1 (train_acc)")
    register(
        "top_k",
        "bnn.training.metrics:TopK",
        aliases=["top5"],
        description="top-k accuracy, k = 5 unless given (train_top5)",
    )
    register(
        "flip_ratio",
        "bnn.training.metrics:FlipRatio",
        description="share of binary weights flipped per optimizer step",
    )


@hookimpl
def bnn_register_callbacks(register: RegisterComponent) -> None:
    register(
        "bop_gamma",
        "bnn.training.callbacks:BopGamma",
        description="Bop's gamma decayed stepwise over epochs",
    )
