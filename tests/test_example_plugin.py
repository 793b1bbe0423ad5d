"""The example plugin installed for real: pip builds and installs
``plugins/bnn-example-plugin`` into a throwaway directory, and the ``bnn`` command, run
with that directory on ``PYTHONPATH``, discovers it through its entry point.

The project's virtual environment is left untouched, and pip works offline
(``--no-index --no-build-isolation`` uses the setuptools already installed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugin_install import PLUGINS, Installed, install_plugin

PLUGIN_SOURCE = PLUGINS / "bnn-example-plugin"
DISTRIBUTION = "bnn-example-plugin"
RECIPE = """\
version: 1
model: {name: example_tiny_cnn, num_classes: 2, width: 4}
binarize:
  bconfig:
    activation_pre_process: example_swish_sign
    weight_pre_process: {name: example_swish_sign, beta: 10.0}
  custom_config_layers_name: {_first_: {}, _last_: {}}
data:
  dataset: {name: example_stripes, length: 32}
  batch_size: 16
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The plugin, built and installed once."""
    return install_plugin("bnn-example-plugin", tmp_path_factory.mktemp("example_plugin"))


@pytest.fixture(scope="module")
def recipe(installed: Installed) -> Path:
    """A recipe naming the plugin's model, binarizer and dataset."""
    path = installed.site.parent / "stripes.yaml"
    path.write_text(RECIPE)
    return path


def test_pip_installed_the_distribution_with_its_entry_point(installed: Installed) -> None:
    (info,) = installed.site.glob("bnn_example_plugin-*.dist-info")
    entry_points = (info / "entry_points.txt").read_text()
    assert "[bnn_core.plugins]" in entry_points
    assert "bnn-example-plugin = bnn_example_plugin.plugin" in entry_points
    assert not (installed.site / "tests").exists()


def test_list_plugins_shows_the_plugin_and_what_it_registered(installed: Installed) -> None:
    result = installed.bnn("list-plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    plugin = next(p for p in listing["plugins"] if p["name"] == DISTRIBUTION)
    assert plugin["distribution"] == DISTRIBUTION
    assert plugin["version"] == "0.1.0"
    assert plugin["module"] == "bnn_example_plugin.plugin"
    assert plugin["status"] == "loaded" and plugin["error"] is None
    assert plugin["builtin"] is False
    assert plugin["registered"] == {
        "binarizer": ["example_swish_sign"],
        "model": ["example_tiny_cnn"],
        "dataset": ["example_stripes"],
        "lowering": ["example_swish_sign", "example_shifted_hardtanh"],
    }
    assert listing["conflicts"] == {}


def test_list_plugins_with_the_plugin_does_not_import_torch(installed: Installed) -> None:
    code = (
        "import sys; from bnn.cli import main; main(['list-plugins']); "
        "print('torch imported:', 'torch' in sys.modules)"
    )
    result = installed.run("-c", code)
    assert result.returncode == 0, result.stderr
    assert DISTRIBUTION in result.stdout
    assert result.stdout.rstrip().endswith("torch imported: False")


def test_disabled_plugin_is_listed_as_disabled(installed: Installed) -> None:
    result = installed.bnn("list-plugins", "--json", BNN_DISABLED_PLUGINS=DISTRIBUTION)
    assert result.returncode == 0, result.stderr
    plugin = next(p for p in json.loads(result.stdout)["plugins"] if p["name"] == DISTRIBUTION)
    assert plugin["status"] == "disabled"
    assert plugin["registered"] == {}


def test_recipe_naming_the_plugin_validates(installed: Installed, recipe: Path) -> None:
    result = installed.bnn("validate", str(recipe))
    assert result.returncode == 0, result.stderr
    assert "valid (model example_tiny_cnn, 2 of 4 layers binarized)" in result.stdout


def test_explain_binarizes_hidden_layers_with_the_plugin_binarizer(
    installed: Installed, recipe: Path
) -> None:
    result = installed.bnn("explain", "--json", str(recipe))
    assert result.returncode == 0, result.stderr
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["layers"]}
    assert list(layers) == ["conv1", "conv2", "conv3", "fc"]
    assert not layers["conv1"]["binarize"] and not layers["fc"]["binarize"]
    for name in ("conv2", "conv3"):
        assert layers[name]["binarize"]
        assert layers[name]["binarizers"] == {
            "activation_pre_process": "example_swish_sign",
            "weight_pre_process": "example_swish_sign(beta=10.0)",
            "activation_post_process": "identity",
        }


def test_plugin_own_tests_pass_against_the_installed_copy(installed: Installed) -> None:
    result = installed.run(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN_SOURCE / "tests")
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
