"""The docs against the code: the YAML examples are valid recipes, the command listings
are what the commands print, and the plugin guide's Python samples run."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import bnn_core
from bnn.recipe import Recipe
from bnn_core.config import validate_model
from bnn_core.testing import check_binarizer

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: How a Python block of the plugin guide is marked: written to a file and run, or not run.
MARKS = ("file", "excerpt")


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


def _listings_script() -> ModuleType:
    """scripts/update_doc_listings.py, imported (it holds the doc block conventions)."""
    path = DOCS.parent / "scripts" / "update_doc_listings.py"
    spec = importlib.util.spec_from_file_location("update_doc_listings", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def test_listings_in_the_docs_are_what_the_commands_print():
    script = _listings_script()
    listings = script.collect_listings()
    assert len(listings) >= 10, "the marked listings were not found"
    stale = [listing.diff() for listing in listings if listing.stale]
    assert not stale, (
        "These listings differ from what the commands print now; run "
        "`python scripts/update_doc_listings.py` to regenerate them:\n" + "\n".join(stale)
    )


def _guide_blocks() -> list:
    lines = (DOCS / "writing-plugins.md").read_text().split("\n")
    return _listings_script().fenced_blocks(lines)


def test_every_python_sample_of_the_plugin_guide_is_run_or_marked_an_excerpt():
    python = [b for b in _guide_blocks() if b.language == "python"]
    assert len(python) >= 5
    unmarked = [b.start + 1 for b in python if not b.marker or b.marker[0] not in MARKS]
    assert not unmarked, f"docs/writing-plugins.md: python blocks at lines {unmarked} need a mark"


@pytest.fixture
def guide_files(tmp_path, monkeypatch, fresh_plugins):
    """The plugin guide's ``<!-- file: PATH -->`` blocks written under ``tmp_path``, which
    goes first on ``sys.path``; an installed copy of the example plugin is disabled."""
    for block in _guide_blocks():
        if block.marker and block.marker[0] == "file":
            path = tmp_path / block.marker[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(block.body) + "\n")
    for package in ("bnn_example_plugin", "my_plugin"):
        (tmp_path / package / "__init__.py").touch()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BNN_DISABLED_PLUGINS", "bnn-example-plugin")
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("bnn_example_plugin", "my_plugin", "guide_test_plugin"):
            del sys.modules[name]


def _run_tests_of(path: Path) -> int:
    """Call every ``test_*`` function of the file at ``path``, expanding a parametrize
    mark; return how many calls ran."""
    spec = importlib.util.spec_from_file_location("guide_test_plugin", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    calls = 0
    for name, function in vars(module).items():
        if not name.startswith("test_"):
            continue
        marks = [m for m in getattr(function, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            function()
            calls += 1
        for mark in marks:
            argument, values = mark.args[0], list(mark.args[1])
            for value in values:
                function(**{argument: value})
                calls += 1
    return calls


def test_plugin_guide_samples_register_and_work(guide_files):
    example = bnn_core.register_plugin(importlib.import_module("bnn_example_plugin.plugin"))
    assert example.registered == {
        "binarizer": ["example_swish_sign"],
        "model": ["example_tiny_cnn"],
        "dataset": ["example_stripes"],
    }
    check_binarizer("example_swish_sign")
    assert _run_tests_of(guide_files / "tests" / "test_plugin.py") == 7

    layers = bnn_core.register_plugin(importlib.import_module("my_plugin.plugin"))
    assert layers.registered == {"layer": ["masked_linear"]}
    from my_plugin.layers import BinaryMaskedLinear, MaskedLinear

    float_layer = MaskedLinear(6, 4)
    float_layer.mask[:, :3] = 0
    model = bnn_core.prepare_binary_model(nn.Sequential(float_layer), "bnn")
    assert isinstance(model[0], BinaryMaskedLinear)
    x = torch.linspace(-1, 1, 12).reshape(2, 6)
    signs = [torch.where(t >= 0, 1.0, -1.0) for t in (x, float_layer.weight)]
    expected = F.linear(signs[0], signs[1] * float_layer.mask, float_layer.bias)
    torch.testing.assert_close(model(x), expected)
