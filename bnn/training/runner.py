"""Runs a recipe: what ``bnn train`` and ``bnn eval`` do, usable from Python too.
(:func:`prepare_recipe` and :func:`checkpoint_recipe` live below the trainer and are
re-exported here.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnn.recipe import Recipe, prepare_recipe
from bnn.training import checkpoint
from bnn.training.data import make_loader
from bnn.training.saved_recipe import checkpoint_recipe
from bnn.training.saved_state import fit_weights
from bnn.training.trainer import Trainer, TrainResult, evaluate
from bnn_core.errors import ConfigError

__all__ = ["checkpoint_recipe", "evaluate_checkpoint", "prepare_recipe", "train_recipe"]


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


def evaluate_checkpoint(path: Path, device: str | None = None) -> dict[str, Any]:
    """Rebuild the model a checkpoint holds, load the weights the run evaluated (its EMA
    average, if it kept one) and evaluate it on the recipe's evaluation split."""
    import torch

    recipe, state = checkpoint_recipe(path)
    model = recipe.build_model(binarize=False, pretrained=False)
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
