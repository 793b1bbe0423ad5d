"""torch.compile and torch.export on binarized models: the compiled training step computes
what eager mode computes (custom autograd surrogates included), an exported inference
graph gives eager's outputs, and ``training.compile`` trains, checkpoints and resumes
with the keys and results of an uncompiled run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn import BConfig, prepare_binary_model
from bnn.cli import main
from bnn.recipe.sections import CompileSpec, TrainingSpec
from bnn.training import checkpoint
from bnn_core.config import validate_model
from bnn_core.errors import ConfigError
from bnn_models.small import lenet5


def mixed_binary_lenet() -> nn.Module:
    """A small LeNet whose four layers use different binarizers: surrogate-gradient signs
    (custom autograd functions), a learned threshold, a stochastic sign, scaled and
    standardised weights and learned output scales. Its pooling averages: a binary
    convolution's outputs tie often, and under max pooling the last-bit rounding
    differences between eager and inductor kernels decide which of the tied inputs
    receives the gradient (both are valid subgradients)."""
    torch.manual_seed(0)
    model = lenet5(width=4, hidden=16)
    model.pool = nn.AvgPool2d(2)
    layers = {
        "conv1": BConfig(activation_pre_process="ste_sign", weight_pre_process="xnor_weight"),
        "conv2": BConfig(
            activation_pre_process={"name": "input_bias", "surrogate": "approx_sign"},
            weight_pre_process="magnitude_aware_sign",
            activation_post_process="basic_scale",
        ),
        "fc1": BConfig(activation_pre_process="swish_sign", weight_pre_process="recu_weight"),
        "fc2": BConfig(activation_pre_process="stochastic_input", weight_pre_process="fda_weight"),
    }
    return prepare_binary_model(model, BConfig(), custom_config_layers_name=layers)


def loss_and_grads(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, seed: int):
    """The loss of one training batch and the gradient of every parameter."""
    torch.manual_seed(seed)
    loss = F.cross_entropy(model(inputs), targets)
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters()]


def test_binarized_model_compiles_with_inductor_and_matches_eager():
    eager = mixed_binary_lenet().train()
    twin = copy.deepcopy(eager)
    inputs, targets = torch.randn(16, 1, 28, 28), torch.randint(10, (16,))
    expected, expected_grads = loss_and_grads(eager, inputs, targets, seed=3)
    torch.compiler.reset()
    # inductor draws random numbers as eager does, so the stochastic sign agrees too
    with torch._inductor.config.patch(fallback_random=True):
        compiled = torch.compile(twin, fullgraph=True)
        got, grads = loss_and_grads(compiled, inputs, targets, seed=3)
    torch.testing.assert_close(got, expected)
    assert all(g is not None for g in expected_grads)
    names = dict(eager.named_parameters())
    for name, mine, theirs in zip(names, grads, expected_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5, msg=name)
    assert any(float(g.abs().sum()) > 0 for g in grads)  # the surrogates pass gradient


def test_export_traces_a_binarized_model_for_inference():
    model = mixed_binary_lenet().eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        model, (torch.randn(4, 1, 28, 28),), dynamic_shapes={"x": {0: batch}}
    )
    assert program.state_dict.keys() <= model.state_dict().keys()
    exported = program.module()
    for size in (1, 7):
        inputs = torch.randn(size, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(exported(inputs), model(inputs), rtol=0, atol=0)


def test_compile_setting_forms():
    assert TrainingSpec().compile is None
    assert TrainingSpec(compile=False).compile is None
    assert TrainingSpec(compile=True).compile == CompileSpec()
    spec = TrainingSpec(compile={"backend": "aot_eager", "mode": "max-autotune"}).compile
    assert (spec.backend, spec.mode, spec.fullgraph) == ("aot_eager", "max-autotune", False)
    with pytest.raises(ConfigError, match=r"'indcutor' is not a torch.compile backend.*'inductor'"):
        validate_model(TrainingSpec, {"compile": {"backend": "indcutor"}}, "recipe.yaml")
    with pytest.raises(ConfigError, match="compile: must be true, false or a mapping"):
        validate_model(TrainingSpec, {"compile": "yes"}, "recipe.yaml")


# Two stages: the first trains float weights under binary activations, the second
# binarizes the weights too. A multi-layer perceptron has no max pooling, whose ties
# would let compiled and eager runs drift apart (see mixed_binary_lenet).
RECIPE = """\
version: 1
name: compiled
seed: 0
model: {name: binarynet_mlp, hidden: [32, 32]}
binarize: default
data:
  dataset: {name: synthetic, learnable: true, length: 96}
  batch_size: 16
training:
  epochs: 1
  optimizers: {name: adam, lr: 0.01}
  ema: {decay: 0.9}
stages:
  - name: float_weights
    binarize: {bconfig: {activation_pre_process: ste_sign, weight_pre_process: identity}}
  - name: binary_weights
logging: {plot: false, progress_bar: false}
"""


def train(*argv: str) -> None:
    assert main(["train", "recipe.yaml", "--quiet", "--device", "cpu", *argv]) == 0


def test_bnn_train_with_compile_follows_the_stages_checkpoints_and_resumes(tmp_path, monkeypatch):
    """Run with a stale graph of the first stage, the second stage would train its
    weights as floats and end far from the eager run."""
    monkeypatch.chdir(tmp_path)
    Path("recipe.yaml").write_text(RECIPE)
    train("--set", "output.dir=eager")
    train("--set", "output.dir=compiled", "--set", "training.compile=true")
    eager, compiled = (checkpoint.load(Path(f, "last.pt")) for f in ("eager", "compiled"))
    assert list(compiled["model"]) == list(eager["model"])  # no "_orig_mod." prefix
    assert list(compiled["ema"]) == list(eager["ema"])
    assert [r["stage"] for r in compiled["history"]] == ["float_weights", "binary_weights"]
    assert compiled["global_step"] == eager["global_step"] == 6
    for key, value in eager["model"].items():
        torch.testing.assert_close(compiled["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)

    # resumed from the end of the first stage, the compiled run ends where it ended
    train(
        "--set",
        "output.dir=resumed",
        "--set",
        "training.compile=true",
        "--resume",
        "compiled/previous.pt",
    )
    resumed = checkpoint.load(Path("resumed", "last.pt"))
    for key, value in compiled["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=0, atol=0, msg=key)
    assert resumed["history"] == compiled["history"]
