"""One training stage being run: its model, loaders, loss, metrics and callbacks, and the
mutable state a checkpoint saves and restores (optimizers, schedulers, gradient scaler,
EMA, counters and the epoch's running sums)."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from bnn.constraints import clip_latent_weights
from bnn.recipe.stages import Stage
from bnn.training import checkpoint
from bnn.training.callbacks import HOOKS
from bnn.training.context import TrainingContext
from bnn.training.distributed import World, all_sum
from bnn.training.optimizers import build_optimizers, build_schedulers
from bnn.training.saved_state import fit_weights
from bnn_core.errors import ConfigError

log = logging.getLogger(__name__)


class StageRun:
    """The state of one stage, built when the stage starts (``wrapped`` is ``model`` or
    its DistributedDataParallel wrapper)."""

    def __init__(
        self,
        index: int,
        stage: Stage,
        model: nn.Module,
        wrapped: nn.Module,
        loaders: tuple[DataLoader, DataLoader | None],
        loss: nn.Module,
        device: torch.device,
        trainer: Any,
    ) -> None:
        training = stage.training
        self.index, self.stage, self.training = index, stage, training
        self.model, self.wrapped, self.loss = model, wrapped, loss
        self.train_loader, self.eval_loader = loaders
        self.epoch_batches = len(self.train_loader)
        self.accumulation = training.grad_accumulation
        self.steps_per_epoch = math.ceil(self.epoch_batches / self.accumulation)
        self.optimizers = build_optimizers(model, training)
        if not self.optimizers:
            raise ConfigError("no optimizer of this stage has any parameter to train")
        self.schedulers = build_schedulers(
            self.optimizers, training.schedule, self.steps_per_epoch, self.total_steps
        )
        self.amp = training.amp and device.type == "cuda"
        if training.amp and not self.amp:
            log.warning("mixed precision needs CUDA; training in float32 on %s", device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.ema = None
        if training.ema is not None:
            average = get_ema_multi_avg_fn(training.ema.decay)
            self.ema = AveragedModel(model, multi_avg_fn=average, use_buffers=True)
        self.metrics = [spec.build() for spec in training.metrics]
        self.callbacks = [spec.build() for spec in training.callbacks]
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.running = _fresh_running()
        self.context = TrainingContext(
            trainer, model, self.optimizers, stage.name, training.epochs, self.steps_per_epoch
        )

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole stage."""
        return self.steps_per_epoch * self.training.epochs

    def start(self) -> None:
        """Start the metrics and call ``on_stage_start`` (after a resumed state is loaded)."""
        self._sync_context()
        for metric in self.metrics:
            getattr(metric, "start", _nothing)(self.context)
        self.call("on_stage_start")

    def call(self, hook: str) -> None:
        """Call ``hook`` (one of :data:`HOOKS`) of every callback that has it."""
        assert hook in HOOKS
        for callback in self.callbacks:
            getattr(callback, hook, _nothing)(self.context)

    def zero_grad(self) -> None:
        """Clear the gradients of every optimizer."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def batch_done(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        logits: torch.Tensor,
        loss: torch.Tensor,
        stepped: bool,
    ) -> None:
        """Add a batch to the epoch's sums (loss and metrics), then ``on_batch_end``."""
        context = self.context
        context.inputs, context.targets, context.stepped = inputs, targets, stepped
        context.logits, context.loss = logits.detach(), loss.detach()
        self.running["loss_sum"] += float(context.loss) * len(targets)
        self.running["count"] += len(targets)
        for metric in self.metrics:
            for key, value in metric.update(context).items():
                self.running[key] = self.running.get(key, 0.0) + float(value)
        self.call("on_batch_end")

    def mean_loss(self) -> float:
        """The epoch's mean training loss so far."""
        return self.running["loss_sum"] / max(self.running["count"], 1)

    def epoch_fields(self, world: World) -> dict[str, float]:
        """The epoch's training loss and metric fields, from the sums of every process."""
        keys = sorted(self.running)
        totals = dict(zip(keys, all_sum([self.running[k] for k in keys], world), strict=True))
        fields = {"train_loss": totals["loss_sum"] / max(totals["count"], 1)}
        for metric in self.metrics:
            fields.update(metric.result(totals))
        return fields

    def step(self) -> None:
        """One optimizer step: update, schedule, clip latent weights, average."""
        for optimizer in self.optimizers:
            self.scaler.step(optimizer)
        self.scaler.update()
        self.zero_grad()
        for scheduler in self.schedulers:
            scheduler.step()
        if self.training.clip_latent_weights is not None:
            clip_latent_weights(self.model, self.training.clip_latent_weights)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step_in_epoch += 1
        self.global_step += 1
        self._sync_context()

    def next_epoch(self) -> None:
        """Close the epoch: counters restart at its end."""
        self.epoch += 1
        self.step_in_epoch = 0
        self.running = _fresh_running()

    def learning_rate(self) -> float | None:
        """The current learning rate of the first optimizer that has one."""
        rates = (g["lr"] for o in self.optimizers for g in o.param_groups if "lr" in g)
        return next(rates, None)

    def evaluated_model(self) -> nn.Module:
        """The model to evaluate: the EMA weights when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def _sync_context(self) -> None:
        self.context.global_step, self.context.step_in_epoch = self.global_step, self.step_in_epoch

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this stage exactly."""
        return {
            "model": self.model.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "callbacks": [_state_of(callback) for callback in self.callbacks],
            "rng": checkpoint.rng_state(),
            "stage": self.index,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "running": dict(self.running),
        }

    def load(self, state: dict[str, Any], source: str) -> None:
        """Restore :meth:`state_dict` (the random state last, as it was saved); what does
        not fit this stage is a CheckpointError naming ``source``."""
        fit_weights(self.model, state["model"], f"the model weights in {source}")
        if self.ema is not None and state["ema"] is not None:
            fit_weights(self.ema, state["ema"], f"the EMA weights in {source}")
        parts = [
            ("optimizer", self.optimizers, state["optimizers"]),
            ("scheduler", self.schedulers, state["schedulers"]),
        ]
        if "callbacks" in state:  # checkpoints of earlier versions have no callbacks
            parts.append(("callback", self.callbacks, state["callbacks"]))
        for kind, objects, saved in parts:
            if not isinstance(saved, list) or len(saved) != len(objects):
                count = len(saved) if isinstance(saved, list) else "no list of"
                raise checkpoint.CheckpointError(
                    f"{source} holds {count} {kind} state(s), this stage has "
                    f"{len(objects)} {kind}(s); resume with the recipe it was made with"
                )
            for target, entry in zip(objects, saved, strict=True):
                if entry is not None:
                    _restore(target, entry, f"the {kind} state in {source}")
        _restore(self.scaler, state["scaler"], f"the gradient scaler state in {source}")
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step, self.running = state["global_step"], dict(state["running"])
        self._sync_context()
        try:
            checkpoint.set_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise checkpoint.CheckpointError(
                f"the random state in {source} cannot be restored ({type(exc).__name__}: "
                f"{exc}); the file was altered or damaged"
            ) from None


def _nothing(context: TrainingContext) -> None:
    """What a metric or callback that lacks a hook does there."""


def _state_of(callback: Any) -> Any:
    """A callback's state to save, or None for a callback without state."""
    state_dict = getattr(callback, "state_dict", None)
    return state_dict() if state_dict is not None else None


def _restore(target: Any, saved: Any, what: str) -> None:
    """``target.load_state_dict(saved)``, its failures reported as CheckpointErrors."""
    load = getattr(target, "load_state_dict", None)
    if load is None:
        raise checkpoint.CheckpointError(
            f"{what} holds a state, but this run's {type(target).__name__} keeps none; resume "
            "with the recipe it was made with"
        )
    try:
        load(saved)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise checkpoint.CheckpointError(
            f"{what} does not fit this run ({type(exc).__name__}: {detail}); resume with the "
            "recipe it was made with"
        ) from None


def _fresh_running() -> dict[str, float]:
    """The epoch's sums before its first batch: the trainer's own, then the metrics' ones."""
    return {"loss_sum": 0.0, "count": 0.0}
