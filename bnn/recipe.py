"""The YAML config (recipe) of a bnn job: which model, how it is binarized, which data.

Every key is checked (unknown keys are errors) and names are resolved through the
registries, so ``bnn validate`` reports every problem before anything runs::

    version: 1
    seed: 0                 # initialisation and data order
    model: {name: lenet5, num_classes: 10}
    binarize:
      bconfig:
        activation_pre_process: ste_sign
        weight_pre_process: {name: xnor_weight, compute_alpha: true}
      custom_config_layers_name: {_first_: {}, _last_: {}}   # {} = full precision
    data:
      dataset: fashion_mnist        # no root: the embedded subset
      batch_size: 256
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, PositiveInt, model_validator

from bnn_core.config import BinarizeSpec, DatasetSpec, ModelSpec, load_yaml, validate_model
from bnn_core.errors import BnnError


def _default_binarization(value: Any) -> Any:
    """``binarize: default`` is an empty section: everything from the model's declaration."""
    return {} if value == "default" else value


class DataSpec(BaseModel):
    """Where batches come from."""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetSpec
    batch_size: PositiveInt = 128


class Recipe(BaseModel):
    """A whole job config (schema version 1)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    seed: int = 0
    model: ModelSpec
    binarize: Annotated[BinarizeSpec | None, BeforeValidator(_default_binarization)] = None
    data: DataSpec | None = None

    @model_validator(mode="after")
    def _complete_binarization(self) -> Recipe:
        try:
            self.binarization()
        except BnnError as exc:
            raise ValueError(str(exc)) from None
        return self

    def build_model(self, binarize: bool = True) -> Any:
        """Build the model (initialised from ``seed``) and, unless ``binarize`` is False,
        binarize it as configured."""
        import torch

        torch.manual_seed(self.seed)
        model = self.model.build()
        spec = self.binarization()
        if binarize and spec is not None:
            model = spec.apply(model, inplace=True)
        return model

    def binarization(self) -> BinarizeSpec | None:
        """The binarize section completed with the model's declared binarization."""
        if self.binarize is None:
            return None
        return self.binarize.completed(self.model.builder())


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe file; raises ConfigError listing every problem."""
    return validate_model(Recipe, load_yaml(path), str(path))
