"""What a checkpoint must hold before a run resumes from it or ``bnn eval`` rebuilds its
model, checked field by field so that a file that loads but lacks or mistypes an entry,
or holds weights of another model, is a clear CheckpointError instead of a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, NonNegativeInt, ValidationError
from torch import nn

from bnn.training.checkpoint import CheckpointError

SHOWN = 3  # names listed per kind of mismatch


class _Saved(BaseModel):
    model_config = ConfigDict(strict=True, arbitrary_types_allowed=True, extra="allow")


class SavedModel(_Saved):
    """The entries that evaluating or exporting a checkpoint reads."""

    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    epoch: NonNegativeInt
    stage: NonNegativeInt
    stages: list[str] | None = None
    config: dict[str, Any] = {}


class SavedBest(_Saved):
    """The best evaluation of a run so far."""

    accuracy: float | None
    stage: str | None
    epoch: NonNegativeInt | None


class SavedRandomState(_Saved):
    """The random states :func:`bnn.training.checkpoint.rng_state` captures."""

    torch: torch.Tensor
    numpy: list[Any]
    python: list[Any]


class SavedRun(SavedModel):
    """Everything a run needs to continue exactly where the checkpoint was written."""

    stages: list[str]
    optimizers: list[dict[str, Any]]
    schedulers: list[dict[str, Any]]
    scaler: dict[str, Any]
    rng: SavedRandomState
    step_in_epoch: NonNegativeInt
    global_step: NonNegativeInt
    running: dict[str, float]
    best: SavedBest
    history: list[dict[str, Any]]


def check_model_state(state: dict[str, Any], path: Path) -> None:
    """Raise a CheckpointError unless ``state`` holds a model to evaluate."""
    _check(SavedModel, state, path, "evaluated")


def check_run_state(state: dict[str, Any], path: Path) -> None:
    """Raise a CheckpointError unless ``state`` holds a run to resume."""
    _check(SavedRun, state, path, "resumed")


def _check(schema: type[BaseModel], state: dict[str, Any], path: Path, use: str) -> None:
    try:
        schema.model_validate(state)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            what = "missing" if error["type"] == "missing" else error["msg"].lower()
            problems.append(f"{where}: {what}")
        more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        raise CheckpointError(
            f"checkpoint {path} cannot be {use}: it lacks or mistypes entries that bnn train "
            f"writes ({'; '.join(problems[:SHOWN])}{more}); it was altered or written by "
            "another program"
        ) from None


def fit_weights(module: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Load ``weights`` into ``module``, or raise a CheckpointError that names the missing
    and unexpected entries and the shapes that differ (``source`` says whose weights)."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    reshaped = [
        f"{key} is {list(weights[key].shape)} in the file, {list(expected[key].shape)} in the model"
        for key in expected
        if key in weights and weights[key].shape != expected[key].shape
    ]
    problems = [
        _listed(names, kind)
        for names, kind in (
            (missing, "missing"),
            (unexpected, "unexpected"),
            (reshaped, "of another shape"),
        )
        if names
    ]
    if not problems:
        try:
            module.load_state_dict(weights)
            return
        except (RuntimeError, TypeError, ValueError) as exc:
            problems.append(" ".join(str(exc).split())[:300])
    raise CheckpointError(
        f"{source} do not fit the model: {'; '.join(problems)}; the checkpoint comes from "
        "another model or model configuration"
    )


def _listed(names: list[str], kind: str) -> str:
    shown = ", ".join(names[:SHOWN])
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return f"{len(names)} {kind} ({shown}{more})"
