"""Shortcut additions and PReLU / RPReLU folded into the binary convolution before them:
the fused layer equals the separate float32 steps bit for bit on every kernel path, a
network runs the same with and without fusion, and chains that must not be fused are
left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bnn import BConfig, prepare_binary_model
from bnn.deploy import export
from bnn_core.registries import create_model
from bnn_runtime import executor, fusion, kernels, reference
from bnn_runtime.executor import load
from tests.packing import assert_agree, randomise


@pytest.mark.parametrize(
    ("activation_kind", "with_residual"),
    [("none", True), ("prelu", False), ("prelu", True), ("rprelu", False), ("rprelu", True)],
)
def test_fused_epilogue_equals_the_separate_steps(isa, activation_kind, with_residual):
    rng = np.random.default_rng(0)
    c, o = 70, 77  # partial words and partial 8-channel blocks
    w = kernels.pack_weights(rng.standard_normal((o, c, 3, 3)))
    x = rng.standard_normal((2, 9, 8, c)).astype(np.float32)
    common = {
        "in_channels": c,
        "stride": 2,
        "padding": 1,
        "scale": rng.uniform(0.01, 0.1, o).astype(np.float32),
        "bias": rng.standard_normal(o).astype(np.float32),
        "threads": 2,
    }
    activation = {}
    if activation_kind != "none":
        activation["slope"] = rng.uniform(-1.5, 1.5, o).astype(np.float32)
    if activation_kind == "rprelu":
        activation["shift_in"] = rng.standard_normal(o).astype(np.float32)
        activation["shift_out"] = rng.standard_normal(o).astype(np.float32)
    common["bias"][: o // 3] = 0.0  # a zero dot product then gives +0.0, PReLU -0.0
    plain = kernels.BinaryConv2d(w, **common)(x)
    residual = rng.standard_normal(plain.shape).astype(np.float32) if with_residual else None
    expected = reference.finish(plain, residual, *(
        activation.get(role) for role in ("slope", "shift_in", "shift_out")
    ))  # fmt: skip
    got = kernels.BinaryConv2d(w, **common, **activation)(x, residual)
    # bit for bit: the sign of every zero too
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    assert (got > 0).any() and (got < 0).any()


def test_fused_epilogue_argument_errors():
    rng = np.random.default_rng(1)
    w = kernels.pack_weights(rng.standard_normal((8, 16, 3, 3)))
    slope = np.full(8, 0.25, np.float32)
    with pytest.raises(ValueError, match="float output only"):
        kernels.BinaryConv2d(w, in_channels=16, output="packed", slope=slope)
    with pytest.raises(ValueError, match="need a slope"):
        kernels.BinaryConv2d(w, in_channels=16, shift_in=slope)
    with pytest.raises(ValueError, match="slope must have 8 values"):
        kernels.BinaryConv2d(w, in_channels=16, slope=slope[:3])
    layer = kernels.BinaryConv2d(w, in_channels=16, padding=1)
    x = rng.standard_normal((1, 5, 5, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=r"residual must be \[N, Ho, Wo, O\]"):
        layer(x, np.zeros((1, 5, 5, 7), np.float32))
    packed = kernels.BinaryConv2d(w, in_channels=16, output="packed")
    with pytest.raises(ValueError, match="float output only"):
        packed(x, np.zeros((1, 3, 3, 8), np.float32))


def unfused(monkeypatch: pytest.MonkeyPatch, path) -> np.ndarray:
    with monkeypatch.context() as patch:
        patch.setattr(fusion, "epilogues", lambda graph, packed: {})
        network = load(path)
    assert network.fused_into() == {}
    return network


@pytest.mark.parametrize(
    ("name", "options", "shape", "fused"),
    [
        ("resnet8_bireal", {"width": 16}, (1, 28, 28), 12),
        ("resnet8_bireal", {"width": 16, "rprelu": True}, (1, 28, 28), 12),
        ("resnet18_reactnet", {}, (3, 32, 32), 32),
    ],
    ids=["bireal-prelu", "bireal-rprelu", "reactnet"],
)
def test_networks_run_the_same_with_and_without_fusion(
    name, options, shape, fused, tmp_path, monkeypatch
):
    torch.manual_seed(0)
    model = randomise(create_model(name, binarize=True, **options))
    path = tmp_path / "m.bnnpack"
    export(model, path, shape)
    network = load(path)
    assert len(network.fused_into()) == fused
    x = np.random.default_rng(2).standard_normal((2, *shape)).astype(np.float32)
    np.testing.assert_array_equal(network(x), unfused(monkeypatch, path)(x))
    with torch.no_grad():
        assert_agree(model(torch.from_numpy(x)).numpy(), network(x))
    timings = {t.name for t in network.run(x, profile=True)[1]}
    assert timings == {n.name for n in network.nodes} - set(network.fused_into())


class LateShortcut(nn.Module):
    """A block whose shortcut is computed after the binary convolution, and a second
    one whose convolution output is also read by another node: neither is fused."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.short = nn.Conv2d(8, 8, 1, bias=False)
        self.act1 = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.act2 = nn.PReLU(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x) + self.short(x))
        z = self.conv2(y)
        return self.act2(z + y) + z


def test_chains_that_cannot_be_fused_are_left_alone(tmp_path):
    model = prepare_binary_model(
        LateShortcut(), BConfig(activation_pre_process="ste_sign", weight_pre_process="ste_sign"),
        ignore_layers_name=["short"],
    )  # fmt: skip
    model = randomise(model).eval()
    path = tmp_path / "late.bnnpack"
    export(model, path, (8, 6, 6))
    network = load(path)
    assert network.fused_into() == {}
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert_agree(model(x).numpy(), network(x.numpy()))


def test_residual_that_only_broadcasts_is_added_separately():
    rng = np.random.default_rng(3)
    words = kernels.pack_weights(rng.standard_normal((16, 8, 3, 3)))
    conv = {"in_channels": 8, "padding": 1, "scale": np.full(16, 0.1, np.float32)}
    slope = np.linspace(-1, 1, 16, dtype=np.float32)
    step = executor._fused(words, conv, {"slope": slope}, residual=True)
    x = rng.standard_normal((2, 5, 5, 8)).astype(np.float32)
    shortcut = rng.standard_normal((2, 1, 1, 16)).astype(np.float32)
    expected = reference.finish(kernels.BinaryConv2d(words, **conv)(x) + shortcut, None, slope,
                                None, None)  # fmt: skip
    np.testing.assert_array_equal(step([x, shortcut], False), expected)
