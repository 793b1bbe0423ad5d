"""The training loop: stages, optimizers per parameter group, distillation, the progress
hook, latent-weight clipping, EMA, mixed precision on CUDA, DistributedDataParallel,
and checkpoints from which a killed run resumes exactly."""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from pydantic import ValidationError
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bnn.constraints import clip_latent_weights
from bnn.recipe import Stage, resolve_stages
from bnn.training import checkpoint, rundir
from bnn.training.data import make_loader, start_epoch
from bnn.training.distill import build_teacher, distillation_loss
from bnn.training.distributed import World, all_sum, setup, teardown
from bnn.training.logs import MetricsLog
from bnn.training.optimizers import build_optimizers, build_schedulers
from bnn.training.saved_state import check_run_state, fit_weights
from bnn.training.spec import RunConfig
from bnn_core.config import BinarizeSpec, format_errors
from bnn_core.errors import BnnError, ConfigError
from bnn_core.progress import apply_progress

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished run reports."""

    best_accuracy: float | None
    best_stage: str | None
    best_epoch: int | None
    final_accuracy: float | None
    wall_time: float
    output_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary_line(self) -> str:
        """One line for the terminal."""
        if self.best_accuracy is None:
            best = "no evaluation"
        else:
            where = f"{self.best_stage} " if self.best_stage != "main" else ""
            best = f"best accuracy {self.best_accuracy:.2%} ({where}epoch {self.best_epoch})"
        return (
            f"{best}, wall time {self.wall_time:.0f} s; outputs in {self.output_dir} "
            "(best.pt, last.pt, metrics.csv, curves.png)"
        )


class Trainer:
    """Trains ``model`` on ``train_data`` (evaluating on ``eval_data``) as ``config`` says.

    ``config`` is a :class:`RunConfig` (or a mapping of it): everything of a recipe but
    the model and data, which the caller builds in Python, as the seed library's
    ``run_dev.py`` scripts do. ``bnn train`` builds them from a recipe and calls this.
    ``model_builder`` (a registered model builder) lets stages use ``binarize: default``.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Dataset,
        eval_data: Dataset | None = None,
        config: RunConfig | dict[str, Any] | None = None,
        *,
        binarize: BinarizeSpec | None = None,
        model_builder: Any = None,
        output_dir: str | Path | None = None,
        device: str | None = None,
        quiet: bool = False,
        resolved_config: dict[str, Any] | None = None,
    ) -> None:
        self.config = (
            config if isinstance(config, RunConfig) else RunConfig.model_validate(config or {})
        )
        try:
            self.stages: list[Stage] = resolve_stages(self.config, binarize, model_builder)
        except ValidationError as exc:
            raise ConfigError(format_errors(exc, "the run config")) from None
        self.model = model
        self.train_data, self.eval_data = train_data, eval_data
        self.world: World = setup(device)
        name = self.config.name or "run"
        self.output_dir = Path(output_dir) if output_dir else self.config.output.folder(name)
        self.quiet = quiet or not self.world.main
        self.resumed_from: Path | None = None
        self.resolved_config = resolved_config or {"run": self.config.model_dump(mode="json")}
        self.teacher = build_teacher(self.config.distillation) if self.config.distillation else None

    def fit(self, resume: str | Path | None = None) -> TrainResult:
        """Run every stage; with ``resume``, continue exactly from that checkpoint. The
        output directory is locked for the run: a second run on it fails at once."""
        lock = self._claim_output_dir()
        try:
            return self._fit(Path(resume) if resume is not None else None)
        finally:
            if lock is not None:
                lock.release()

    def _claim_output_dir(self) -> rundir.RunLock | None:
        """Lock the output directory in the main process; every process stops if that fails
        (the others would wait for it forever)."""
        lock = failure = None
        if self.world.main:
            try:
                lock = rundir.claim(self.output_dir)
            except BnnError as exc:
                failure = exc
        if all_sum([float(failure is not None)], self.world)[0]:
            raise failure or rundir.RunDirectoryError(
                f"the main process could not lock the run directory {self.output_dir}"
            )
        return lock

    def _fit(self, resume: Path | None) -> TrainResult:
        started = time.perf_counter()
        state = None
        self.resumed_from = resume
        if resume is None:
            torch.manual_seed(self.config.seed)  # stochastic binarizers, dropout
        else:
            state = checkpoint.load(resume)
            check_run_state(state, resume)
            self._check_resumable(state, resume)
            self._set_aside_damaged(resume)
        if self.world.main:
            with open(self.output_dir / "config.yaml", "w") as handle:
                yaml.safe_dump(self.resolved_config, handle, sort_keys=False)
        folder = self.output_dir if self.world.main else None  # one process writes
        metrics = MetricsLog(
            folder, self.config.logging.tensorboard, state["history"] if state else None
        )
        best = state["best"] if state else {"accuracy": None, "stage": None, "epoch": None}
        self.model.to(self.world.device)
        if self.teacher is not None:
            self.teacher.to(self.world.device)
        final = None
        try:
            for index, stage in enumerate(self.stages):
                if stage.binarization is not None:
                    self.model = stage.binarization.apply(self.model, inplace=True)
                if state is not None and index < state["stage"]:
                    continue
                final = self._run_stage(index, stage, state, metrics, best)
                state = None
        finally:
            metrics.close()
            teardown()
        wall = time.perf_counter() - started
        result = TrainResult(
            best["accuracy"],
            best["stage"],
            best["epoch"],
            final,
            wall,
            self.output_dir,
            metrics.history,
        )
        if self.world.main and not self.quiet:
            print(result.summary_line())
        return result

    def _set_aside_damaged(self, resumed: Path) -> None:
        """Resuming from ``previous.pt`` means ``last.pt`` is damaged: keep it aside, so
        that the next save does not rotate it over the good ``previous.pt``."""
        last = self.output_dir / "last.pt"
        same_folder = resumed.resolve().parent == last.resolve().parent
        if self.world.main and resumed.name == "previous.pt" and last.exists() and same_folder:
            last.replace(last.with_name("last.damaged.pt"))
            log.warning("resuming from %s; the damaged last.pt is kept as last.damaged.pt", resumed)

    def _check_resumable(self, state: dict[str, Any], path: Path) -> None:
        names = [s.name for s in self.stages]
        if state["stages"] != names:
            raise ConfigError(
                f"the checkpoint comes from a run with stages {state['stages']}, this run "
                f"has {names}; resume with the recipe it was made with"
            )
        if state["stage"] >= len(names):
            raise checkpoint.CheckpointError(
                f"checkpoint {path} says it stopped in stage number {state['stage']}, but its "
                f"run has {len(names)} stage(s) {names}; the file was altered or damaged"
            )

    def _loaders(self) -> tuple[DataLoader, DataLoader | None]:
        data = self.config.data
        per_rank = data.batch_size // self.world.size
        if per_rank * self.world.size != data.batch_size:
            raise ConfigError(
                f"batch_size {data.batch_size} does not divide over {self.world.size} processes"
            )
        options = dict(
            seed=self.config.seed,
            workers=data.workers,
            rank=self.world.rank,
            world_size=self.world.size,
        )
        train = make_loader(self.train_data, per_rank, train=True, **options)
        evaluation = None
        if self.eval_data is not None:
            eval_batch = (data.eval_batch_size or data.batch_size) // self.world.size
            evaluation = make_loader(self.eval_data, max(1, eval_batch), train=False, **options)
        return train, evaluation

    def _run_stage(
        self,
        index: int,
        stage: Stage,
        state: dict[str, Any] | None,
        metrics: MetricsLog,
        best: dict[str, Any],
    ) -> float | None:
        training = stage.training
        device = self.world.device
        model = self.model
        if training.channels_last:
            model.to(memory_format=torch.channels_last)
        wrapped: nn.Module = model
        if self.world.size > 1:
            ids = [device.index] if device.type == "cuda" else None
            wrapped = DistributedDataParallel(model, device_ids=ids)
        train_loader, eval_loader = self._loaders()
        epoch_batches = len(train_loader)
        accumulation = training.grad_accumulation
        steps_per_epoch = math.ceil(epoch_batches / accumulation)
        run = _StageRun(index, model, training, steps_per_epoch, device)
        if state is not None:
            run.load(state, f"checkpoint {self.resumed_from}")
        final = None
        for epoch in range(run.epoch, training.epochs):
            run.epoch = epoch
            if training.progress == "epoch":
                apply_progress(model, epoch, training.epochs)
            start_epoch(train_loader, epoch, run.step_in_epoch * accumulation)
            wrapped.train()
            bar = tqdm(
                train_loader,
                desc=f"{stage.name} epoch {epoch + 1}/{training.epochs}",
                disable=self.quiet
                or not self.config.logging.progress_bar
                or not sys.stderr.isatty(),
                unit="batch",
                leave=False,
            )
            batches = run.step_in_epoch * accumulation
            run.zero_grad()
            for inputs, targets in bar:
                inputs, targets = inputs.to(device), targets.to(device)
                if training.channels_last and inputs.dim() == 4:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                if training.progress == "step":
                    apply_progress(model, run.global_step, steps_per_epoch * training.epochs)
                with torch.autocast(device.type, dtype=torch.float16, enabled=run.amp):
                    logits = wrapped(inputs)
                    loss = self._loss(logits, inputs, targets, training.label_smoothing)
                # the epoch's last window may hold fewer batches: average over those
                window = min(accumulation, epoch_batches - batches // accumulation * accumulation)
                run.scaler.scale(loss / window).backward()
                run.count(loss, logits, targets)
                batches += 1
                if batches % accumulation and batches != epoch_batches:
                    continue
                run.step()
                bar.set_postfix(loss=f"{run.mean_loss():.3f}", refresh=False)
                every = self.config.output.checkpoint_every_steps
                if every and run.global_step % every == 0 and run.step_in_epoch < steps_per_epoch:
                    self._save(run, metrics, best, "last.pt")
            bar.close()
            record = self._epoch_record(stage, epoch, run)
            run.next_epoch()
            due = (epoch + 1) % self.config.evaluation.every_epochs == 0
            if eval_loader is not None and (due or epoch + 1 == training.epochs):
                record.update(evaluate(run.evaluated_model(), eval_loader, self.world))
                final = record["eval_acc"]
                if best["accuracy"] is None or final > best["accuracy"]:
                    best.update(accuracy=final, stage=stage.name, epoch=epoch + 1)
                    metrics.append(record)
                    self._save(run, metrics, best, "best.pt")
            if metrics.history[-1:] != [record]:
                metrics.append(record)
            self._save(run, metrics, best, "last.pt")
            if self.world.main:
                if self.config.logging.plot:
                    metrics.plot()
                if not self.quiet:
                    print(_describe(record), flush=True)
        return final

    def _loss(
        self, logits: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, smoothing: float
    ) -> torch.Tensor:
        if self.teacher is None or self.config.distillation is None:
            return F.cross_entropy(logits, targets, label_smoothing=smoothing)
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        spec = self.config.distillation
        return distillation_loss(
            logits.float(), teacher_logits.float(), targets, spec.alpha, spec.temperature, smoothing
        )

    def _epoch_record(self, stage: Stage, epoch: int, run: _StageRun) -> dict[str, Any]:
        totals = [run.running["loss_sum"], run.running["correct"], run.running["count"]]
        loss_sum, correct, count = all_sum(totals, self.world)
        return {
            "stage": stage.name,
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(count, 1),
            "train_acc": correct / max(count, 1),
            "lr": run.learning_rate(),
        }

    def _save(
        self, run: _StageRun, metrics: MetricsLog, best: dict[str, Any], filename: str
    ) -> None:
        if not self.world.main:
            return
        state = {
            **run.state_dict(),
            "stages": [s.name for s in self.stages],
            "best": dict(best),
            "history": metrics.history,
            "config": self.resolved_config,
        }
        checkpoint.save(state, self.output_dir / filename, keep_previous=filename == "last.pt")


class _StageRun:
    """The mutable state of one stage: optimizers, schedulers, scaler, EMA and counters,
    with what a checkpoint saves and restores of it."""

    def __init__(
        self,
        index: int,
        model: nn.Module,
        training: Any,
        steps_per_epoch: int,
        device: torch.device,
    ) -> None:
        self.index, self.model, self.training = index, model, training
        self.optimizers = build_optimizers(model, training)
        if not self.optimizers:
            raise ConfigError("no optimizer of this stage has any parameter to train")
        total = steps_per_epoch * training.epochs
        self.schedulers = build_schedulers(
            self.optimizers, training.schedule, steps_per_epoch, total
        )
        self.amp = training.amp and device.type == "cuda"
        if training.amp and not self.amp:
            log.warning("mixed precision needs CUDA; training in float32 on %s", device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.ema = None
        if training.ema is not None:
            average = get_ema_multi_avg_fn(training.ema.decay)
            self.ema = AveragedModel(model, multi_avg_fn=average, use_buffers=True)
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.running = _fresh_running()

    def zero_grad(self) -> None:
        """Clear the gradients of every optimizer."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def count(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch to the epoch's running loss and accuracy."""
        self.running["loss_sum"] += float(loss.detach()) * len(targets)
        self.running["correct"] += float((logits.detach().argmax(1) == targets).sum())
        self.running["count"] += len(targets)

    def mean_loss(self) -> float:
        """The epoch's mean training loss so far."""
        return self.running["loss_sum"] / max(self.running["count"], 1)

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

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this stage exactly."""
        return {
            "model": self.model.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
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
        parts = (
            ("optimizer", self.optimizers, state["optimizers"]),
            ("scheduler", self.schedulers, state["schedulers"]),
        )
        for kind, objects, saved in parts:
            if len(saved) != len(objects):
                raise checkpoint.CheckpointError(
                    f"{source} holds {len(saved)} {kind} state(s), this stage has "
                    f"{len(objects)} {kind}(s); resume with the recipe it was made with"
                )
            for target, entry in zip(objects, saved, strict=True):
                _restore(target, entry, f"the {kind} state in {source}")
        _restore(self.scaler, state["scaler"], f"the gradient scaler state in {source}")
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step, self.running = state["global_step"], dict(state["running"])
        try:
            checkpoint.set_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise checkpoint.CheckpointError(
                f"the random state in {source} cannot be restored ({type(exc).__name__}: "
                f"{exc}); the file was altered or damaged"
            ) from None


def _restore(target: Any, saved: dict[str, Any], what: str) -> None:
    """``target.load_state_dict(saved)``, its failures reported as CheckpointErrors."""
    try:
        target.load_state_dict(saved)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise checkpoint.CheckpointError(
            f"{what} does not fit this run ({type(exc).__name__}: {detail}); resume with the "
            "recipe it was made with"
        ) from None


def _fresh_running() -> dict[str, float]:
    return {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}


def evaluate(model: nn.Module, loader: DataLoader, world: World | None = None) -> dict[str, float]:
    """Loss and accuracy of ``model`` on ``loader`` (summed over ranks)."""
    world = world or World()
    was_training = model.training
    model.eval()
    loss_sum = correct = count = 0.0
    with torch.no_grad():
        for inputs, targets in loader:
            inputs, targets = inputs.to(world.device), targets.to(world.device)
            logits = model(inputs)
            loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
            correct += float((logits.argmax(1) == targets).sum())
            count += len(targets)
    model.train(was_training)
    loss_sum, correct, count = all_sum([loss_sum, correct, count], world)
    return {"eval_loss": loss_sum / max(count, 1), "eval_acc": correct / max(count, 1)}


def _describe(record: dict[str, Any]) -> str:
    text = (
        f"[{record['stage']}] epoch {record['epoch']}: "
        f"train loss {record['train_loss']:.4f}, acc {record['train_acc']:.2%}"
    )
    if "eval_acc" in record:
        text += f"; eval loss {record['eval_loss']:.4f}, acc {record['eval_acc']:.2%}"
    if record.get("lr") is not None:
        text += f"; lr {record['lr']:.2e}"
    return text


def train(
    model: nn.Module,
    train_data: Dataset,
    eval_data: Dataset | None = None,
    config: RunConfig | dict[str, Any] | str | Path | None = None,
    **options: Any,
) -> TrainResult:
    """Train ``model`` (any ``nn.Module``, binarized or not) on datasets built in Python.
    ``config`` is a RunConfig, a mapping of it, or a YAML file holding one; ``options``
    go to :class:`Trainer` (``output_dir``, ``device``, ``quiet``, ``binarize``,
    ``resume``)."""
    from bnn_core.config import load_yaml, validate_model

    if isinstance(config, str | Path):
        config = validate_model(RunConfig, load_yaml(config), str(config))
    resume = options.pop("resume", None)
    return Trainer(model, train_data, eval_data, config, **options).fit(resume=resume)
