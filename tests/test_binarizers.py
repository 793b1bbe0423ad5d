"""Built-in binarizers: the contract over the whole registry, then hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import bnn_core
from bnn.ops import (
    AdvancedInputBinarizer,
    ApproxSign,
    BasicInputBinarizer,
    BasicScaleBinarizer,
    InputBiasBinarizer,
    SteSign,
    StochasticInputBinarizer,
    XNORWeightBinarizer,
)
from bnn_core import Binarizer, ValueSet
from bnn_core.testing import CONTRACT_CHECKS, check_surrogate_gradient, check_value_set

X = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
SIGNS = [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]

# Options that exercise code paths the defaults do not.
VARIANTS = [
    {"name": "ste_sign", "clip_value": None},
    {"name": "ste_sign", "clip_value": 0.5},
    {"name": "ste_sign", "sign_of_zero": 0},
    {"name": "xnor_weight", "center_weights": True},
    {"name": "xnor_weight", "compute_alpha": False, "center_weights": True},
    {"name": "advanced_input", "t": 2.0},
]


@pytest.mark.parametrize("check", CONTRACT_CHECKS.values(), ids=CONTRACT_CHECKS.keys())
@pytest.mark.parametrize("name", bnn_core.list_binarizers())
def test_contract_of_every_registered_binarizer(name, check):
    check(name)


@pytest.mark.parametrize("check", CONTRACT_CHECKS.values(), ids=CONTRACT_CHECKS.keys())
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_contract_of_option_variants(variant, check):
    from bnn_core.bconfig import to_factory

    check(to_factory(variant))


def grad_of(binarizer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    binarizer(x).sum().backward()
    return x.grad


@pytest.mark.parametrize("cls", [SteSign, BasicInputBinarizer, ApproxSign, AdvancedInputBinarizer])
def test_sign_is_plus_one_at_zero(cls):
    assert cls()(X).tolist() == SIGNS


def test_ste_sign_gradient_is_clipped():
    assert grad_of(SteSign(), X).tolist() == [0, 1, 1, 1, 1, 1, 0]
    assert grad_of(SteSign(clip_value=0.5), X).tolist() == [0, 0, 1, 1, 1, 0, 0]
    assert grad_of(SteSign(clip_value=None), X).tolist() == [1] * 7
    assert grad_of(BasicInputBinarizer(), X).tolist() == [0, 1, 1, 1, 1, 1, 0]


def test_torch_sign_behaviour_is_an_explicit_option():
    assert SteSign(sign_of_zero=0)(X).tolist() == [-1, -1, -1, 0, 1, 1, 1]


def test_approx_sign_gradient():
    assert grad_of(ApproxSign(), X).tolist() == [0, 0, 1, 2, 1, 0, 0]


def test_advanced_binarizer_has_the_tanh_gradient():
    grad = grad_of(AdvancedInputBinarizer(t=5), X)
    expected = [5 * (1 - math.tanh(5 * v) ** 2) for v in X.tolist()]
    assert torch.allclose(grad, torch.tensor(expected), rtol=1e-5, atol=0)
    assert grad[3] == 5.0 and bool((grad > 0).all())


def test_xnor_scales_each_output_channel_by_its_mean_magnitude():
    w = torch.tensor([[1.0, -2.0, 3.0], [-0.5, 0.5, 0.25]], requires_grad=True)
    out = XNORWeightBinarizer()(w)
    assert torch.allclose(out, torch.tensor([[2.0, -2.0, 2.0], [-5 / 12, 5 / 12, 5 / 12]]))
    out.sum().backward()
    assert torch.allclose(w.grad, torch.tensor([[2.0, 0.0, 0.0], [5 / 12, 5 / 12, 5 / 12]]))
    assert XNORWeightBinarizer(compute_alpha=False)(w).tolist() == [[1, -1, 1], [-1, 1, 1]]


def test_xnor_centres_over_the_input_channel_axis():
    w = torch.tensor([[1.0, -2.0, 3.0], [-0.5, 0.5, 0.25]])
    out = XNORWeightBinarizer(center_weights=True)(w)
    assert torch.allclose(out[0], torch.tensor([16 / 9, -16 / 9, 16 / 9]))
    conv_w = torch.randn(8, 4, 3, 3)
    centred = XNORWeightBinarizer(compute_alpha=False, center_weights=True)(conv_w)
    assert torch.equal(centred, torch.where(conv_w >= conv_w.mean(1, keepdim=True), 1.0, -1.0))


@pytest.mark.parametrize(
    ("layer", "shape", "bias_shape"),
    [
        (nn.Linear(3, 5), (2, 3), (1, 3)),
        (nn.Conv1d(3, 5, 3), (2, 3, 7), (1, 3, 1)),
        (nn.Conv2d(3, 5, 3), (2, 3, 7, 7), (1, 3, 1, 1)),
        (nn.Conv3d(3, 5, 3), (2, 3, 5, 5, 5), (1, 3, 1, 1, 1)),
    ],
)
def test_input_bias_shifts_each_input_channel(layer, shape, bias_shape):
    rsign = InputBiasBinarizer(layer)
    assert tuple(rsign.bias.shape) == bias_shape and not rsign.bias.detach().any()
    with torch.no_grad():
        rsign.bias.copy_(torch.tensor([0.5, -0.5, 0.0]).reshape(bias_shape))
    x = torch.full(shape, -0.25, requires_grad=True)
    out = rsign(x)
    assert out.select(1, 0).unique().tolist() == [1.0]  # -0.25 + 0.5 >= 0
    assert out.select(1, 1).unique().tolist() == [-1.0]
    assert out.select(1, 2).unique().tolist() == [-1.0]
    out.sum().backward()
    assert bool((x.grad == 1).all()) and rsign.bias.grad is not None


def test_input_bias_on_linear_with_sequence_input():
    rsign = InputBiasBinarizer(nn.Linear(3, 5))
    with torch.no_grad():
        rsign.bias.copy_(torch.tensor([[1.0, 0.0, -1.0]]))
    out = rsign(torch.full((2, 4, 3), -0.5))
    assert out[0, 0].tolist() == [1.0, -1.0, -1.0]


def test_basic_scale_multiplies_each_output_channel():
    scale = BasicScaleBinarizer(nn.Conv2d(3, 2, 1))
    assert tuple(scale.alpha.shape) == (1, 2, 1, 1)
    with torch.no_grad():
        scale.alpha.copy_(torch.tensor([2.0, 3.0]).reshape(1, 2, 1, 1))
    y = torch.ones(1, 2, 2, 2)
    out = scale(y, torch.zeros(1, 3, 2, 2))
    assert out[0, 0].unique().tolist() == [2.0] and out[0, 1].unique().tolist() == [3.0]
    linear_scale = BasicScaleBinarizer(nn.Linear(3, 4))
    assert tuple(linear_scale.alpha.shape) == (1, 4)
    assert linear_scale(torch.ones(2, 5, 4)).shape == (2, 5, 4)


def test_basic_scale_needs_a_layer_with_output_channels():
    with pytest.raises(TypeError, match="out_channels or out_features"):
        BasicScaleBinarizer(nn.ReLU())


def test_stochastic_binarizer_follows_hard_sigmoid_probabilities():
    torch.manual_seed(0)
    binarizer = StochasticInputBinarizer().train()
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0]).repeat(200_000, 1)
    means = binarizer(x).mean(dim=0)
    expected = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])  # 2 * hard_sigmoid(x) - 1
    assert torch.allclose(means, expected, atol=0.01)
    assert set(binarizer(x).unique().tolist()) == {-1.0, 1.0}
    assert grad_of(binarizer, X).tolist() == [0, 1, 1, 1, 1, 1, 0]
    assert binarizer.eval()(X).tolist() == SIGNS


def test_every_builtin_declares_its_properties():
    for name in bnn_core.list_binarizers():
        target = bnn_core.get_binarizer(name)
        assert issubclass(target, Binarizer), name
        assert target.__doc__ and len(target.__doc__.split()) > 15, f"{name}: document it"
        if target.value_set in (ValueSet.BINARY, ValueSet.SCALED_BINARY):
            assert target.bit_width == 1 and target.packable, name


class WrongGradient(Binarizer):
    """Declares Bi-Real's gradient but back-propagates the plain clipped STE."""

    value_set = ValueSet.BINARY
    bit_width = 1

    def forward(self, x):
        return SteSign()(x)

    def surrogate_grad(self, x):
        return (2 - 2 * x.abs()).clamp_min(0)


class NotBinary(Binarizer):
    """Declares a binary output but returns tanh."""

    value_set = ValueSet.BINARY

    def forward(self, x):
        return torch.tanh(x)

    def surrogate_grad(self, x):
        return 1 - torch.tanh(x) ** 2


def test_the_contract_catches_a_wrong_gradient():
    with pytest.raises(AssertionError, match="differs from the documented formula"):
        check_surrogate_gradient(WrongGradient)


def test_the_contract_catches_a_wrong_value_set():
    with pytest.raises(AssertionError, match=r"outside \{-1,\+1\}"):
        check_value_set(NotBinary)
    check_surrogate_gradient(NotBinary)
