"""OpenVINO's BinaryConvolution as built for benchmarks/binary_conv.py computes exactly what
the packed runtime's binary convolution and torch's convolution of the signs compute, so
timing it against the kernel compares equal work."""

from __future__ import annotations

import importlib
import platform
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnn_runtime import kernels

pytest.importorskip("openvino")

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/ on ``sys.path`` (the scripts import their neighbours by name); returns
    the OpenVINO model module."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("openvino_binary")


def sign(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t >= 0, 1.0, -1.0)


def test_u1_weights_are_read_least_significant_bit_first(benchmarks: ModuleType) -> None:
    # One output channel, 8 input channels, 1x1 kernel: the weight is +1 on channel 3
    # only, so the input that is +1 on channel 3 only agrees on all 8 taps.
    w = -np.ones((1, 8, 1, 1), np.float32)
    w[0, 3] = 1.0
    model = benchmarks.binary_conv_model(w, np.ones(1), np.zeros(1), size=1, padding=0)
    compiled = benchmarks.compile_cpu(model, threads=1)
    dots = []
    for channel in range(8):
        x = -np.ones((1, 8, 1, 1), np.float32)
        x[0, channel] = 1.0
        dots.append(compiled(x)[0].item())
    assert dots == [4.0, 4.0, 4.0, 8.0, 4.0, 4.0, 4.0, 4.0]


def test_openvino_equals_kernel_and_torch(benchmarks: ModuleType) -> None:
    channels, size = 96, 6  # 96 is not a multiple of 64: a partial word in the kernel
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, size, size, generator=gen)
    x[0, :4, 0, 0] = torch.tensor([0.0, -0.0, -1e-42, 1e-42])  # signs at the boundary
    w = torch.randn(channels, channels, 3, 3, generator=gen)
    w[:2, 0, 0, 0] = torch.tensor([0.0, -0.0])
    scale = torch.rand(channels, generator=gen) + 0.5
    bias = torch.randn(channels, generator=gen)
    expected = F.conv2d(sign(x), sign(w), padding=1) * scale[:, None, None] + bias[:, None, None]

    layer = kernels.BinaryConv2d(
        kernels.pack_weights(w.numpy()), in_channels=channels, kernel_size=3, padding=1,
        threads=2, scale=scale.numpy(), bias=bias.numpy(),
    )  # fmt: skip
    ours = layer(np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy()))
    model = benchmarks.binary_conv_model(w.numpy(), scale.numpy(), bias.numpy(), size)
    compiled = benchmarks.compile_cpu(model, threads=2)
    theirs = compiled(x.numpy())[0]

    np.testing.assert_array_equal(theirs, expected.numpy())
    np.testing.assert_array_equal(theirs, ours.transpose(0, 3, 1, 2))
    primitive = benchmarks.binary_primitive(compiled)
    if platform.machine() in ("x86_64", "AMD64"):
        assert primitive.startswith("jit_"), primitive  # the plugin's binary kernel


def test_a_differing_peer_is_reported_and_not_timed(benchmarks: ModuleType) -> None:
    binary_conv = importlib.import_module("binary_conv")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 8, 4, 4, generator=gen)
    w = torch.randn(8, 8, 3, 3, generator=gen)
    scale, bias = torch.ones(8), torch.zeros(8)
    expected = F.conv2d(sign(x), sign(w), padding=1).numpy()
    expected[0, 0, 0, 0] += 2.0

    call, reason = binary_conv.openvino_peer("8x4x4", x, w, scale, bias, {"torch": expected}, 1)

    assert call is None
    assert reason == (
        "OpenVINO BinaryConvolution differs from torch on layer 8x4x4: 1 of 128 outputs, "
        "largest difference 2; not timed"
    )
