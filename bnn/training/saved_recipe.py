"""The recipe a ``bnn train`` checkpoint stores, read back with the checkpoint and checked
against it: what ``bnn eval`` and export rebuild a trained model from, without the
trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnn.recipe import Recipe
from bnn.training import checkpoint
from bnn.training.saved_state import check_model_state
from bnn_core.config import validate_model
from bnn_core.errors import ConfigError


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
