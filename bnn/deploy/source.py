"""The model a command-line target names, ready to export or benchmark.

A target is a checkpoint written by ``bnn train`` (the model is rebuilt from the recipe
stored in it, binarized as far as its stage, and loaded), a recipe (its run's
``best.pt`` or ``last.pt`` when there is one, else its untrained model binarized as its
last stage says), or a registered model name (binarized as the model declares, with the
weights it ships if any; or with ``--bconfig`` and random weights). The float twin, the
same network without binarizers, is what the packed runtime is benchmarked against.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from bnn_core.errors import ConfigError
from bnn_core.layers import is_binary_layer

RECIPE_SUFFIXES = (".yaml", ".yml")


@dataclass
class Source:
    """A binarized model (eval mode), where it came from, and how to rebuild it."""

    model: nn.Module
    name: str
    description: str
    input_shape: tuple[int, ...] | None
    trained: bool
    spec: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """What the exported file records about its origin (``bnn bench`` reads it)."""
        return {"description": self.description, "trained": self.trained, "model": self.spec}


def declared_input_shape(model_name: str) -> tuple[int, ...] | None:
    """The input shape a registered model declares, if any."""
    from bnn_core.registries import REGISTRIES

    shape = REGISTRIES["model"].entry(model_name).metadata.get("input_shape")
    return None if shape is None else tuple(shape)


def load_source(target: str, bconfig: str | None = None) -> Source:
    """The model ``target`` names (see the module docstring)."""
    path = Path(target)
    if bconfig is not None and (path.suffix in RECIPE_SUFFIXES or path.is_file()):
        raise ConfigError(
            "--bconfig applies to a model name; a recipe or checkpoint binarizes its model as "
            "its 'binarize' section says"
        )
    if path.suffix in RECIPE_SUFFIXES:
        return _from_recipe(path)
    if path.is_file():
        return from_checkpoint(path)
    return _from_registry(target, bconfig)


def from_checkpoint(path: Path) -> Source:
    """The trained model of a ``bnn train`` checkpoint."""
    from bnn.training.saved_recipe import checkpoint_recipe

    recipe, state = checkpoint_recipe(path)
    model = recipe.build_model(binarize=False, pretrained=False)
    stages = recipe.stages_to_run()
    for stage in stages[: state["stage"] + 1]:
        if stage.binarization is not None:
            model = stage.binarization.apply(model, inplace=True)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ConfigError(
            f"{path}: its weights do not fit the model its recipe builds: "
            f"{' '.join(str(exc).split())[:400]}"
        ) from None
    stage = stages[state["stage"]].name
    return Source(
        model=model.eval(),
        name=recipe.model.name,
        description=f"checkpoint {path} (stage {stage}, epoch {state.get('epoch')})",
        input_shape=declared_input_shape(recipe.model.name),
        trained=True,
        spec={"name": recipe.model.name, "options": recipe.model.options},
    )


def _from_recipe(path: Path) -> Source:
    from bnn.recipe import prepare_recipe

    recipe, output = prepare_recipe(path)
    for candidate in (output / "best.pt", output / "last.pt"):
        if candidate.exists():
            return from_checkpoint(candidate)
    model = recipe.build_model(binarize=False)
    for stage in recipe.stages_to_run():
        if stage.binarization is not None:
            model = stage.binarization.apply(model, inplace=True)
    return Source(
        model=model.eval(),
        name=recipe.model.name,
        description=f"recipe {path}, untrained (no checkpoint in {output})",
        input_shape=declared_input_shape(recipe.model.name),
        trained=False,
        spec={"name": recipe.model.name, "options": recipe.model.options},
    )


def _from_registry(name: str, bconfig: str | None) -> Source:
    from bnn_core.registries import REGISTRIES, create_model

    entry = REGISTRIES["model"].entry(name)
    shipped = bconfig is None and entry.metadata.get("weights") is not None
    model = create_model(entry.name, binarize=bconfig or True, pretrained=shipped or None)
    method = bconfig or "its declared binarization"
    weights = "its shipped weights" if shipped else "untrained (random weights)"
    return Source(
        model=model.eval(),
        name=entry.name,
        description=f"model {entry.name} with {method}, {weights}",
        input_shape=declared_input_shape(entry.name),
        trained=shipped,
        spec={"name": entry.name, "options": {}},
    )


def float_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every binary layer replaced by its float layer (same
    weights, no binarizers), in eval mode."""
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if is_binary_layer(module):
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, child, module.to_float())
    return twin.eval()


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    """The float model a file's ``source.model`` metadata names (random weights; the float
    twin of a model whose builder returns it binarized)."""
    from bnn_core.registries import create_model

    if not spec.get("name"):
        raise ConfigError(
            "this file does not record which registered model it was exported from, so its "
            "float twin cannot be rebuilt; benchmark the checkpoint, recipe or model name instead"
        )
    model = create_model(spec["name"], **spec.get("options", {}))
    if any(is_binary_layer(module) for module in model.modules()):
        return float_twin(model)
    return model.eval()
