"""The Lightning module, data module and checkpoint callback on a few batches of the
embedded Fashion-MNIST: two stages, distillation from a teacher, and a checkpoint that
bnn rebuilds into the same model."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from bnn.deploy.source import from_checkpoint
from bnn.recipe import Recipe
from bnn_core.config import load_yaml, validate_model
from bnn_core.errors import BnnError, ConfigError
from lightning.pytorch.callbacks import ModelCheckpoint

from bnn_lightning import BinaryRecipeModule, BnnCheckpoint, RecipeDataModule

RECIPE = """\
version: 1
name: two_stages
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
  teacher: {name: lenet5, width: 8, hidden: 32}
  alpha: 0.5
training:
  epochs: 1
  optimizers: {name: adam, lr: 0.003}
stages:
  - name: binary_activations
    binarize:
      bconfig: {activation_pre_process: ste_sign, weight_pre_process: identity}
  - name: binary_weights
    training: {optimizers: {name: adam, lr: 0.001}, schedule: {name: constant}}
"""


def trainer(**options: object) -> L.Trainer:
    """A quiet CPU trainer that takes three batches per epoch."""
    settings = dict(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_train_batches=3,
        limit_val_batches=2,
    )
    return L.Trainer(**{**settings, **options})


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "two_stages.yaml"
    path.write_text(RECIPE)
    return path


@pytest.fixture(scope="module")
def fitted(recipe_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """One fit through both stages, with bnn checkpoints written to a folder."""
    folder = tmp_path_factory.mktemp("run")
    module = BinaryRecipeModule(recipe_path)
    data = RecipeDataModule(recipe_path, limit=256, eval_limit=64)
    fit = trainer(max_epochs=module.total_epochs, callbacks=[BnnCheckpoint(folder)])
    fit.fit(module, data)
    return module, fit, folder


def test_stages_rebinarize_and_change_the_optimizer(fitted) -> None:
    module, fit, _ = fitted
    assert module.total_epochs == 2 and module.stage.name == "binary_weights"
    conv2 = module.model.conv2
    assert type(conv2.weight_pre_process).__name__ == "XNORWeightBinarizer"
    (optimizer,) = fit.optimizers
    assert {group["lr"] for group in optimizer.param_groups} == {0.001}
    assert module.teacher is not None and not any(
        p.requires_grad for p in module.teacher.parameters()
    )
    assert "teacher" not in dict(module.named_children())


def test_loss_and_accuracy_are_logged(fitted) -> None:
    _, fit, _ = fitted
    metrics = fit.callback_metrics
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert key in metrics
    assert 0.0 <= float(metrics["val_acc"]) <= 1.0 and float(metrics["train_loss"]) > 0


def test_bnn_rebuilds_the_checkpointed_model(fitted) -> None:
    module, _, folder = fitted
    assert (folder / "last.pt").is_file() and (folder / "previous.pt").is_file()
    source = from_checkpoint(folder / "last.pt")
    assert "stage binary_weights, epoch 1" in source.description
    images = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    module.eval()
    with torch.no_grad():
        assert torch.equal(source.model(images), module(images))


def test_a_lightning_checkpoint_resumes_in_its_stage(recipe_path: Path, tmp_path: Path) -> None:
    data = RecipeDataModule(recipe_path, limit=256, eval_limit=32)
    first = BinaryRecipeModule(recipe_path)
    saver = ModelCheckpoint(tmp_path, "stopped", every_n_train_steps=4, save_top_k=-1)
    stopped = trainer(max_epochs=2, max_steps=4, callbacks=[saver], enable_checkpointing=True)
    stopped.fit(first, data)  # three steps of the first stage, one of the second
    resumed = BinaryRecipeModule(recipe_path)
    assert resumed.stage_index == 0
    fit = trainer(max_epochs=2, max_steps=6)
    fit.fit(resumed, data, ckpt_path=tmp_path / "stopped.ckpt")
    assert resumed.stage.name == "binary_weights" and fit.global_step == 6
    (optimizer,) = fit.optimizers
    assert all(state["step"] == 3 for state in optimizer.state.values())  # 1 saved + 2 more
    with pytest.raises(BnnError, match="records stage 5, and the recipe has 2"):
        resumed.on_load_checkpoint({"bnn_stage": 5})


def test_trainer_must_run_the_recipe_epochs(recipe_path: Path) -> None:
    module = BinaryRecipeModule(recipe_path)
    with pytest.raises(ConfigError, match="stages train 2 epoch"):
        trainer(max_steps=2).fit(module, RecipeDataModule(recipe_path, limit=64, eval_limit=32))


def test_training_keys_lightning_handles_are_refused(recipe_path: Path) -> None:
    data = load_yaml(recipe_path)
    data["training"]["ema"] = {"decay": 0.9}
    recipe = validate_model(Recipe, data, "recipe")
    with pytest.raises(ConfigError, match=r"training\.ema is what `bnn train` does"):
        BinaryRecipeModule(recipe)
