"""The timm plugin installed for real: pip builds and installs ``plugins/bnn-timm`` into a
throwaway directory (offline, without dependencies: timm is already in the environment),
and the ``bnn`` command, run with that directory on ``PYTHONPATH``, lists timm's models,
trains one on the embedded Fashion-MNIST, and the plugin's own tests pass.
"""

from __future__ import annotations

import json

import pytest

from tests.plugin_install import PLUGINS, Installed, install_plugin

timm = pytest.importorskip("timm")

PLUGIN_SOURCE = PLUGINS / "bnn-timm"
DISTRIBUTION = "bnn-timm"
#: A one-block vision transformer on the four 14x14 patches of the 28x28 grey images: one
#: epoch of the embedded subset (12 steps) takes a few seconds.
RECIPE = """\
version: 1
name: timm_fashion
model: {{name: timm/test_vit, num_classes: 10, in_chans: 1, img_size: 28, patch_size: 14, depth: 1}}
binarize: default
data: {{dataset: fashion_mnist, batch_size: 1000}}
training:
  epochs: 1
  optimizers: {{name: adam, lr: 0.003}}
output: {{dir: {run}}}
logging: {{plot: false, progress_bar: false}}
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The plugin, built and installed once."""
    return install_plugin("bnn-timm", tmp_path_factory.mktemp("timm_plugin"))


def test_list_plugins_shows_every_timm_model_without_importing_torch_or_timm(
    installed: Installed,
) -> None:
    code = (
        "import json, sys; from bnn.cli import main; main(['list-plugins', '--json']); "
        "print(json.dumps(['torch' in sys.modules, 'timm' in sys.modules]))"
    )
    result = installed.run("-c", code)
    assert result.returncode == 0, result.stderr
    listing, imported = result.stdout.rstrip().rsplit("\n", 1)
    assert json.loads(imported) == [False, False]
    plugin = next(p for p in json.loads(listing)["plugins"] if p["name"] == DISTRIBUTION)
    assert plugin["status"] == "loaded" and plugin["distribution"] == DISTRIBUTION
    assert plugin["registered"]["model"] == [f"timm/{n}" for n in sorted(timm.list_models())]


def test_list_models_shows_the_timm_names(installed: Installed) -> None:
    result = installed.bnn("list", "models", "timm/test_*", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == [f"timm/{n}" for n in sorted(timm.list_models("test_*"))]
    resnet = next(r for r in rows if r["name"] == "timm/test_resnet")
    assert resnet["options"] == {"num_classes": 1000, "in_chans": 3}
    assert resnet["provider"] == DISTRIBUTION


def test_bnn_train_binarizes_and_trains_a_timm_model_on_the_embedded_data(
    installed: Installed,
) -> None:
    run = installed.site.parent / "run"
    recipe = installed.site.parent / "timm_fashion.yaml"
    recipe.write_text(RECIPE.format(run=run))
    result = installed.bnn("train", "--quiet", str(recipe))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    (epoch,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epoch["epoch"] == 1
    assert epoch["eval_acc"] > 0.3  # chance is 0.1: the binarized transformer learns
    saved = (run / "config.yaml").read_text()
    assert "timm/test_vit" in saved and "in_chans: 1" in saved


def test_plugin_own_tests_pass_against_the_installed_copy(installed: Installed) -> None:
    result = installed.run(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN_SOURCE / "tests")
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
