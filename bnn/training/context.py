"""What metrics and callbacks see of a running training stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer


@dataclass
class TrainingContext:
    """The state of the running stage, updated in place by the trainer.

    ``model`` is the model being trained (not its DistributedDataParallel wrapper);
    ``epoch`` counts from 0; ``global_step`` and ``step_in_epoch`` count optimizer steps
    of this stage. The batch fields hold the last training batch (``stepped``: whether the
    optimizers stepped after it, which gradient accumulation makes not every batch).
    ``record`` is the epoch's record while ``on_epoch_end`` runs: fields a callback adds
    to it go to ``metrics.jsonl``.
    """

    trainer: Any
    model: nn.Module
    optimizers: list[Optimizer]
    stage: str
    epochs: int
    steps_per_epoch: int
    epoch: int = 0
    global_step: int = 0
    step_in_epoch: int = 0
    inputs: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    stepped: bool = False
    record: dict[str, Any] = field(default_factory=dict)
