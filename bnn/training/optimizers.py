"""Optimizers per parameter group and the learning-rate schedule of a training stage."""

from __future__ import annotations

import math
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from bnn.optim import param_groups
from bnn.recipe.sections import ScheduleSpec, TrainingSpec
from bnn_core.errors import ConfigError
from bnn_core.params import validate_params
from bnn_core.registries import get_optimizer


def build_optimizers(model: nn.Module, training: TrainingSpec) -> list[Optimizer]:
    """One optimizer per ``training.optimizers`` entry, each over its parameter groups;
    groups no optimizer names stay frozen (an empty optimizer is not created)."""
    optimizers = []
    for spec in training.optimizers:
        target = get_optimizer(spec.name)
        settings = validate_params(target, spec.settings, f"optimizer {spec.name!r}")
        groups = param_groups(model, include=spec.groups, **settings)
        if groups:
            try:
                optimizers.append(target(groups, **settings))
            except ValueError as exc:  # torch checks some settings only here
                raise ConfigError(
                    f"training.optimizers: {spec.name} refuses its settings {settings}: {exc}"
                ) from None
    return optimizers


def lr_factor(schedule: ScheduleSpec, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps."""
    warmup = schedule.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1.0, total_steps - warmup)
    if schedule.name == "cosine":
        return schedule.min_lr + (1 - schedule.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule.name == "linear":
        return schedule.min_lr + (1 - schedule.min_lr) * (1 - progress)
    if schedule.name == "step":
        epoch = step // max(1, steps_per_epoch)
        return schedule.gamma ** sum(epoch >= m for m in schedule.milestones)
    return 1.0


def build_schedulers(
    optimizers: list[Optimizer], schedule: ScheduleSpec, steps_per_epoch: int, total_steps: int
) -> list[Any]:
    """A per-step LambdaLR for every optimizer that has a learning rate (not Bop)."""
    return [
        LambdaLR(optimizer, lambda step: lr_factor(schedule, step, steps_per_epoch, total_steps))
        for optimizer in optimizers
        if all("lr" in group for group in optimizer.param_groups)
    ]
