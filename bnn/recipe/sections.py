"""The training sections of a recipe: optimizers, schedule, loss, metrics, callbacks,
distillation, stages, output.

Each section is a Pydantic model that rejects unknown keys; defaults are what a first
binary-network run on a CPU wants (Adam, cosine schedule, cross-entropy, latent weights
clipped to [-1, 1], no weight decay on latent binary weights).
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from bnn.optim import GROUPS
from bnn_core.config import BinarizeSpec, ComponentSpec, DatasetSpec, ModelSpec

GroupName = Literal["binary_weights", "binarizers", "others"]

#: The largest count a recipe may give (batch size, epochs, steps): what torch's 32-bit
#: indices hold. Integers are strict: ``true`` or ``2.5`` is not a count.
MAX_COUNT = 2**31 - 1
#: Seeds are what ``torch.manual_seed`` and the data order accept: 0 to 2**63 - 1.
MAX_SEED = 2**63 - 1
#: More loader processes than this is a typo, not a machine.
MAX_WORKERS = 256

PositiveInt = Annotated[int, Strict(), Field(ge=1, le=MAX_COUNT)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNT)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]

#: The placeholder ``output.dir`` may hold; it is replaced by plain text substitution.
NAME_PLACEHOLDER = "{name}"


def default_binarization(value: Any) -> Any:
    """``binarize: default`` is an empty section: everything from the model's declaration."""
    return {} if value == "default" else value


BinarizeField = Annotated[BinarizeSpec | None, BeforeValidator(default_binarization)]


