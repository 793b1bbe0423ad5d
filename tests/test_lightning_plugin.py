"""The Lightning integration installed for real: pip builds and installs
``plugins/bnn-lightning`` into a throwaway directory (offline, the project's virtual
environment untouched), a Lightning trainer fits a recipe of two stages with
distillation on a few batches of the embedded Fashion-MNIST, and ``bnn export`` turns the
checkpoint it wrote into a packed model whose outputs are the module's.

Skipped where Lightning is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.packing import assert_agree
from tests.plugin_install import Installed, install_plugin

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lightning") is None, reason="Lightning is not installed"
)


# recipes/default.yaml's model, binarization and data, made small, in two stages (binary
# activations first, then binary weights too) with a float teacher
RECIPE = """\
version: 1
name: lightning_two_stages
seed: 0
model: {name: lenet5, width: 8, hidden: 32}
binarize:
  bconfig:
    activation_pre_process: ste_sign
    weight_pre_process: {name: xnor_weight, compute_alpha: true}
    activation_post_process: basic_scale
data:
  dataset: fashion_mnist
  batch_size: 32
distillation:
  teacher: {name: lenet5, width: 16, hidden: 32}
  alpha: 0.5
  temperature: 2.0
training:
  epochs: 1
  optimizers: {name: adam, lr: 0.003}
  schedule: {name: cosine, warmup_epochs: 0.5}
stages:
  - name: binary_activations
    binarize:
      bconfig: {activation_pre_process: ste_sign, weight_pre_process: identity}
  - name: binary_weights
    training: {optimizers: {name: adam, lr: 0.001}}
"""

FIT = """\
import json, sys
from pathlib import Path

import lightning as L
import numpy as np
import torch

import bnn_lightning
from bnn_datasets.idx import fashion_mnist
from bnn_lightning import BinaryRecipeModule, BnnCheckpoint, RecipeDataModule

folder = Path(sys.argv[1])
recipe = folder / "recipe.yaml"
module = BinaryRecipeModule(recipe)
trainer = L.Trainer(
    accelerator="cpu", max_epochs=module.total_epochs, max_steps=6, limit_train_batches=3,
    limit_val_batches=2, logger=False, enable_progress_bar=False, enable_checkpointing=False,
    enable_model_summary=False, callbacks=[BnnCheckpoint(folder / "run")],
)
trainer.fit(module, RecipeDataModule(recipe, limit=512, eval_limit=64))
test = fashion_mnist(split="test")
images = test.transform(test.images[:200])
module.eval()
with torch.no_grad():
    np.save(folder / "logits.npy", module(images).numpy())
np.save(folder / "images.npy", images.numpy())
print(json.dumps({
    "package": bnn_lightning.__file__,
    "stage": module.stage.name,
    "global_step": trainer.global_step,
    "metrics": {key: float(value) for key, value in trainer.callback_metrics.items()},
}))
"""


@dataclass
class Fitted:
    """The installed plugin and what its fit reported."""

    installed: Installed
    report: dict

    @property
    def folder(self) -> Path:
        """The folder holding the recipe, the site, the run and the fit's outputs."""
        return self.installed.site.parent

    def bnn(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run the ``bnn`` command."""
        return self.installed.bnn(*argv)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    """Install the plugin, then fit once."""
    root = tmp_path_factory.mktemp("lightning_plugin")
    installed = install_plugin("bnn-lightning", root)
    (root / "recipe.yaml").write_text(RECIPE)
    fit = installed.run("-c", FIT, str(root))
    assert fit.returncode == 0, fit.stdout[-3000:] + fit.stderr[-3000:]
    return Fitted(installed, json.loads(fit.stdout.strip().splitlines()[-1]))


def test_the_installed_copy_trained_both_stages(fitted: Fitted) -> None:
    report = fitted.report
    assert Path(report["package"]).is_relative_to(fitted.folder / "site")
    assert report["stage"] == "binary_weights" and report["global_step"] == 6
    metrics = report["metrics"]
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(metrics)
    assert metrics["train_loss"] > 0 and 0 <= metrics["val_acc"] <= 1


def test_bnn_export_runs_the_checkpoint_as_the_module_computed_it(fitted: Fitted) -> None:
    from bnn_runtime.executor import load

    checkpoint = fitted.folder / "run" / "last.pt"
    packed = fitted.folder / "model.bnnpack"
    result = fitted.bnn("export", str(checkpoint), "-o", str(packed), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["source"].endswith("(stage binary_weights, epoch 1)")
    assert report["binary_layers"] == 2
    expected = np.load(fitted.folder / "logits.npy")
    got = load(packed)(np.load(fitted.folder / "images.npy"))
    assert_agree(expected, got)


def test_bnn_eval_reads_the_checkpoint(fitted: Fitted) -> None:
    result = fitted.bnn("eval", str(fitted.folder / "run" / "last.pt"), "--json")
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert evaluation["stage"] == "binary_weights" and evaluation["samples"] == 2000
