"""The binarizer catalogue: hand-computed values and gradients of each binarizer, the
contract on option variants, and the named binarization methods (bundles).

Expected values are computed here from the formulas of the papers (with ``math``, or
with a reference written through plain autograd), never with the library's helpers.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import bnn_core
from bnn import BConfig, prepare_binary_model
from bnn_binarizers.bundles import BUNDLES
from bnn_binarizers.plugin import BINARIZERS
from bnn_core.bconfig import to_factory
from bnn_core.config import BinarizeSpec
from bnn_core.testing import CONTRACT_CHECKS

X = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
SIGNS = [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
CLIPPED = [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
EPS = 1e-5


def build(name: str, layer: nn.Module | None = None, **options):
    return to_factory({"name": name, **options}).build(layer)


def grad_of(binarizer: nn.Module, x: torch.Tensor, upstream: torch.Tensor | None = None):
    x = x.clone().requires_grad_(True)
    out = binarizer(x)
    out.backward(torch.ones_like(out) if upstream is None else upstream)
    return out.detach(), x.grad


VARIANTS = [
    {"name": "input_bias", "surrogate": "approx_sign"},
    {"name": "swish_sign", "beta": 2.0},
    {"name": "magnitude_aware_sign", "clip_value": None},
    {"name": "ste_heaviside", "clip_value": None},
    {"name": "ste_tern", "ternary_weight_networks": True},
    {"name": "ste_tern", "threshold_value": 0.5, "clip_value": 1.5},
    {"name": "dorefa", "mode": "weights"},
    {"name": "dorefa", "k_bit": 1},
    {"name": "dorefa", "k_bit": 4, "mode": "weights"},
    {"name": "factorised_scale", "max_size": 16},
    {"name": "recu_weight", "tau_start": 0.5, "tau_end": 1.0},
    {"name": "fda_input", "terms_start": 2, "terms_end": 4, "omega": 0.5},
    {"name": "irnet_input", "t_min": 1.0, "t_max": 3.0},
]


@pytest.mark.parametrize("check", CONTRACT_CHECKS.values(), ids=CONTRACT_CHECKS.keys())
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(map(str, v.values())))
def test_contract_of_catalogue_variants(variant, check):
    check(to_factory(variant))


def test_swish_sign():
    beta = 5.0
    out, grad = grad_of(build("swish_sign"), X)
    assert out.tolist() == SIGNS
    expected = [
        beta * (2 - beta * v * math.tanh(beta * v / 2)) / (1 + math.cosh(beta * v))
        for v in X.tolist()
    ]
    assert torch.allclose(grad, torch.tensor(expected), rtol=1e-5, atol=1e-7)
    assert grad[3] == pytest.approx(beta) and grad[4] < 0  # negative lobe near 2.4 / beta


def test_magnitude_aware_sign():
    w = torch.tensor([[1.0, -2.0, 3.0], [-0.5, 0.5, 0.25]])
    out, grad = grad_of(build("magnitude_aware_sign"), w)
    assert torch.allclose(out, torch.tensor([[2.0, -2.0, 2.0], [-5 / 12, 5 / 12, 5 / 12]]))
    assert torch.allclose(grad, torch.tensor([[2.0, 0.0, 0.0], [5 / 12, 5 / 12, 5 / 12]]))
    _, grad = grad_of(build("magnitude_aware_sign", clip_value=None), w)
    assert torch.allclose(grad[0], torch.tensor([2.0, 2.0, 2.0]))


def test_ste_heaviside():
    out, grad = grad_of(build("ste_heaviside"), X)
    assert out.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert grad.tolist() == CLIPPED
    assert grad_of(build("ste_heaviside", clip_value=0.5), X)[1].tolist() == [0, 0, 1, 1, 1, 0, 0]


def test_ste_tern_with_a_fixed_threshold():
    x = torch.tensor([-1.5, -0.06, -0.05, 0.0, 0.04, 0.05, 0.06, 1.0])
    out, grad = grad_of(build("ste_tern"), x)
    assert out.tolist() == [-1, -1, 0, 0, 0, 0, 1, 1]
    assert grad.tolist() == [0, 1, 1, 1, 1, 1, 1, 1]


def test_ste_tern_twn_threshold_is_0_7_mean_magnitude():
    w = torch.tensor([[0.1, -1.0, 0.5], [2.0, -0.2, 0.0]])
    # t = 0.7 * (0.1 + 1 + 0.5 + 2 + 0.2 + 0) / 6 = 0.4433
    out, grad = grad_of(build("ste_tern", ternary_weight_networks=True), w)
    assert out.tolist() == [[0, -1, 1], [1, 0, 0]]
    assert grad.tolist() == [[1, 1, 1], [0, 1, 1]]


def test_dorefa_activations_quantize_to_k_bits():
    x = torch.tensor([-0.5, 0.0, 0.1, 0.2, 0.45, 0.7, 0.9, 1.0, 1.5])
    out, grad = grad_of(build("dorefa"), x)  # k = 2: levels 0, 1/3, 2/3, 1
    expected = [0, 0, 0, 1, 1, 2, 3, 3, 3]
    assert torch.allclose(out, torch.tensor(expected) / 3)
    assert grad.tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 0]
    assert build("dorefa", k_bit=1)(torch.tensor([0.4, 0.6])).tolist() == [0, 1]
    assert build("dorefa", k_bit=3).bit_width == 3


def test_dorefa_weights_and_their_gradient_through_tanh_and_the_maximum():
    values = [0.1, 0.5, -1.0, 2.0]
    upstream = torch.tensor([1.0, -2.0, 0.5, 3.0])
    out, grad = grad_of(build("dorefa", mode="weights"), torch.tensor(values), upstream)
    t = [math.tanh(v) for v in values]
    m = max(abs(v) for v in t)
    expected = [2 * round(3 * (ti / (2 * m) + 0.5)) / 3 - 1 for ti in t]
    assert torch.allclose(out, torch.tensor(expected))
    assert out.tolist() == pytest.approx([1 / 3, 1 / 3, -1, 1])
    g = upstream.tolist()
    weighted = sum(gi * ti for gi, ti in zip(g, t, strict=True))
    d_t = [gi / m for gi in g]
    d_t[3] -= weighted / m**2  # the maximum |tanh| is at index 3 (positive)
    assert torch.allclose(
        grad, torch.tensor([d * (1 - ti**2) for d, ti in zip(d_t, t, strict=True)])
    )


def test_input_bias_with_the_approx_sign_gradient():
    rsign = build("input_bias", nn.Conv2d(2, 3, 1), surrogate="approx_sign")
    with torch.no_grad():
        rsign.bias.copy_(torch.tensor([0.5, -2.0]).reshape(1, 2, 1, 1))
    out, grad = grad_of(rsign, torch.full((1, 2, 1, 1), -0.25))
    assert out.flatten().tolist() == [1, -1]
    assert grad.flatten().tolist() == [1.5, 0.0]  # 2 - 2 * 0.25; |-2.25| > 1


def test_scaled_input_multiplies_the_sign_by_the_channel_mean_magnitude():
    x = torch.tensor([[0.5, -0.2], [-1.5, 0.4]]).reshape(1, 2, 1, 2)  # channels on axis 1
    out, grad = grad_of(build("scaled_input", nn.Conv2d(2, 4, 1)), x)
    assert torch.allclose(out.flatten(), torch.tensor([1.0, -0.3, -1.0, 0.3]))
    assert torch.allclose(grad.flatten(), torch.tensor([1.0, 0.3, 0.0, 0.3]))
    linear_out = build("scaled_input", nn.Linear(3, 2))(torch.tensor([[1.0, -2.0, 0.0]]))
    assert linear_out.tolist() == [[1.0, -1.0, 1.0]]


def test_factorised_scale_is_channel_times_row_times_column():
    scale = build("factorised_scale", nn.Conv2d(1, 2, 1), output_size=[2, 3])
    assert [tuple(p.shape) for p in scale.parameters()] == [
        (1, 2, 1, 1),
        (1, 1, 2, 1),
        (1, 1, 1, 3),
    ]
    with torch.no_grad():
        scale.alpha.copy_(torch.tensor([2.0, 3.0]).reshape(1, 2, 1, 1))
        scale.spatial_alpha[0].copy_(torch.tensor([1.0, 10.0]).reshape(1, 1, 2, 1))
        scale.spatial_alpha[1].copy_(torch.tensor([1.0, 2.0, 4.0]).reshape(1, 1, 1, 3))
    y = torch.ones(1, 2, 2, 3, requires_grad=True)
    out = scale(y, None)
    assert out[0, 1].tolist() == [[3, 6, 12], [30, 60, 120]]
    out.sum().backward()
    assert torch.equal(y.grad, out.detach())
    with pytest.raises(ValueError, match="set output_size or a larger max_size"):
        scale(torch.ones(1, 2, 3, 3))


def test_factorised_scale_without_a_size_serves_any_smaller_output():
    scale = build("factorised_scale", nn.Conv1d(1, 2, 1), max_size=8)
    with torch.no_grad():
        scale.spatial_alpha[0].copy_(torch.arange(8.0).reshape(1, 1, 8))
    assert scale(torch.ones(1, 2, 3)).tolist() == [[[0, 1, 2], [0, 1, 2]]]
    assert scale(torch.ones(2, 5)).shape == (2, 5)  # unbatched
    linear = build("factorised_scale", nn.Linear(3, 4))
    assert [tuple(p.shape) for p in linear.parameters()] == [(1, 4)]
    with pytest.raises(ValueError, match="output_size needs 2 value"):
        build("factorised_scale", nn.Conv2d(1, 2, 1), output_size=[4])


def reference_standardised(w: torch.Tensor, unbiased: bool = True):
    """``(z, sigma)`` per row, written out directly."""
    mean = w.mean(dim=1, keepdim=True)
    variance = w.var(dim=1, keepdim=True, unbiased=unbiased)
    sigma = torch.sqrt(variance + EPS)
    return (w - mean) / sigma, sigma


def straight_through(values: torch.Tensor, smooth: torch.Tensor) -> torch.Tensor:
    """Forward ``values``, backward the derivative of ``smooth`` (the detach trick)."""
    return values.detach() + smooth - smooth.detach()


def autograd_grad(function, w: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    w = w.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(function(w), w, upstream)
    return grad


W = torch.tensor(
    [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0], [1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0]],
    dtype=torch.float64,
)
UPSTREAM = torch.linspace(-1.0, 1.5, 16, dtype=torch.float64).reshape(2, 8)


def quantile(values: list[float], tau: float) -> float:
    """The ``tau``-quantile with linear interpolation between order statistics."""
    ordered = sorted(values)
    position = tau * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def test_recu_weight_clamps_outliers_out_of_the_gradient():
    w = torch.tensor([[0.0, 1.0, 2.0, 10.0], [4.0, 3.0, -1.0, 0.5]], dtype=torch.float64)
    recu = build("recu_weight", nn.Linear(4, 2)).double()
    only_the_outlier = torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, 0]], dtype=torch.float64)
    out, grad = grad_of(recu, w, only_the_outlier)
    assert out.tolist() == [[-1, -1, -1, 1], [1, 1, -1, -1]]  # alpha = 1, sign(W - mean)
    # |W - mean| of row 0 is [3.25, 2.25, 1.25, 6.75]: its 0.85-quantile
    # 3.25 + 0.55 (6.75 - 3.25) = 5.175 clamps the outlier, which then gets no gradient
    bounds = [
        quantile([3.25, 2.25, 1.25, 6.75], 0.85),
        quantile([2.375, 1.375, 2.625, 1.125], 0.85),
    ]
    assert bounds[0] == pytest.approx(5.175)
    assert grad.abs().max() == 0

    def reference(w):
        z, sigma = reference_standardised(w)
        q = torch.tensor(bounds, dtype=w.dtype).reshape(2, 1) / sigma.detach()
        clamped = torch.maximum(torch.minimum(z, q), -q)
        return straight_through(torch.where(z >= 0, 1.0, -1.0), clamped)

    upstream = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.5, 1.0, -1.0, 2.0]], dtype=torch.float64)
    _, grad = grad_of(recu, w, upstream)
    assert torch.allclose(grad, autograd_grad(reference, w, upstream))
    with torch.no_grad():
        recu.alpha.copy_(torch.tensor([[2.0], [0.5]]))
    assert recu(w).tolist() == [[-2, -2, -2, 2], [0.5, 0.5, -0.5, -0.5]]


def test_fda_input_gradient_is_the_fourier_series_derivative():
    def series(v: float, terms: int, omega: float = 0.1) -> float:
        if abs(v) > 1:
            return 0.0
        return 4 * omega / math.pi * sum(math.cos((2 * i + 1) * omega * v) for i in range(terms))

    fda = build("fda_input")
    out, grad = grad_of(fda, X)
    assert out.tolist() == SIGNS
    assert torch.allclose(grad, torch.tensor([series(v, 9) for v in X.tolist()]))
    assert grad[3] == pytest.approx(3.6 / math.pi)  # 4 * 0.1 * 9 / pi
    bnn_core.apply_progress(fda, 10, 10)
    assert torch.allclose(grad_of(fda, X)[1], torch.tensor([series(v, 18) for v in X.tolist()]))


def test_fda_weight():
    fda = build("fda_weight", nn.Linear(8, 2)).double()
    out, grad = grad_of(fda, W, UPSTREAM)
    # mean(|W|) per row: 10 / 8 and 1; signs of the standardised rows
    assert out.tolist() == [[-1.25] * 7 + [1.25], [1.0, -1.0] * 4]

    def reference(w):
        z, _ = reference_standardised(w)
        odd = torch.arange(9, dtype=w.dtype) * 2 + 1
        smooth = 4 / math.pi * torch.sin(z.unsqueeze(-1) * odd * 0.1).div(odd).sum(-1)
        inside = torch.where(z.abs() <= 1, smooth, smooth.detach())
        return (
            straight_through(torch.where(z >= 0, 1.0, -1.0), inside)
            * w.abs().mean(dim=1, keepdim=True).detach()
        )

    assert torch.allclose(grad, autograd_grad(reference, W, UPSTREAM))


def test_irnet_input_gradient_follows_the_ede_schedule():
    ede = build("irnet_input")
    _, grad = grad_of(ede, X)  # t = 0.1, k = 10
    assert torch.allclose(grad, torch.tensor([1 - math.tanh(0.1 * v) ** 2 for v in X.tolist()]))
    bnn_core.apply_progress(ede, 5, 10)  # t = 0.1 * 10^(0.5 * 2) = 1, k = 1
    _, grad = grad_of(ede, X)
    assert torch.allclose(grad, torch.tensor([1 - math.tanh(v) ** 2 for v in X.tolist()]))
    bnn_core.apply_progress(ede, 10, 10)  # t = 10, k = 1
    _, grad = grad_of(ede, X)
    expected = [10 * (1 - math.tanh(10 * v) ** 2) for v in X.tolist()]
    assert torch.allclose(grad, torch.tensor(expected), atol=1e-6)


def test_irnet_weight_uses_a_power_of_two_scale():
    libra = build("irnet_weight", nn.Linear(8, 2)).double()
    out, grad = grad_of(libra, W, UPSTREAM)
    # row 0: mean|z| = 2.1875 / sqrt(12.5) = 0.619 -> 2^round(-0.69) = 1/2;
    # row 1: mean|z| = 1 / sqrt(8 / 7) = 0.935 -> 2^round(-0.1) = 1
    assert out.tolist() == [[-0.5] * 7 + [0.5], [1.0, -1.0] * 4]

    def reference(w):
        z, _ = reference_standardised(w)
        scale = torch.tensor([[0.5], [1.0]], dtype=w.dtype)
        return straight_through(torch.where(z >= 0, 1.0, -1.0), 10 * torch.tanh(0.1 * z)) * scale

    assert torch.allclose(grad, autograd_grad(reference, W, UPSTREAM))


def test_adabin_input_takes_two_learned_values():
    adabin = build("adabin_input")
    with torch.no_grad():
        adabin.alpha.fill_(2.0)
        adabin.beta.fill_(0.5)
    x = torch.tensor([-2.0, 0.0, 0.4, 0.6, 3.0], requires_grad=True)
    out = adabin(x)
    # z = (x - 0.5) / 2 = [-1.25, -0.25, -0.05, 0.05, 1.25]
    assert out.tolist() == [-1.5, -1.5, -1.5, 2.5, 2.5]
    out.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.0, 1.5, 1.9, 1.9, 0.0]))
    # d/d beta = sum(1 - S'(z)) = 5 - 5.3; d/d alpha = sum(sign(z) - S'(z) z) = -1 + 0.375
    assert adabin.beta.grad.item() == pytest.approx(-0.3)
    assert adabin.alpha.grad.item() == pytest.approx(-0.625)


def test_adabin_weight_keeps_each_channel_mean_and_spread():
    w = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    out, grad = grad_of(build("adabin_weight"), w, UPSTREAM[:, :4])
    alpha = math.sqrt((4 + 1 + 0 + 9) / 4 + EPS)  # beta = 3
    spread = math.sqrt(0.25 + EPS)
    expected = [[3 - alpha, 3 - alpha, 3 + alpha, 3 + alpha], [0.5 - spread, 0.5 + spread] * 2]
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64))

    def reference(w):
        beta = w.mean(dim=1, keepdim=True)
        a = torch.sqrt(((w - beta) ** 2).mean(dim=1, keepdim=True) + EPS)
        z = (w - beta) / a
        return beta + a * straight_through(torch.where(z >= 0, 1.0, -1.0), 10 * torch.tanh(0.1 * z))

    assert torch.allclose(grad, autograd_grad(reference, w, UPSTREAM[:, :4]))


METHODS = ["bnn", "xnor", "dorefa1", "bireal", "xnorpp", "react", "recu", "fda", "irnet", "adabin"]


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, stride=2, bias=False),
        nn.BatchNorm2d(8),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 10),
    )


def test_every_method_is_registered():
    assert set(METHODS) <= set(bnn_core.list_bconfigs())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_binarizes_a_small_cnn_and_trains(method):
    model = prepare_binary_model(small_cnn(), method)
    bconfig = bnn_core.get_bconfig(method)
    assert model[2].weight_pre_process.__class__ is bconfig.factory("weight_pre_process").target
    bnn_core.apply_progress(model, 3, 10)
    x = torch.randn(4, 1, 8, 8)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert model[2].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method", METHODS)
def test_every_method_works_by_name_in_a_config_and_round_trips(method):
    spec = BinarizeSpec.model_validate(yaml.safe_load(f"bconfig: {method}"))
    assert spec.bconfig == bnn_core.get_bconfig(method)
    dumped = yaml.safe_dump(spec.bconfig.model_dump())
    assert BConfig.model_validate(yaml.safe_load(dumped)) == spec.bconfig


def test_methods_pick_the_papers_binarizers():
    react = bnn_core.get_bconfig("react").model_dump()
    assert react["activation_pre_process"] == {"name": "input_bias", "surrogate": "approx_sign"}
    assert react["weight_pre_process"] == "xnor_weight"
    assert bnn_core.get_bconfig("bireal").model_dump() == {
        "activation_pre_process": "approx_sign",
        "weight_pre_process": "magnitude_aware_sign",
    }
    assert bnn_core.get_bconfig("xnorpp").model_dump()["activation_post_process"] == (
        "factorised_scale"
    )


def test_the_reference_documents_every_builtin_binarizer_and_method():
    text = (Path(__file__).resolve().parents[1] / "docs" / "binarizers.md").read_text()
    for name in [*BINARIZERS, *BUNDLES]:
        assert f"| `{name}`" in text, f"docs/binarizers.md has no row for {name}"
