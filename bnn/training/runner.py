"""Runs a recipe: what ``bnn train`` and ``bnn eval`` do, usable from Python too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnn.recipe import Recipe, load_recipe
from bnn.training import checkpoint
from bnn.training.data import make_loader
from bnn.training.layering import env_file, env_overrides, merge
from bnn.training.saved_state import check_model_state, fit_weights
from bnn.training.trainer import Trainer, TrainResult, evaluate
from bnn_core.config import validate_model
from bnn_core.errors import ConfigError


def prepare_recipe(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    env: str | None = None,
    exp_name: str | None = None,
    seed: int | None = None,
) -> tuple[Recipe, Path]:
    """The recipe with its layers (environment file < recipe < ``overrides`` < flags) and
    the run's output folder."""
    defaults: dict[str, Any] = {}
    project_root: Path | None = None
    if env is not None:
        defaults, project_root = env_overrides(env_file(env))
    flags: dict[str, Any] = {}
    if exp_name is not None:
        flags["name"] = exp_name
    if seed is not None:
        flags["seed"] = seed
    recipe = load_recipe(path, merge(overrides or {}, flags), defaults)
    name = recipe.name or Path(path).stem
    if recipe.name is None:
        recipe = recipe.model_copy(update={"name": name})
    output = recipe.output.folder(name)
    if project_root is not None and not output.is_absolute():
        output = project_root / output
    return recipe, output


def train_recipe(
    recipe: Recipe,
    output_dir: Path,
    device: str | None = None,
    resume: str | Path | bool | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Build the model and datasets of ``recipe`` and train them; ``resume=True`` continues
    from the run's ``last.pt``."""
    if recipe.data is None:
        raise ConfigError("training needs a 'data' section naming a dataset")
    train_data = recipe.data.dataset.build(split="train")
    eval_spec = recipe.data.eval_dataset or recipe.data.dataset
    eval_data = eval_spec.build(split=recipe.evaluation.split)
    model = recipe.build_model(binarize=False)
    trainer = Trainer(
        model,
        train_data,
        eval_data,
        recipe,
        binarize=recipe.binarize,
        model_builder=recipe.model.builder(),
        output_dir=output_dir,
        device=device,
        quiet=quiet,
        resolved_config={"recipe": recipe.resolved_dump()},
    )
    if resume is True:
        resume = output_dir / "last.pt"
    return trainer.fit(resume=resume or None)


def checkpoint_recipe(path: Path) -> tuple[Recipe, dict[str, Any]]:
    """The recipe a checkpoint was trained with, and the checkpoint itself, checked to
    hold a model of one of the recipe's stages."""
    state = checkpoint.load(path)
    check_model_state(state, path)
    saved = state.get("config", {}).get("recipe")
    if saved is None:
        raise ConfigError(
            f"{path} was written by the Python API, which has no model recipe; load its "
            "'model' entry into your model with load_state_dict"
        )
    recipe = validate_model(Recipe, saved, f"the recipe stored in {path}")
    names = [stage.name for stage in recipe.stages_to_run()]
    if state["stage"] >= len(names) or state.get("stages", names) != names:
        raise checkpoint.CheckpointError(
            f"checkpoint {path} says it stopped in stage number {state['stage']} of the stages "
            f"{state.get('stages', names)}, but the recipe stored in it has the stages {names}; "
            "the file was altered or damaged"
        )
    return recipe, state


def evaluate_checkpoint(path: Path, device: str | None = None) -> dict[str, Any]:
    """Rebuild the model a checkpoint holds, load the weights the run evaluated (its EMA
    average, if it kept one) and evaluate it on the recipe's evaluation split."""
    import torch

    recipe, state = checkpoint_recipe(path)
    model = recipe.build_model(binarize=False)
    for stage in recipe.stages_to_run()[: state["stage"] + 1]:
        if stage.binarization is not None:
            model = stage.binarization.apply(model, inplace=True)
    fit_weights(model, checkpoint.evaluated_weights(state), f"the weights in checkpoint {path}")
    target = torch.device(device) if device else torch.device("cpu")
    model.to(target)
    assert recipe.data is not None
    eval_spec = recipe.data.eval_dataset or recipe.data.dataset
    data = eval_spec.build(split=recipe.evaluation.split)
    loader = make_loader(
        data,
        recipe.data.eval_batch_size or recipe.data.batch_size,
        seed=recipe.seed,
        train=False,
        workers=recipe.data.workers,
    )
    from bnn.training.distributed import World

    metrics = evaluate(model, loader, World(device=target))
    return {
        "checkpoint": str(path),
        "dataset": eval_spec.name,
        "split": recipe.evaluation.split,
        "samples": len(data),
        "stage": recipe.stages_to_run()[state["stage"]].name,
        "epoch": state["epoch"],
        **metrics,
    }
