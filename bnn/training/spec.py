"""The training sections of a recipe: optimizers, schedule, distillation, stages, output.

Each section is a Pydantic model that rejects unknown keys; defaults are what a first
binary-network run on a CPU wants (Adam, cosine schedule, latent weights clipped to
[-1, 1], no weight decay on latent binary weights).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from bnn.optim import GROUPS
from bnn_core.config import BinarizeSpec, ComponentSpec, DatasetSpec, ModelSpec

GroupName = Literal["binary_weights", "binarizers", "others"]


def default_binarization(value: Any) -> Any:
    """``binarize: default`` is an empty section: everything from the model's declaration."""
    return {} if value == "default" else value


BinarizeField = Annotated[BinarizeSpec | None, BeforeValidator(default_binarization)]


class Section(BaseModel):
    """A recipe section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class OptimizerSpec(ComponentSpec):
    """A registered optimizer (``sgd``, ``adam``, ``adamw``, ``bop``, ...), its options and
    the parameter groups it trains: ``binary_weights`` (latent weights of binary layers),
    ``binarizers`` (learned scales and thresholds) and ``others``."""

    kind: ClassVar[str] = "optimizer"
    reserved: ClassVar[frozenset[str]] = frozenset({"groups"})

    @model_validator(mode="after")
    def _check_groups(self) -> OptimizerSpec:
        unknown = sorted(set(self.groups) - set(GROUPS))
        if unknown:
            raise ValueError(f"unknown parameter group {unknown[0]!r}; the groups are {GROUPS}")
        return self

    @property
    def groups(self) -> list[str]:
        """The parameter groups this optimizer trains (all of them by default)."""
        groups = self.options.get("groups", list(GROUPS))
        return [groups] if isinstance(groups, str) else list(groups)

    @property
    def settings(self) -> dict[str, Any]:
        """The optimizer's own options (``lr``, ``weight_decay``, ...)."""
        return {k: v for k, v in self.options.items() if k != "groups"}


def _optimizers(value: Any) -> Any:
    return [value] if isinstance(value, dict | str) else value


class ScheduleSpec(Section):
    """Learning-rate schedule, applied per optimizer step: a linear warm-up, then
    ``cosine`` (to ``min_lr`` times the base rate), ``linear`` decay, ``step`` decay
    (times ``gamma`` at each epoch in ``milestones``) or ``constant``."""

    name: Literal["cosine", "linear", "step", "constant"] = "cosine"
    warmup_epochs: NonNegativeFloat = 0.0
    min_lr: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    milestones: list[PositiveInt] = Field(default_factory=list)
    gamma: PositiveFloat = 0.1


class EmaSpec(Section):
    """Exponential moving average of the weights, used for evaluation when enabled."""

    decay: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.999


class TrainingSpec(Section):
    """How to train: epochs, batches, optimizers per parameter group and the BNN tricks.
    ``channels_last`` runs convolutions on NHWC tensors (often faster on CPUs)."""

    epochs: PositiveInt = 10
    grad_accumulation: PositiveInt = 1
    optimizers: Annotated[list[OptimizerSpec], BeforeValidator(_optimizers)] = Field(
        default_factory=lambda: [OptimizerSpec(name="adam", lr=1e-3)]
    )
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    clip_latent_weights: PositiveFloat | None = 1.0
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    amp: bool = False
    ema: EmaSpec | None = None
    progress: Literal["epoch", "step"] = "epoch"
    channels_last: bool = False

    @model_validator(mode="after")
    def _every_group_trained_once(self) -> TrainingSpec:
        seen: dict[str, str] = {}
        for optimizer in self.optimizers:
            for group in optimizer.groups:
                if group in seen:
                    raise ValueError(
                        f"parameter group {group!r} is given to both {seen[group]!r} and "
                        f"{optimizer.name!r}; each group has one optimizer"
                    )
                seen[group] = optimizer.name
        return self


class TeacherSpec(ModelSpec):
    """The real-valued teacher: a registered model and its options, plus ``checkpoint``,
    a file with its trained weights (a bnn checkpoint or a plain state dict)."""

    reserved: ClassVar[frozenset[str]] = frozenset({"checkpoint"})

    @property
    def checkpoint(self) -> str | None:
        """Path of the teacher's weights, if given."""
        return self.options.get("checkpoint")


class DistillationSpec(Section):
    """Knowledge distillation from a real-valued teacher (ReActNet's distributional loss):
    ``loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE``."""

    teacher: TeacherSpec
    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    temperature: PositiveFloat = 1.0


class StageSpec(Section):
    """One stage of a multi-stage recipe: it re-binarizes the model (learned binarizer
    parameters carry over) and trains with the base ``training`` section updated by the
    keys given here."""

    name: str
    binarize: BinarizeField = None
    training: dict[str, Any] = Field(default_factory=dict)


class EvaluationSpec(Section):
    """When to evaluate on the held-out split."""

    every_epochs: PositiveInt = 1
    split: Literal["test", "val"] = "test"


class OutputSpec(Section):
    """Where a run writes: ``dir`` (``{name}`` is the experiment name), and how often
    checkpoints are written besides the end of each epoch."""

    dir: str = "runs/{name}"
    checkpoint_every_steps: NonNegativeInt = 0


class LoggingSpec(Section):
    """What a run shows and records."""

    progress_bar: bool = True
    tensorboard: bool = False
    plot: bool = True
    log_every_steps: PositiveInt = 50


class LoaderSpec(Section):
    """How batches are formed: ``batch_size`` is the global batch (split over ranks)."""

    batch_size: PositiveInt = 128
    eval_batch_size: PositiveInt | None = None
    workers: NonNegativeInt = 0


class DataSpec(LoaderSpec):
    """Where batches come from: the training split of ``dataset`` and the evaluation split
    of ``eval_dataset`` (default: the same dataset)."""

    dataset: DatasetSpec
    eval_dataset: DatasetSpec | None = None


class RunConfig(Section):
    """Everything about a run except what it trains: the part of a recipe the Python API
    takes along with a model and datasets built in Python."""

    name: str | None = None
    seed: int = 0
    data: LoaderSpec = Field(default_factory=LoaderSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    distillation: DistillationSpec | None = None
    stages: list[StageSpec] = Field(default_factory=list)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    logging: LoggingSpec = Field(default_factory=LoggingSpec)
