"""The LightningModule that trains a bnn recipe inside Lightning's loop.

It builds the recipe's model, binarizes it as the first stage says, and at each stage's
first epoch re-binarizes it (learned binarizer parameters carry over) and builds that
stage's optimizers, schedule and loss with the functions ``bnn train`` uses: parameter
groups, no weight decay on latent binary weights, latent-weight clipping, the
distillation loss against the recipe's frozen teacher. This package sits on top of the
app (``bnn``), not below it as registry plugins do, and registers nothing.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from bnn.constraints import clip_latent_weights
from bnn.recipe import Recipe, Stage, load_recipe
from bnn.training import checkpoint
from bnn.training.data import start_epoch
from bnn.training.distill import build_teacher
from bnn.training.losses import build_loss
from bnn.training.optimizers import build_optimizers, build_schedulers
from bnn_core.errors import ConfigError
from bnn_core.progress import apply_progress
from bnn_core.registries import get_metric

#: What ``bnn train`` does with a stage's training keys that Lightning does its own way.
LIGHTNING_INSTEAD = {
    "ema": "Lightning's WeightAveraging or StochasticWeightAveraging callback",
    "callbacks": "Lightning callbacks",
    "amp": "Trainer(precision='16-mixed')",
}


def as_recipe(recipe: Recipe | str | Path) -> Recipe:
    """``recipe`` itself, or the recipe a YAML file holds (validated as ``bnn train``
    validates it)."""
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


class BinaryRecipeModule(L.LightningModule):
    """Trains the model of ``recipe`` (a :class:`bnn.recipe.Recipe` or a YAML file) through
    its stages, with its optimizers, schedule, loss and teacher; logs ``train_loss``,
    ``train_acc``, ``val_loss``, ``val_acc`` (and ``test_*``). Give the Lightning trainer
    ``max_epochs=module.total_epochs``, the sum of the stages' epochs."""

    def __init__(self, recipe: Recipe | str | Path) -> None:
        super().__init__()
        self.recipe = as_recipe(recipe)
        self.stages: list[Stage] = self.recipe.stages_to_run()
        for stage in self.stages:
            _check_supported(stage)
        epochs = [stage.training.epochs for stage in self.stages]
        self.stage_starts = [0, *itertools.accumulate(epochs)]
        self.automatic_optimization = False  # one optimizer per parameter group, as bnn
        self.model = self.recipe.build_model(binarize=True)
        self.stage_index = 0
        teacher = build_teacher(self.recipe.distillation) if self.recipe.distillation else None
        self.__dict__["teacher"] = teacher  # frozen and not saved: kept out of the submodules
        self._enter(0)

    @property
    def stage(self) -> Stage:
        """The stage being trained."""
        return self.stages[self.stage_index]

    @property
    def total_epochs(self) -> int:
        """The epochs of every stage together: the Lightning trainer's ``max_epochs``."""
        return self.stage_starts[-1]

    def stage_of_epoch(self, epoch: int) -> int:
        """The index of the stage that trains (0-based) ``epoch``."""
        return next(i for i, end in enumerate(self.stage_starts[1:]) if epoch < end)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The binarized model's logits."""
        return self.model(inputs)

    def _enter(self, index: int) -> None:
        """Re-binarize the model as each stage up to ``index`` says and take that stage's
        loss (the optimizers follow from :meth:`configure_optimizers`)."""
        for stage in self.stages[self.stage_index + 1 : index + 1]:
            if stage.binarization is not None:
                self.model = stage.binarization.apply(self.model, inplace=True)
        self.stage_index = index
        self.loss = build_loss(self.stage.training, self.recipe.distillation)
        if self.stage.training.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.stage_step = 0

    def configure_optimizers(self) -> tuple[list[Any], list[Any]]:
        """The current stage's optimizers over their parameter groups, and its per-step
        learning-rate schedule."""
        training = self.stage.training
        optimizers = build_optimizers(self.model, training)
        if not optimizers:
            raise ConfigError(
                f"stage {self.stage.name!r}: no optimizer of this stage has any parameter to train"
            )
        total = self.steps_per_epoch() * training.epochs
        return optimizers, build_schedulers(
            optimizers, training.schedule, self.steps_per_epoch(), total
        )

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: the trainer's training batches (after
        ``limit_train_batches``) over the stage's gradient accumulation."""
        self.trainer.estimated_stepping_batches  # noqa: B018 (loads the training data)
        batches = self.trainer.num_training_batches
        if not math.isfinite(batches):
            raise ConfigError(
                "the training data has no length, so the recipe's per-epoch schedule cannot be "
                "laid out; give Trainer(limit_train_batches=N) with a whole number N"
            )
        return max(1, math.ceil(batches / self.stage.training.grad_accumulation))

    def setup(self, stage: str) -> None:
        """Before fitting: check that the trainer runs the recipe's epochs."""
        if stage != "fit":
            return
        max_epochs = self.trainer.max_epochs
        if max_epochs is None or max_epochs < 0 or max_epochs > self.total_epochs:
            raise ConfigError(
                f"the recipe's stages train {self.total_epochs} epoch(s) in all and the "
                f"Lightning trainer is set to {max_epochs}; give "
                "Trainer(max_epochs=module.total_epochs), and max_steps to stop earlier"
            )

    def on_fit_start(self) -> None:
        """Move the teacher to the module's device."""
        if self.teacher is not None:
            self.teacher.to(self.device)

    def on_train_epoch_start(self) -> None:
        """Enter the stage this epoch belongs to, point the data at the epoch (reproducible
        order and augmentation) and tell epoch-progress binarizers where training is."""
        epoch = self.trainer.current_epoch
        index = self.stage_of_epoch(epoch)
        if index != self.stage_index:
            self._enter(index)
            self.trainer.strategy.setup_optimizers(self.trainer)
        loader = self.trainer.train_dataloader
        if isinstance(loader, torch.utils.data.DataLoader):
            start_epoch(loader, epoch)
        training = self.stage.training
        if training.progress == "epoch":
            apply_progress(self.model, epoch - self.stage_starts[index], training.epochs)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> Any:
        """Forward, the stage's loss, backward and, when an accumulation window is complete,
        a step of every optimizer and schedule followed by latent-weight clipping."""
        inputs, targets = batch
        training = self.stage.training
        if training.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if training.progress == "step":
            apply_progress(self.model, self.stage_step, self.steps_per_epoch() * training.epochs)
        logits = self.model(inputs)
        loss = self._loss(logits, inputs, targets)
        accumulation, batches = training.grad_accumulation, self.trainer.num_training_batches
        window = min(accumulation, batches - batch_idx // accumulation * accumulation)
        self.manual_backward(loss / window)
        if (batch_idx + 1) % accumulation == 0 or batch_idx + 1 == batches:
            self._step()
        size = len(targets)
        self.log("train_loss", loss.detach(), prog_bar=True, on_epoch=True, batch_size=size)
        self.log("train_acc", _accuracy(logits, targets), on_epoch=True, batch_size=size)
        return loss.detach()

    def _loss(
        self, logits: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """The stage's loss, given the teacher's logits when it learns from a teacher (the
        protocol of bnn's losses)."""
        if not getattr(self.loss, "uses_teacher", False):
            return self.loss(logits, targets)
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        return self.loss(logits, targets, teacher_logits=teacher_logits)

    def _step(self) -> None:
        for optimizer in _listed(self.optimizers()):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for scheduler in _listed(self.lr_schedulers()):
            scheduler.step()
        clip = self.stage.training.clip_latent_weights
        if clip is not None:
            clip_latent_weights(self.model, clip)
        self.stage_step += 1

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Log ``val_loss`` (cross-entropy) and ``val_acc``, averaged over the samples."""
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Log ``test_loss`` and ``test_acc``."""
        self._evaluate(batch, "test")

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> None:
        inputs, targets = batch
        logits = self.model(inputs)
        size = len(targets)
        self.log(f"{prefix}_loss", F.cross_entropy(logits, targets), batch_size=size)
        self.log(f"{prefix}_acc", _accuracy(logits, targets), prog_bar=True, batch_size=size)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the stage, so that a resumed fit re-binarizes the model before loading."""
        checkpoint["bnn_stage"] = self.stage_index

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Binarize the model as far as the saved stage, so that its weights fit."""
        index = checkpoint.get("bnn_stage", 0)
        if not isinstance(index, int) or not 0 <= index < len(self.stages):
            raise checkpoint_error(index, len(self.stages))
        if index > self.stage_index:
            self._enter(index)

    def bnn_state(self, epochs_done: int) -> dict[str, Any]:
        """The entries of a ``bnn train`` checkpoint that ``bnn eval`` and ``bnn export``
        read: the weights, the stage and its completed epochs (``epochs_done`` counts
        every stage's), and the recipe, written out in full."""
        done = epochs_done - self.stage_starts[self.stage_index]
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "stage": self.stage_index,
            "stages": [stage.name for stage in self.stages],
            "epoch": max(0, done),
            "config": {"recipe": self.recipe.resolved_dump()},
        }

    def save_bnn_checkpoint(self, path: str | Path, epochs_done: int) -> None:
        """Write :meth:`bnn_state` to ``path`` with bnn's checkpoint writer (atomic, with
        its checksum; the file it replaces is kept as ``previous.pt``)."""
        checkpoint.save(self.bnn_state(epochs_done), path, keep_previous=True)


def checkpoint_error(index: Any, count: int) -> checkpoint.CheckpointError:
    """The error for a Lightning checkpoint whose recorded stage does not fit the recipe."""
    return checkpoint.CheckpointError(
        f"the Lightning checkpoint records stage {index!r}, and the recipe has {count} "
        "stage(s); resume with the recipe it was made with"
    )


def _check_supported(stage: Stage) -> None:
    """Refuse the training keys this module leaves to Lightning, naming what to use."""
    training = stage.training
    for key, instead in LIGHTNING_INSTEAD.items():
        if getattr(training, key):
            raise ConfigError(
                f"stage {stage.name!r}: training.{key} is what `bnn train` does; with "
                f"Lightning, leave it out and use {instead}"
            )
    accuracy = get_metric("accuracy")
    others = [spec.name for spec in training.metrics if spec.builder() is not accuracy]
    if others:
        raise ConfigError(
            f"stage {stage.name!r}: training.metrics names {others}; the Lightning module "
            "logs loss and accuracy only (compute other metrics with torchmetrics)"
        )


def _accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == targets).float().mean()


def _listed(value: Any) -> list[Any]:
    """Lightning's one-or-list-or-None answers as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
