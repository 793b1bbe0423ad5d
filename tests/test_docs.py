"""The YAML examples of the configuration docs are valid recipes."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bnn.recipe import Recipe
from bnn_core.config import validate_model

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_configuration_example_validates():
    text = (DOCS / "configuration.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)[:1]
    recipe = validate_model(Recipe, yaml.safe_load(block), "docs/configuration.md")
    assert recipe.model.name == "lenet5"
    assert recipe.binarization().custom_config_layers_name["_first_"].is_full_precision


def test_recipes_reference_validates():
    text = (DOCS / "recipes.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL) if "version" in b)
    recipe = validate_model(Recipe, yaml.safe_load(block), "docs/recipes.md")
    assert [o.name for o in recipe.training.optimizers] == ["adam", "bop"]
