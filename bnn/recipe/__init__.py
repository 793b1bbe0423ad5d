"""The YAML config (recipe) of a bnn job: which model, how it is binarized, which data,
and how it is trained.

Every key is checked (unknown keys are errors) and names are resolved through the
registries, so ``bnn validate`` reports every problem before anything runs::

    version: 1
    seed: 0                 # initialisation, data order and augmentation
    model: {name: lenet5, num_classes: 10}
    binarize:
      bconfig:
        activation_pre_process: ste_sign
        weight_pre_process: {name: xnor_weight, compute_alpha: true}
      custom_config_layers_name: {_first_: {}, _last_: {}}   # {} = full precision
    data:
      dataset: fashion_mnist        # no root: the embedded subset
      batch_size: 256
    training:
      epochs: 10
      optimizers: {name: adam, lr: 0.001}

See docs/recipes.md for every section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from bnn.recipe.layering import env_file, env_overrides, merge
from bnn.recipe.sections import BinarizeField, DataSpec, RunConfig
from bnn.recipe.stages import Stage, resolve_stages
from bnn_core.config import BinarizeSpec, ModelSpec, load_yaml, validate_model
from bnn_core.errors import BnnError

__all__ = ["Recipe", "Stage", "load_recipe", "prepare_recipe", "resolve_stages"]


class Recipe(RunConfig):
    """A whole job config (schema version 1): a run plus the model and data it trains."""

    version: Literal[1]
    model: ModelSpec
    binarize: BinarizeField = None
    data: DataSpec | None = None  # type: ignore[assignment]

    @model_validator(mode="after")
    def _complete(self) -> Recipe:
        try:
            self.stages_to_run()
        except BnnError as exc:
            raise ValueError(str(exc)) from None
        return self

    def build_model(self, binarize: bool = True, pretrained: bool = True) -> Any:
        """Build the model (initialised from ``seed``), load the model's ``pretrained``
        weights unless ``pretrained`` is False, and, unless ``binarize`` is False,
        binarize it as the first stage says. A float model's weights load before that
        binarization; a binarized model's weights (its binarizers' parameters included,
        to fine-tune a binary network) after it, so that model is binarized either way."""
        import torch

        from bnn_core.weights import (
            binarized_weights,
            fit_weights,
            holds_no_weights,
            pretrained_weights,
        )

        torch.manual_seed(self.seed)
        model = self.model.build_untrained()
        spec = self.stages_to_run()[0].binarization
        given = self.model.pretrained
        if pretrained and given is not None and given is not False and not holds_no_weights(model):
            state, origin = pretrained_weights(given, self.model.name)
            if spec is not None and binarized_weights(state):
                model = spec.apply(model, inplace=True)
            fit_weights(model, state, origin, self.model.name)
        if binarize and spec is not None:
            model = spec.apply(model, inplace=True)
        return model

    def binarization(self) -> BinarizeSpec | None:
        """The first stage's binarization, completed with the model's declaration."""
        return self.stages_to_run()[0].binarization

    def stages_to_run(self) -> list[Stage]:
        """See :func:`resolve_stages`."""
        return resolve_stages(self, self.binarize, self.model.builder())

    def resolved_dump(self) -> dict[str, Any]:
        """This recipe as plain data with every binarization written out in full (the
        model's declaration filled in, each stage's own), so that the copy a run stores
        (``config.yaml``, checkpoints) rebuilds exactly the model that was trained."""

        def dump(spec: BinarizeSpec | None) -> dict[str, Any] | None:
            # unset BConfig slots stay unset: BConfig() (full precision) dumps as {}
            return None if spec is None else spec.model_dump(mode="json", exclude_unset=True)

        data = self.model_dump(mode="json")
        if self.binarize is not None:
            data["binarize"] = dump(self.binarize.completed(self.model.builder()))
        if self.stages:
            for saved, stage in zip(data["stages"], self.stages_to_run(), strict=True):
                saved["binarize"] = dump(stage.binarization)
        return data


def load_recipe(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> Recipe:
    """Load and validate a recipe file layered over ``defaults`` (an environment file's
    settings) and under ``overrides`` (``--set``); raises ConfigError listing every problem."""
    data = merge(merge(defaults or {}, load_yaml(path)), overrides or {})
    return validate_model(Recipe, data, str(path))


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
