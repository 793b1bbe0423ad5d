"""The stages a run goes through, each with its complete binarization and training
settings: a stage's ``training`` keys update the base ``training`` section."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from bnn.recipe.layering import merge
from bnn.recipe.sections import RunConfig, TrainingSpec, teacher_problem
from bnn_core.config import BinarizeSpec


class Stage(BaseModel):
    """A resolved stage: its name, complete binarization and training settings."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    binarization: BinarizeSpec | None
    training: TrainingSpec


def resolve_stages(config: RunConfig, binarize: BinarizeSpec | None, builder: Any) -> list[Stage]:
    """The stages ``config`` runs, each with its full binarization and training settings.
    Without ``stages`` there is one stage, ``main``. A stage's ``training`` keys update the
    base ``training`` section; its ``binarize`` (else ``binarize``) is completed with what
    the model ``builder`` declares (``builder`` may be None for models built in Python).
    Invalid stage training settings raise a ValidationError located at
    ``stages.N.training``."""

    def complete(spec: BinarizeSpec | None) -> BinarizeSpec | None:
        if spec is None or builder is None:
            return spec
        return spec.completed(builder)

    if not config.stages:
        problem = teacher_problem(config.training, config.distillation)
        if problem:
            raise _invalid(config, [_located(("training", "loss"), problem)])
        return [Stage(name="main", binarization=complete(binarize), training=config.training)]
    stages = []
    problems: list[Any] = []
    base = config.training.model_dump(exclude_unset=True)
    for index, stage in enumerate(config.stages):
        where = ("stages", index, "training")
        try:
            training = TrainingSpec.model_validate(merge(base, stage.training))
        except ValidationError as exc:  # reported at their place: stages.N.training.KEY
            problems += [{**error, "loc": (*where, *error["loc"])} for error in exc.errors()]
            continue
        problem = teacher_problem(training, config.distillation)
        if problem:
            problems.append(_located((*where, "loss"), problem))
            continue
        chosen = stage.binarize if "binarize" in stage.model_fields_set else binarize
        stages.append(Stage(name=stage.name, binarization=complete(chosen), training=training))
    if problems:
        raise _invalid(config, problems)
    return stages


def _located(loc: tuple[Any, ...], problem: str) -> dict[str, Any]:
    """A validation error at ``loc`` saying ``problem``."""
    return {"type": "value_error", "loc": loc, "input": None, "ctx": {"error": ValueError(problem)}}


def _invalid(config: RunConfig, problems: list[Any]) -> ValidationError:
    return ValidationError.from_exception_data(type(config).__name__, problems)
