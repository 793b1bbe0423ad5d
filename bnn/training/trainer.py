"""The training loop: stages, optimizers per parameter group, the loss, metrics and
callbacks a recipe names, distillation, the progress hook, latent-weight clipping, EMA,
mixed precision on CUDA, DistributedDataParallel, and checkpoints from which a killed run
resumes exactly."""

from __future__ import annotations

import logging
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
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from bnn.recipe.sections import CompileSpec, RunConfig
from bnn.recipe.stages import Stage, resolve_stages
from bnn.training import checkpoint, rundir
from bnn.training.data import make_loader, start_epoch
from bnn.training.distill import build_teacher
from bnn.training.distributed import World, all_sum, setup, teardown
from bnn.training.logs import MetricsLog
from bnn.training.losses import build_loss
from bnn.training.saved_state import check_run_state
from bnn.training.stage_run import StageRun
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
        """Train ``stage`` from its first epoch (or where ``state`` stopped) to its last;
        returns the accuracy of its last evaluation."""
        run = self._start_stage(index, stage, state)
        final = None
        for epoch in range(run.epoch, stage.training.epochs):
            self._train_epoch(run, epoch, metrics, best)
            accuracy = self._end_epoch(run, epoch, metrics, best)
            final = final if accuracy is None else accuracy
        run.call("on_stage_end")
        return final

    def _start_stage(self, index: int, stage: Stage, state: dict[str, Any] | None) -> StageRun:
        """The stage's run: model layout, data-parallel wrapper, loaders, loss, optimizers,
        metrics and callbacks, restored from ``state`` when resuming."""
        device = self.world.device
        if stage.training.channels_last:
            self.model.to(memory_format=torch.channels_last)
        wrapped: nn.Module = self.model
        if self.world.size > 1:
            ids = [device.index] if device.type == "cuda" else None
            wrapped = DistributedDataParallel(self.model, device_ids=ids)
        if stage.training.compile is not None:
            wrapped = compiled(wrapped, stage.training.compile)
        loss = build_loss(stage.training, self.config.distillation).to(device)
        run = StageRun(index, stage, self.model, wrapped, self._loaders(), loss, device, self)
        if state is not None:
            run.load(state, f"checkpoint {self.resumed_from}")
        run.start()
        return run

    def _train_epoch(
        self, run: StageRun, epoch: int, metrics: MetricsLog, best: dict[str, Any]
    ) -> None:
        """One pass over the training data (the rest of it, when resuming mid-epoch)."""
        training = run.training
        run.epoch = run.context.epoch = epoch
        if training.progress == "epoch":
            apply_progress(run.model, epoch, training.epochs)
        batches = run.step_in_epoch * run.accumulation
        start_epoch(run.train_loader, epoch, batches)
        run.wrapped.train()
        run.zero_grad()
        run.call("on_epoch_start")
        bar = self._progress_bar(run, epoch)
        for inputs, targets in bar:
            stepped = self._train_batch(run, inputs, targets, batches)
            batches += 1
            if stepped:
                bar.set_postfix(loss=f"{run.mean_loss():.3f}", refresh=False)
                self._save_within_epoch(run, metrics, best)
        bar.close()

    def _progress_bar(self, run: StageRun, epoch: int) -> tqdm:
        shown = self.config.logging.progress_bar and sys.stderr.isatty() and not self.quiet
        return tqdm(
            run.train_loader,
            desc=f"{run.stage.name} epoch {epoch + 1}/{run.training.epochs}",
            disable=not shown,
            unit="batch",
            leave=False,
        )

    def _train_batch(
        self, run: StageRun, inputs: torch.Tensor, targets: torch.Tensor, batches: int
    ) -> bool:
        """Forward, backward and, when the batch completes an accumulation window, an
        optimizer step (``batches``: the epoch's batches before this one). Returns whether
        it stepped."""
        training, device = run.training, self.world.device
        inputs, targets = inputs.to(device), targets.to(device)
        if training.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        if training.progress == "step":
            apply_progress(run.model, run.global_step, run.total_steps)
        with torch.autocast(device.type, dtype=torch.float16, enabled=run.amp):
            logits = run.wrapped(inputs)
            loss = self._loss(run.loss, logits, inputs, targets)
        accumulation, epoch_batches = run.accumulation, run.epoch_batches
        # the epoch's last window may hold fewer batches: average over those
        window = min(accumulation, epoch_batches - batches // accumulation * accumulation)
        run.scaler.scale(loss / window).backward()
        done = batches + 1
        stepped = done % accumulation == 0 or done == epoch_batches
        if stepped:
            run.step()
        run.batch_done(inputs, targets, logits, loss, stepped)
        return stepped

    def _loss(
        self, loss: nn.Module, logits: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """``loss(logits, targets)``, with the teacher's logits for a loss that uses them."""
        if not getattr(loss, "uses_teacher", False):
            return loss(logits, targets)
        if self.teacher is None:  # the recipe validation rules this out
            raise ConfigError("the loss learns from a teacher, and the run has none")
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        return loss(logits, targets, teacher_logits=teacher_logits)

    def _save_within_epoch(self, run: StageRun, metrics: MetricsLog, best: dict[str, Any]) -> None:
        """``last.pt`` every ``output.checkpoint_every_steps`` steps (the epoch's end saves
        anyway)."""
        every = self.config.output.checkpoint_every_steps
        if every and run.global_step % every == 0 and run.step_in_epoch < run.steps_per_epoch:
            self._save(run, metrics, best, "last.pt")

    def _end_epoch(
        self, run: StageRun, epoch: int, metrics: MetricsLog, best: dict[str, Any]
    ) -> float | None:
        """Record the epoch, evaluate when due, call ``on_epoch_end``, keep the best and
        the last checkpoints and report; returns the evaluated accuracy, if any."""
        record = self._epoch_record(run, epoch)
        run.next_epoch()
        accuracy = None
        due = (epoch + 1) % self.config.evaluation.every_epochs == 0
        if run.eval_loader is not None and (due or epoch + 1 == run.training.epochs):
            record.update(evaluate(run.evaluated_model(), run.eval_loader, self.world))
            accuracy = record["eval_acc"]
        run.context.record = record
        run.call("on_epoch_end")
        if accuracy is not None and (best["accuracy"] is None or accuracy > best["accuracy"]):
            best.update(accuracy=accuracy, stage=run.stage.name, epoch=epoch + 1)
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
        return accuracy

    def _epoch_record(self, run: StageRun, epoch: int) -> dict[str, Any]:
        return {
            "stage": run.stage.name,
            "epoch": epoch + 1,
            **run.epoch_fields(self.world),
            "lr": run.learning_rate(),
        }

    def _save(
        self, run: StageRun, metrics: MetricsLog, best: dict[str, Any], filename: str
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


def compiled(model: nn.Module, spec: CompileSpec) -> nn.Module:
    """``model`` run through ``torch.compile`` as ``spec`` says, for the training steps of
    one stage. Graphs compiled for an earlier stage are dropped first: a stage may have
    swapped the binarizers, and its graphs would only fill the recompilation budget.
    The compiled wrapper shares ``model``'s parameters; checkpoints keep using ``model``
    itself, so their keys are those of an eager run."""
    torch.compiler.reset()
    mode = None if spec.mode == "default" else spec.mode
    return torch.compile(model, backend=spec.backend, mode=mode, fullgraph=spec.fullgraph)


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
    text = f"[{record['stage']}] epoch {record['epoch']}: train loss {record['train_loss']:.4f}"
    if "train_acc" in record:
        text += f", acc {record['train_acc']:.2%}"
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
