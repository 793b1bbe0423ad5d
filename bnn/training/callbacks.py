"""The trainer callbacks a recipe names in ``training.callbacks``, and the protocol they
follow.

A callback is an object built from keyword options with any of the methods
``on_stage_start``, ``on_epoch_start``, ``on_batch_end``, ``on_epoch_end`` and
``on_stage_end``, each called with the :class:`~bnn.training.context.TrainingContext`
of the running stage, in every process of a data-parallel run. A callback is built anew
for every stage. One that keeps state across epochs gives ``state_dict()`` and
``load_state_dict(state)``: its state is saved in checkpoints and restored on resume.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from bnn.optim import HyperparameterScheduler
from bnn.training.context import TrainingContext
from bnn_core.errors import ConfigError

HOOKS = ("on_stage_start", "on_epoch_start", "on_batch_end", "on_epoch_end", "on_stage_end")


class Callback:
    """Base class of callbacks: every hook does nothing until overridden."""

    def on_stage_start(self, context: TrainingContext) -> None:
        """A stage starts (after a resumed run's state is restored)."""

    def on_epoch_start(self, context: TrainingContext) -> None:
        """An epoch starts (also the epoch a run resumes in)."""

    def on_batch_end(self, context: TrainingContext) -> None:
        """A training batch is done (and its optimizer step, if it completed one)."""

    def on_epoch_end(self, context: TrainingContext) -> None:
        """An epoch is done and evaluated; ``context.record`` is its record."""

    def on_stage_end(self, context: TrainingContext) -> None:
        """The stage's last epoch is done."""


class BopGamma(Callback):
    """Bop's ``gamma`` decayed stepwise over epochs, as Helwegen et al. train: multiplied by
    ``factor`` every ``every_epochs`` epochs and at each epoch in ``milestones`` (epochs
    count from 0 within the stage). Applies to every optimizer of the stage whose groups
    have a ``gamma`` (Bop), from the ``gamma`` each was given."""

    def __init__(
        self,
        factor: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1,
        every_epochs: Annotated[int, Field(ge=1)] | None = None,
        milestones: tuple[Annotated[int, Field(ge=1)], ...] = (),
    ) -> None:
        self.factor, self.every_epochs, self.milestones = factor, every_epochs, milestones
        self.schedulers: list[HyperparameterScheduler] = []

    def decays(self, epoch: int) -> int:
        """How many times ``gamma`` has been multiplied by ``factor`` at ``epoch``."""
        periodic = epoch // self.every_epochs if self.every_epochs else 0
        return periodic + sum(epoch >= milestone for milestone in self.milestones)

    def on_stage_start(self, context: TrainingContext) -> None:
        """Find the Bop optimizers (their initial ``gamma`` is kept in their groups)."""
        self.schedulers = [
            HyperparameterScheduler(optimizer, "gamma", lambda e: self.factor ** self.decays(e))
            for optimizer in context.optimizers
            if all("gamma" in group for group in optimizer.param_groups)
        ]
        if not self.schedulers:
            raise ConfigError(
                f"callback bop_gamma: no optimizer of stage {context.stage!r} has a gamma; "
                "train a parameter group with bop (training.optimizers)"
            )

    def on_epoch_start(self, context: TrainingContext) -> None:
        """Set ``gamma`` for the epoch starting."""
        for scheduler in self.schedulers:
            scheduler.set_step(context.epoch)
