"""Tests of bnn-example-plugin, run against the installed distribution.

The binarizer goes through bnn's own contract checks (``bnn_core.testing``), looked up
by its registered name, which also proves that the entry point is installed.
"""

from __future__ import annotations

import subprocess
import sys

import bnn_core
import numpy as np
import pytest
import torch
from bnn_core.testing import CONTRACT_CHECKS, check_binarizer

from bnn_example_plugin.binarizers import SwishSign, swish_sign_derivative
from bnn_example_plugin.datasets import stripes
from bnn_example_plugin.models import tiny_cnn

PLUGIN = "bnn-example-plugin"


def test_plugin_is_discovered_through_its_entry_point() -> None:
    info = next(i for i in bnn_core.plugin_infos() if i.name == PLUGIN)
    assert info.status == "loaded", info.error
    assert info.distribution == PLUGIN
    assert info.registered == {
        "binarizer": ["example_swish_sign"],
        "model": ["example_tiny_cnn"],
        "dataset": ["example_stripes"],
        "lowering": ["example_swish_sign", "example_shifted_hardtanh"],
    }
    assert bnn_core.get_binarizer("Example-Swish-Sign") is SwishSign


def test_importing_the_hooks_does_not_import_torch() -> None:
    code = "import sys, bnn_example_plugin.plugin; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("check", CONTRACT_CHECKS.values(), ids=CONTRACT_CHECKS.keys())
def test_binarizer_contract(check) -> None:
    check("example_swish_sign")


def test_binarizer_contract_with_options() -> None:
    check_binarizer(SwishSign.with_args(beta=2.0))


def test_forward_is_sign_with_plus_one_at_zero() -> None:
    x = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 3.0])
    assert SwishSign()(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("beta", [1.0, 5.0, 10.0])
def test_surrogate_is_the_derivative_of_the_signswish_curve(beta: float) -> None:
    x = torch.linspace(-3, 3, 601, dtype=torch.float64, requires_grad=True)
    s = torch.sigmoid(beta * x)
    curve = 2 * s * (1 + beta * x * (1 - s)) - 1
    (derivative,) = torch.autograd.grad(curve.sum(), x)
    assert torch.allclose(swish_sign_derivative(x.detach(), beta), derivative)
    assert SwishSign(beta=beta).surrogate_grad(torch.zeros(1)).item() == pytest.approx(beta)


def test_binarizer_options_are_validated() -> None:
    with pytest.raises(bnn_core.ConfigError, match="no_such_option"):
        bnn_core.create_binarizer("example_swish_sign", no_such_option=1)
    with pytest.raises(bnn_core.ConfigError, match=r"parameter 'beta'.*greater than 0"):
        bnn_core.create_binarizer("example_swish_sign", beta=0.0)


def test_bconfig_by_name_binarizes_a_model() -> None:
    bconfig = bnn_core.BConfig(
        activation_pre_process="example_swish_sign",
        weight_pre_process={"name": "example_swish_sign", "beta": 2.0},
    )
    model = bnn_core.prepare_binary_model(
        bnn_core.create_model("example_tiny_cnn"),
        bconfig,
        custom_config_layers_name={"_first_": bnn_core.BConfig(), "_last_": bnn_core.BConfig()},
    )
    assert isinstance(model.conv2.activation_pre_process, SwishSign)
    assert model.conv2.weight_pre_process.beta == 2.0
    assert not isinstance(model.conv1, bnn_core.BinaryLayerMixin)
    assert model(torch.randn(3, 1, 16, 16)).shape == (3, 2)


def test_model_options_shape_the_network() -> None:
    model = bnn_core.create_model("example_tiny_cnn", num_classes=5, in_channels=3, width=4)
    assert model(torch.randn(2, 3, 12, 12)).shape == (2, 5)
    assert model.conv2.out_channels == 8
    with pytest.raises(bnn_core.ConfigError, match="width"):
        tiny_cnn(width=0)


def test_dataset_is_deterministic_and_split_dependent() -> None:
    train = bnn_core.create_dataset("example_stripes", length=64, seed=3)
    again = stripes(length=64, seed=3)
    test = stripes(split="test", length=64, seed=3)
    assert len(train) == 64
    image, label = train[0]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32
    assert label in (0, 1)
    assert torch.equal(train.images, again.images) and torch.equal(train.targets, again.targets)
    assert not torch.equal(train.images, test.images)
    assert 0 < int(train.targets.sum()) < 64


def test_dataset_labels_match_the_stripe_direction() -> None:
    data = stripes(length=200, noise=0.0)
    images = data.images[:, 0]
    rows_constant = (images == images[:, :, :1]).all(dim=(1, 2))
    columns_constant = (images == images[:, :1, :]).all(dim=(1, 2))
    assert torch.equal(rows_constant, data.targets == 0)
    assert torch.equal(columns_constant, data.targets == 1)
    assert set(images.unique().tolist()) == {-1.0, 1.0}


def test_unknown_dataset_split_is_rejected() -> None:
    with pytest.raises(bnn_core.ConfigError, match="split"):
        bnn_core.create_dataset("example_stripes", split="validation")


def test_trained_model_exports_and_the_runtime_agrees_with_torch(tmp_path) -> None:
    """Train a few steps, export through the plugin's lowerings, run the file in bnn's
    packed runtime: the logits agree with PyTorch's within 1e-4 x (1 + the largest
    logit) and the predicted classes are the same."""
    from bnn.deploy import export
    from bnn_runtime import load

    torch.manual_seed(0)
    model = bnn_core.prepare_binary_model(
        bnn_core.create_model("example_tiny_cnn", width=8),
        bnn_core.BConfig(
            activation_pre_process="example_swish_sign", weight_pre_process="example_swish_sign"
        ),
        custom_config_layers_name={"_first_": bnn_core.BConfig(), "_last_": bnn_core.BConfig()},
    )
    data = stripes(length=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(4):
        images, labels = data.images[step * 16 : (step + 1) * 16], data.targets[step * 16 :][:16]
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.act2.shift.abs().sum() > 0  # the block's own parameters were trained
    result = export(model, tmp_path / "tiny.bnnpack", (1, 16, 16))
    ops = [node.op for node in result.graph.nodes]
    assert ops.count("binary_conv2d") == 2 and "channel_affine" in ops
    test = stripes(split="test", length=32)
    model.eval()
    with torch.no_grad():
        expected = model(test.images).numpy()
    got = load(tmp_path / "tiny.bnnpack")(test.images.numpy())
    assert np.abs(got - expected).max() <= 1e-4 * (1 + np.abs(expected).max())
    assert (got.argmax(1) == expected.argmax(1)).all()
