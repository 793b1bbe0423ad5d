"""Building blocks: forward values worked out by hand, gradients, shapes, parameter counts,
option validation and their registration through the built-in models plugin."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from bnn.cli import main
from bnn_core import ConfigError
from bnn_core.registries import create_block, get_block, is_block, list_blocks
from bnn_models.blocks import HardTanh, LeakyHardTanh, LearnableBias, RPReLU

SHAPES = [(2, 3), (2, 3, 4), (2, 3, 4, 5), (2, 3, 2, 3, 4)]


def test_learnable_bias_adds_one_value_per_channel():
    block = LearnableBias(3)
    assert torch.equal(block.bias, torch.zeros(3))
    with torch.no_grad():
        block.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert torch.equal(block(x), torch.tensor([[1.0, -2.0, 0.5], [2.0, -1.0, 1.5]]))
    image = torch.zeros(1, 3, 2, 2)
    out = block(image)
    assert torch.equal(out[0, 1], torch.full((2, 2), -2.0))
    assert torch.equal(out[0, 2], torch.full((2, 2), 0.5))


def test_rprelu_values_by_hand():
    block = RPReLU(2)
    with torch.no_grad():
        block.shift_in.copy_(torch.tensor([-1.0, 0.5]))
        block.slope.copy_(torch.tensor([0.1, 0.5]))
        block.shift_out.copy_(torch.tensor([2.0, -1.0]))
    x = torch.tensor([[3.0, 1.0], [0.0, -3.0]])
    # channel 0: x - 1 -> 2 (kept) / -1 (times 0.1) ; then + 2
    # channel 1: x + 0.5 -> 1.5 (kept) / -2.5 (times 0.5) ; then - 1
    expected = torch.tensor([[2.0 + 2.0, 1.5 - 1.0], [-0.1 + 2.0, -1.25 - 1.0]])
    assert torch.allclose(block(x), expected)


def test_rprelu_starts_as_prelu_with_the_given_slope():
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(RPReLU(3)(x), torch.nn.PReLU(3)(x))
    assert torch.equal(RPReLU(3, init=0.0)(x), torch.relu(x))


def test_rprelu_gradients_per_channel():
    block = RPReLU(2, init=0.5)
    x = torch.tensor([[1.0, -2.0], [-1.0, 3.0]], requires_grad=True)
    block(x).sum().backward()
    assert torch.equal(x.grad, torch.tensor([[1.0, 0.5], [0.5, 1.0]]))
    assert torch.equal(block.slope.grad, torch.tensor([-1.0, -2.0]))  # sum of negative inputs
    assert torch.equal(block.shift_out.grad, torch.tensor([2.0, 2.0]))
    assert torch.equal(block.shift_in.grad, torch.tensor([1.5, 1.5]))


@pytest.mark.parametrize("shape", SHAPES, ids=[f"{len(s)}d" for s in SHAPES])
@pytest.mark.parametrize("build", [lambda: LearnableBias(3), lambda: RPReLU(3)], ids=["bias", "rp"])
def test_per_channel_blocks_keep_the_shape(build, shape):
    x = torch.randn(shape)
    assert build()(x).shape == x.shape


@pytest.mark.parametrize("block", [LearnableBias(3), RPReLU(3)], ids=["bias", "rprelu"])
def test_per_channel_blocks_reject_a_wrong_channel_count(block):
    with pytest.raises(ValueError, match="expected 3 channels on dimension 1"):
        block(torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        block(torch.zeros(3))


def test_parameter_counts():
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(LearnableBias(16)) == 16
    assert count(RPReLU(16)) == 3 * 16
    assert [n for n, _ in RPReLU(4).named_parameters()] == ["shift_in", "slope", "shift_out"]
    assert count(HardTanh()) == 0
    assert count(LeakyHardTanh()) == 0


def test_hardtanh_clamps_to_unit_range():
    x = torch.tensor([-3.0, -1.0, -0.25, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    y = HardTanh()(x)
    assert torch.equal(y, torch.tensor([-1.0, -1.0, -0.25, 0.0, 0.5, 1.0, 1.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]))


def test_leaky_hardtanh_values_and_slopes():
    x = torch.tensor([-3.0, -1.0, 0.5, 1.0, 2.0, 11.0], requires_grad=True)
    y = LeakyHardTanh(slope=0.1)(x)
    expected = torch.tensor([-1.0 - 0.2, -1.0, 0.5, 1.0, 1.0 + 0.1, 1.0 + 1.0])
    assert torch.allclose(y, expected)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.1, 1.0, 1.0, 1.0, 0.1, 0.1]))


def test_leaky_hardtanh_defaults_to_larq_slope_and_reduces_to_hardtanh():
    assert LeakyHardTanh().slope == 0.2
    x = torch.linspace(-4, 4, 33)
    assert torch.allclose(LeakyHardTanh()(torch.tensor([3.0])), torch.tensor([1.4]))
    assert torch.equal(LeakyHardTanh(slope=0.0)(x), HardTanh()(x))
    assert torch.allclose(LeakyHardTanh(slope=1.0)(x), x)


REGISTERED = {
    "rprelu": RPReLU,
    "learnable_bias": LearnableBias,
    "hardtanh": HardTanh,
    "leaky_hardtanh": LeakyHardTanh,
}


def test_blocks_are_registered_by_the_models_plugin():
    assert set(REGISTERED) <= set(list_blocks())
    assert list_blocks("*hardtanh") == ["hardtanh", "leaky_hardtanh"]
    for name, cls in REGISTERED.items():
        assert get_block(name) is cls
    assert get_block("RPReLU") is RPReLU
    assert get_block("LearnableBias") is LearnableBias
    assert get_block("leaky-tanh") is LeakyHardTanh
    assert get_block("hard_tanh") is HardTanh
    assert is_block("learnable-bias")


def test_create_block_validates_options():
    block = create_block("rprelu", channels=8, init=0.1)
    assert isinstance(block, RPReLU) and torch.allclose(block.slope, torch.full((8,), 0.1))
    assert create_block("leaky_hardtanh", slope=0.05).slope == 0.05
    with pytest.raises(ConfigError, match="channels"):
        create_block("learnable_bias", channels=0)
    with pytest.raises(ConfigError, match="slope"):
        create_block("leaky_hardtanh", slope=1.5)
    with pytest.raises(ConfigError, match="unknown parameter 'alpha'"):
        create_block("leaky_hardtanh", alpha=0.1)


def test_bnn_list_blocks_shows_them(capsys):
    assert main(["list", "blocks", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(REGISTERED) <= set(rows)
    assert rows["rprelu"]["options"] == {"channels": "<required>", "init": 0.25}
    assert rows["leaky_hardtanh"]["options"] == {"slope": 0.2}
    assert rows["hardtanh"]["provider"] == "bnn_models"
    assert main(["list", "blocks"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in REGISTERED)


def test_importing_the_plugin_does_not_import_torch():
    code = "import sys, bnn_models.plugin; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"
