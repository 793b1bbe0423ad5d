"""The training losses a recipe names in ``training.loss``, and the protocol they follow.

A loss is an ``nn.Module`` (or a factory returning one) built from keyword options and
called as ``loss(logits, targets)``, returning the batch's mean loss as a scalar tensor.
A loss that learns from a teacher declares the class attribute ``uses_teacher = True``;
it is then called as ``loss(logits, targets, teacher_logits=...)`` with the logits of the
run's ``distillation.teacher`` for the same inputs (computed without gradients). Losses
are not trained: parameters they hold are not given to any optimizer.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bnn.recipe.sections import DistillationSpec, TrainingSpec
from bnn.training.distill import distillation_loss
from bnn_core.registries import create_loss

Smoothing = Annotated[float, Field(ge=0.0, lt=1.0)]


class CrossEntropy(nn.Module):
    """Cross-entropy of the logits against the labels, with optional label smoothing."""

    uses_teacher = False

    def __init__(self, label_smoothing: Smoothing = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The batch's mean cross-entropy."""
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)


class Distillation(nn.Module):
    """ReActNet's distributional loss: ``alpha * T^2 * KL(teacher || student)`` at
    temperature ``T``, plus ``(1 - alpha)`` times the cross-entropy on the labels."""

    uses_teacher = True

    def __init__(
        self,
        alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0,
        temperature: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 1.0,
        label_smoothing: Smoothing = 0.0,
    ) -> None:
        super().__init__()
        self.alpha, self.temperature, self.label_smoothing = alpha, temperature, label_smoothing

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        """The batch's mean loss, computed in float32 (as under mixed precision)."""
        return distillation_loss(
            logits.float(),
            teacher_logits.float(),
            targets,
            self.alpha,
            self.temperature,
            self.label_smoothing,
        )


def build_loss(training: TrainingSpec, distillation: DistillationSpec | None) -> nn.Module:
    """The loss of a stage: ``training.loss`` when given; else distillation with the
    ``distillation`` section's ``alpha`` and ``temperature`` when the run has a teacher,
    else cross-entropy; both with ``training.label_smoothing``."""
    if training.loss is not None:
        return training.loss.build()
    smoothing = training.label_smoothing
    if distillation is not None:
        return create_loss(
            "distillation",
            alpha=distillation.alpha,
            temperature=distillation.temperature,
            label_smoothing=smoothing,
        )
    return create_loss("cross_entropy", label_smoothing=smoothing)