class Section(BaseModel):
    """A recipe section: unknown keys are errors, and so are infinite or NaN numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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

    @model_validator(mode="after")
    def _check_settings(self) -> OptimizerSpec:
        for key, value in self.settings.items():
            problem = setting_problem(key, value)
            if problem:
                raise ValueError(f"{key} {problem}, got {value!r}")
        try:  # the optimizer's own checks, on one dummy parameter, before any training
            self.builder()([torch.nn.Parameter(torch.zeros(1))], **self.settings)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.name} refuses its settings: {exc}") from None
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


#: Optimizer settings torch checks only when the optimizer is built (or never): the
#: smallest value each may take and whether that value itself is allowed.
SETTING_MINIMUMS = {
    "lr": (0.0, True),  # 0 freezes the groups, which tests and ablations use
    "eps": (0.0, False),
    "gamma": (0.0, False),
    "weight_decay": (0.0, True),
    "momentum": (0.0, True),
    "dampening": (0.0, True),
    "alpha": (0.0, True),
    "threshold": (0.0, True),
}


def setting_problem(key: str, value: Any) -> str | None:
    """Why an optimizer setting is out of range, or ``None`` when it is fine."""
    numbers = value if key == "betas" and isinstance(value, list | tuple) else [value]
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int | float):
            continue  # types are checked against the optimizer's signature
        if not math.isfinite(number):
            return "must be a finite number"
        if key == "betas" and not 0.0 <= number < 1.0:
            return "each beta must be in [0, 1)"
        if key in SETTING_MINIMUMS:
            least, allowed = SETTING_MINIMUMS[key]
            if number < least or (number == least and not allowed):
                return f"must be {'at least' if allowed else 'greater than'} {least:g}"
    return None


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


class LossSpec(ComponentSpec):
    """A registered loss (``cross_entropy``, ``distillation``, ...) and its options."""

    kind: ClassVar[str] = "loss"


class MetricSpec(ComponentSpec):
    """A registered training metric (``accuracy``, ``top5``, ``flip_ratio``, ...)."""

    kind: ClassVar[str] = "metric"


class CallbackSpec(ComponentSpec):
    """A registered trainer callback (``bop_gamma``, ...) and its options."""

    kind: ClassVar[str] = "callback"


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, dict | str) else value


def uses_teacher(loss: LossSpec | None) -> bool:
    """Whether ``loss`` learns from a teacher's logits (the loss declares
    ``uses_teacher = True``)."""
    return loss is not None and bool(getattr(loss.builder(), "uses_teacher", False))


#: ``torch.compile`` modes a recipe may name.
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


class CompileSpec(Section):
    """How ``torch.compile`` compiles the training steps: its ``backend`` (a name from
    ``torch.compiler.list_backends``), ``mode`` and ``fullgraph``; ``training.compile:
    true`` means these defaults."""

    backend: str = "inductor"
    mode: CompileMode = "default"
    fullgraph: bool = False

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in torch.compiler.list_backends(exclude_tags=()):  # debug ones too
            usual = torch.compiler.list_backends()
            close = difflib.get_close_matches(value, usual, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "."
            raise ValueError(
                f"{value!r} is not a torch.compile backend{hint} The usual backends are "
                f"{', '.join(sorted(usual))}"
            )
        return value


def _compile_options(value: Any) -> Any:
    """``compile: true`` is the default compilation, ``false`` (or null) none."""
    if value is True:
        return CompileSpec()
    if value is False or value is None:
        return None
    if not isinstance(value, dict | CompileSpec):
        raise ValueError(
            f"must be true, false or a mapping {{backend: ..., mode: ..., fullgraph: ...}}, "
            f"got {value!r}"
        )
    return value


class TrainingSpec(Section):
    """How to train: epochs, batches, optimizers per parameter group, the loss, the
    metrics recorded per epoch, callbacks and the BNN tricks. ``channels_last`` runs
    convolutions on NHWC tensors (often faster on CPUs); ``compile`` runs the training
    steps through ``torch.compile`` (checkpoints, evaluation and EMA use the model
    itself). Without ``loss`` the loss is cross-entropy with ``label_smoothing``
    (distillation when the run has a teacher)."""

    epochs: Annotated[int, Strict(), Field(ge=1, le=100_000)] = 10
    grad_accumulation: PositiveInt = 1
    optimizers: Annotated[list[OptimizerSpec], BeforeValidator(_listed)] = Field(
        default_factory=lambda: [OptimizerSpec(name="adam", lr=1e-3)]
    )
    loss: LossSpec | None = None
    metrics: Annotated[list[MetricSpec], BeforeValidator(_listed)] = Field(
        default_factory=lambda: [MetricSpec(name="accuracy")]
    )
    callbacks: Annotated[list[CallbackSpec], BeforeValidator(_listed)] = Field(default_factory=list)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    clip_latent_weights: PositiveFloat | None = 1.0
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    amp: bool = False
    ema: EmaSpec | None = None
    progress: Literal["epoch", "step"] = "epoch"
    channels_last: bool = False
    compile: Annotated[CompileSpec | None, BeforeValidator(_compile_options)] = None

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

    @model_validator(mode="after")
    def _smoothing_of_the_default_loss(self) -> TrainingSpec:
        if self.loss is not None and "label_smoothing" in self.model_fields_set:
            raise ValueError(
                "label_smoothing applies to the default loss only; with 'loss' given, set it "
                f"among the loss's options ({{name: {self.loss.name}, label_smoothing: ...}})"
            )
        return self

    @model_validator(mode="after")
    def _metrics_once(self) -> TrainingSpec:
        builders = [spec.builder() for spec in self.metrics]
        for index, builder in enumerate(builders):
            if builder in builders[:index]:
                raise ValueError(f"metrics names {self.metrics[index].name!r} twice")
        return self


class TeacherSpec(ModelSpec):
    """The real-valued teacher: a registered model and its options, plus ``checkpoint``,
    a file with its trained weights (a bnn checkpoint or a plain state dict)."""

    reserved: ClassVar[frozenset[str]] = ModelSpec.reserved | {"checkpoint"}

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
    """Where a run writes: ``dir`` (``{name}`` is the experiment name, the only
    placeholder), and how often checkpoints are written besides the end of each epoch."""

    dir: str = "runs/{name}"
    checkpoint_every_steps: NonNegativeInt = 0

    @field_validator("dir")
    @classmethod
    def _check_dir(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a directory")
        if "\0" in value:
            raise ValueError("must not hold a NUL character")
        if re.search(r"[{}]", value.replace(NAME_PLACEHOLDER, "")):
            raise ValueError(
                f"{value!r} holds a brace that is not the placeholder {NAME_PLACEHOLDER}; "
                f"{NAME_PLACEHOLDER} (the experiment name) is the only placeholder allowed"
            )
        return value

    def folder(self, name: str) -> Path:
        """``dir`` with ``{name}`` replaced by ``name`` (plain substitution) and ``~``
        expanded."""
        return Path(self.dir.replace(NAME_PLACEHOLDER, name)).expanduser()


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
    workers: Annotated[int, Strict(), Field(ge=0, le=MAX_WORKERS)] = 0


class DataSpec(LoaderSpec):
    """Where batches come from: the training split of ``dataset`` and the evaluation split
    of ``eval_dataset`` (default: the same dataset)."""

    dataset: DatasetSpec
    eval_dataset: DatasetSpec | None = None


def teacher_problem(training: TrainingSpec, distillation: DistillationSpec | None) -> str | None:
    """Why ``training``'s loss cannot run with ``distillation``, or ``None``: a loss that
    learns from a teacher needs the ``distillation`` section that names the teacher."""
    if distillation is None and uses_teacher(training.loss):
        assert training.loss is not None
        return (
            f"the loss {training.loss.name!r} learns from a teacher, and there is none: add a "
            "'distillation' section naming the teacher model (distillation.teacher)"
        )
    return None


class RunConfig(Section):
    """Everything about a run except what it trains: the part of a recipe the Python API
    takes along with a model and datasets built in Python."""

    name: str | None = None
    seed: Annotated[int, Strict(), Field(ge=0, le=MAX_SEED)] = 0
    data: LoaderSpec = Field(default_factory=LoaderSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    distillation: DistillationSpec | None = None
    stages: list[StageSpec] = Field(default_factory=list)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    logging: LoggingSpec = Field(default_factory=LoggingSpec)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and (
            value.strip() in {"", ".", ".."} or any(c in value for c in "/\\\0")
        ):
            raise ValueError(
                f"{value!r} is not a usable experiment name: it names the run's folder, so it "
                "must be non-empty and hold no '/', '\\' or NUL character"
            )
        return value
