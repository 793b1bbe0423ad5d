"""The conversion engine: which layers become binary, how they are swapped, what they
compute, and the regressions of the seed library's known defects."""

from __future__ import annotations

import copy
import functools
import io
import pickle

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from bnn import BConfig, convert, explain, prepare_binary_model
from bnn.ops import (
    AdvancedInputBinarizer,
    BasicInputBinarizer,
    BasicScaleBinarizer,
    InputBiasBinarizer,
    StochasticInputBinarizer,
    XNORWeightBinarizer,
)
from bnn_core.engine import format_plan, plan_binarization
from bnn_core.errors import BnnError, LayerMatchError
from bnn_core.layers import (
    BinaryConv1d,
    BinaryConv2d,
    BinaryConv3d,
    BinaryConvTranspose1d,
    BinaryConvTranspose2d,
    BinaryConvTranspose3d,
    BinaryLinear,
    is_binary_layer,
)

# --------------------------------------------------------------------------- helpers


def sgn(t: torch.Tensor) -> torch.Tensor:
    """The library's sign convention: +1 for t >= 0, -1 otherwise (never 0)."""
    return torch.where(t >= 0, torch.ones_like(t), -torch.ones_like(t))


def with_zeros(t: torch.Tensor) -> torch.Tensor:
    """``t`` with every fifth element set to exactly 0 (sign(0) must be +1)."""
    t = t.clone()
    t.view(-1)[::5] = 0.0
    return t


#: sign(x) on the input, sign(W) on the weight, nothing on the output
SIGN = BConfig(
    activation_pre_process=BasicInputBinarizer,
    weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False),
)
#: every binarizer with learned state, as in the DESIGN.md example
LEARNED = BConfig(
    activation_pre_process=InputBiasBinarizer,
    weight_pre_process=XNORWeightBinarizer,
    activation_post_process=BasicScaleBinarizer,
)
IDENTITY = BConfig(
    activation_pre_process=nn.Identity,
    weight_pre_process=nn.Identity,
    activation_post_process=nn.Identity,
)


class SmallNet(nn.Module):
    """Four binarizable layers: stem, features.0, features.3 (grouped), head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.features = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=4),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.stem(x))
        return self.head(self.pool(x).flatten(1))


SMALL_LAYERS = ["stem", "features.0", "features.3", "head"]


def small_net(seed: int = 0) -> SmallNet:
    torch.manual_seed(seed)
    return SmallNet()


def binary_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if is_binary_layer(m)]


def planned(plans) -> dict[str, bool]:
    return {p.name: p.binarize for p in plans}


def binarized(plans) -> set[str]:
    return {p.name for p in plans if p.binarize}


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    """A float torchvision resnet18, shared: tests must not modify it."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None)


RESNET_LAYERS = (
    ["conv1"]
    + [f"layer{i}.{j}.conv{k}" for i in (1,) for j in (0, 1) for k in (1, 2)]
    + [
        name
        for i in (2, 3, 4)
        for name in (
            f"layer{i}.0.conv1",
            f"layer{i}.0.conv2",
            f"layer{i}.0.downsample.0",
            f"layer{i}.1.conv1",
            f"layer{i}.1.conv2",
        )
    ]
    + ["fc"]
)
DOWNSAMPLE = {f"layer{i}.0.downsample.0" for i in (2, 3, 4)}


def test_resnet_layer_list_is_complete(resnet18):
    plans = plan_binarization(resnet18, SIGN)
    assert [p.name for p in plans] == RESNET_LAYERS
    assert all(p.binarize for p in plans)
    assert {p.layer_type for p in plans} == {"Conv2d", "Linear"}


# ----------------------------------------------------- swapping every layer type


def _linear(x, w, b):
    return F.linear(x, w, b)


SWAP_CASES = {
    "linear": (lambda: nn.Linear(6, 5), (3, 6), BinaryLinear, _linear),
    "linear_3d_input": (lambda: nn.Linear(6, 5), (2, 3, 6), BinaryLinear, _linear),
    "conv1d": (
        lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1),
        (2, 4, 9),
        BinaryConv1d,
        lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1),
    ),
    "conv1d_depthwise": (
        lambda: nn.Conv1d(4, 8, 3, groups=4),
        (2, 4, 9),
        BinaryConv1d,
        lambda x, w, b: F.conv1d(x, w, b, groups=4),
    ),
    "conv2d": (
        lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2),
        (2, 4, 7, 7),
        BinaryConv2d,
        lambda x, w, b: F.conv2d(x, w, b, padding=2, dilation=2),
    ),
    "conv2d_grouped": (
        lambda: nn.Conv2d(4, 6, 3, stride=2, groups=2),
        (2, 4, 7, 7),
        BinaryConv2d,
        lambda x, w, b: F.conv2d(x, w, b, stride=2, groups=2),
    ),
    "conv2d_depthwise": (
        lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),
        (2, 4, 6, 6),
        BinaryConv2d,
        lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=4),
    ),
    "conv2d_circular_padding": (
        lambda: nn.Conv2d(4, 6, 3, padding=1, padding_mode="circular"),
        (2, 4, 5, 5),
        BinaryConv2d,
        lambda x, w, b: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w, b),
    ),
    "conv3d": (
        lambda: nn.Conv3d(4, 6, 3, padding=1),
        (1, 4, 4, 5, 5),
        BinaryConv3d,
        lambda x, w, b: F.conv3d(x, w, b, padding=1),
    ),
    "conv3d_grouped": (
        lambda: nn.Conv3d(4, 6, (1, 3, 3), groups=2),
        (1, 4, 3, 5, 5),
        BinaryConv3d,
        lambda x, w, b: F.conv3d(x, w, b, groups=2),
    ),
    "convtranspose1d": (
        lambda: nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1),
        (2, 4, 5),
        BinaryConvTranspose1d,
        lambda x, w, b: F.conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1),
    ),
    "convtranspose2d_grouped": (
        lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, dilation=2),
        (2, 4, 4, 5),
        BinaryConvTranspose2d,
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, groups=2, dilation=2),
    ),
    "convtranspose2d_depthwise": (
        lambda: nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, groups=4, bias=False),
        (2, 4, 4, 4),
        BinaryConvTranspose2d,
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, groups=4),
    ),
    "convtranspose3d": (
        lambda: nn.ConvTranspose3d(4, 3, 3, stride=2, padding=1),
        (1, 4, 3, 3, 3),
        BinaryConvTranspose3d,
        lambda x, w, b: F.conv_transpose3d(x, w, b, stride=2, padding=1),
    ),
}


@pytest.mark.parametrize("case", list(SWAP_CASES))
def test_every_layer_type_is_swapped_and_computes_on_signs(case):
    build, shape, binary_cls, functional = SWAP_CASES[case]
    torch.manual_seed(0)
    layer = build()
    model = nn.Sequential(layer, nn.Identity())
    binary = prepare_binary_model(model, SIGN, inplace=True)

    assert type(binary[0]) is binary_cls
    assert type(binary[1]) is nn.Identity
    x = with_zeros(torch.randn(shape))
    expected = functional(sgn(x), sgn(layer.weight.detach()), layer.bias)
    out = binary(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected)
    # the binary layer really binarizes: the float layer gives something else
    assert not torch.allclose(out, layer(x))
    assert binary[0].weight is layer.weight


@pytest.mark.parametrize(
    ("build", "functional", "shape", "output_size", "output_padding"),
    [
        (
            lambda: nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1),
            F.conv_transpose1d,
            (2, 4, 5),
            [10],
            (1,),
        ),
        (
            lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2),
            F.conv_transpose2d,
            (2, 4, 5, 4),
            [10, 7],
            (1, 0),
        ),
        (
            lambda: nn.ConvTranspose3d(4, 2, 3, stride=2, padding=1),
            F.conv_transpose3d,
            (1, 4, 3, 3, 3),
            [6, 5, 6],
            (1, 0, 1),
        ),
    ],
    ids=["1d", "2d", "3d"],
)
def test_convtranspose_with_output_size(build, functional, shape, output_size, output_padding):
    torch.manual_seed(0)
    layer = build()
    model = prepare_binary_model(nn.Sequential(layer), SIGN)
    binary = model[0]
    x = with_zeros(torch.randn(shape))
    expected = functional(
        sgn(x),
        sgn(layer.weight.detach()),
        layer.bias,
        stride=layer.stride,
        padding=layer.padding,
        output_padding=output_padding,
        groups=layer.groups,
    )
    out = binary(x, output_size=output_size)
    assert list(out.shape[2:]) == output_size
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(binary(x, output_size), expected)  # positional, as nn allows


def test_float_layer_output_differs_from_binary_output():
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 6, 6)
    binary = prepare_binary_model(nn.Sequential(layer), SIGN)
    assert not torch.allclose(binary(x), layer(x))
    torch.testing.assert_close(binary(x), F.conv2d(sgn(x), sgn(layer.weight.detach()), layer.bias))


def test_a_bare_layer_is_returned_swapped():
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3)
    binary = prepare_binary_model(layer, SIGN, inplace=True)
    assert type(binary) is BinaryConv2d
    assert binary.weight is layer.weight
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(binary(x), F.conv2d(sgn(x), sgn(layer.weight.detach()), layer.bias))


def test_identity_in_every_slot_leaves_outputs_unchanged():
    model = small_net().eval()
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    binary = prepare_binary_model(model, IDENTITY)
    assert binary_names(binary) == SMALL_LAYERS
    for name in SMALL_LAYERS:
        layer = binary.get_submodule(name)
        for slot in ("activation_pre_process", "weight_pre_process", "activation_post_process"):
            assert isinstance(getattr(layer, slot), nn.Identity)
    assert torch.equal(binary(x), expected)


def test_xnor_weight_scale_and_output_scale_values():
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3, bias=False)
    model = prepare_binary_model(
        nn.Sequential(layer),
        BConfig(
            activation_pre_process=BasicInputBinarizer,
            weight_pre_process=XNORWeightBinarizer,
            activation_post_process=BasicScaleBinarizer,
        ),
    )
    with torch.no_grad():
        model[0].activation_post_process.alpha.copy_(
            torch.tensor([0.5, 1.0, 2.0, -1.0]).view(1, 4, 1, 1)
        )
    x = with_zeros(torch.randn(2, 3, 5, 5))
    w = layer.weight.detach()
    alpha_w = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = F.conv2d(sgn(x), sgn(w) * alpha_w) * torch.tensor([0.5, 1.0, 2.0, -1.0]).view(
        1, 4, 1, 1
    )
    torch.testing.assert_close(model(x), expected)


# ------------------------------------------- parameters, state dict, optimizer


def test_inplace_swap_shares_the_original_parameter_objects():
    model = small_net()
    originals = dict(model.named_parameters())
    binary = prepare_binary_model(model, LEARNED, inplace=True)
    assert binary is model
    assert binary_names(model) == SMALL_LAYERS
    after = dict(binary.named_parameters())
    for name, parameter in originals.items():
        assert after[name] is parameter, name


def test_not_inplace_leaves_the_original_model_untouched():
    model = small_net().eval()
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    types = {n: type(m) for n, m in model.named_modules()}

    binary = prepare_binary_model(model, LEARNED)
    assert binary is not model
    assert binary_names(binary) == SMALL_LAYERS
    assert binary_names(model) == []
    assert {n: type(m) for n, m in model.named_modules()} == types
    assert list(model.state_dict()) == list(state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    assert torch.equal(model(x), before)
    binary_ids = {id(q) for q in binary.parameters()}
    for name, p in model.named_parameters():
        assert id(p) not in binary_ids, name
    with torch.no_grad():
        binary.stem.weight.add_(1.0)
    assert torch.equal(model.stem.weight, state["stem.weight"])


BINARIZER_KEYS = sorted(
    f"{layer}.{key}"
    for layer in SMALL_LAYERS
    for key in ("activation_pre_process.bias", "activation_post_process.alpha")
)


def test_state_dict_keeps_float_keys_and_adds_binarizer_keys():
    model = small_net()
    float_keys = list(model.state_dict())
    binary = prepare_binary_model(model, LEARNED)
    keys = list(binary.state_dict())
    assert [k for k in keys if k in float_keys] == float_keys
    assert sorted(set(keys) - set(float_keys)) == BINARIZER_KEYS
    state = binary.state_dict()
    assert state["stem.activation_pre_process.bias"].shape == (1, 3, 1, 1)
    assert state["stem.activation_post_process.alpha"].shape == (1, 8, 1, 1)
    assert state["features.3.activation_pre_process.bias"].shape == (1, 8, 1, 1)
    assert state["head.activation_pre_process.bias"].shape == (1, 8)
    assert state["head.activation_post_process.alpha"].shape == (1, 5)


def test_state_dict_loads_into_the_float_twin_and_back():
    binary = prepare_binary_model(small_net(0), LEARNED)
    with torch.no_grad():
        for name in SMALL_LAYERS:
            binary.get_submodule(name).activation_pre_process.bias.uniform_(-0.5, 0.5)
    twin = small_net(1)
    result = twin.load_state_dict(binary.state_dict(), strict=False)
    assert result.missing_keys == []
    assert sorted(result.unexpected_keys) == BINARIZER_KEYS
    for key, value in twin.state_dict().items():
        assert torch.equal(value, binary.state_dict()[key]), key

    other = prepare_binary_model(small_net(2), LEARNED)
    result = other.load_state_dict(twin.state_dict(), strict=False)
    assert sorted(result.missing_keys) == BINARIZER_KEYS
    assert result.unexpected_keys == []
    for key, value in twin.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key

    # and the complete binary state dict loads strictly into an equally prepared model
    other.load_state_dict(binary.state_dict())
    binary.eval()
    other.eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(other(x), binary(x))


def test_sgd_momentum_survives_an_inplace_swap():
    model = small_net().eval()
    x = torch.randn(2, 3, 8, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(x).square().sum().backward()
    optimizer.step()
    params = list(model.parameters())
    momentum = {p: optimizer.state[p]["momentum_buffer"].clone() for p in params}

    binary = prepare_binary_model(model, SIGN, inplace=True)
    assert binary_names(binary) == SMALL_LAYERS
    optimizer.zero_grad()
    binary(x).square().sum().backward()
    expected = {p: p.detach() - 0.1 * (0.9 * momentum[p] + p.grad) for p in params}
    optimizer.step()
    for name, p in binary.named_parameters():
        assert any(p is q for q in params), name
        torch.testing.assert_close(p.detach(), expected[p])


def test_adam_state_survives_an_inplace_swap():
    model = small_net().eval()
    x = torch.randn(2, 3, 8, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(x).sum().backward()
    optimizer.step()
    exp_avg = {id(p): optimizer.state[p]["exp_avg"].clone() for p in model.parameters()}

    binary = prepare_binary_model(model, SIGN, inplace=True)
    optimizer.zero_grad()
    binary(x).sum().backward()
    optimizer.step()
    for p in binary.parameters():
        state = optimizer.state[p]
        assert int(state["step"]) == 2
        torch.testing.assert_close(state["exp_avg"], 0.9 * exp_avg[id(p)] + 0.1 * p.grad)


# ------------------------------------------------------- device, dtype, pickling


def test_float64_model_gets_float64_binarizer_parameters():
    model = small_net().double().eval()
    binary = prepare_binary_model(model, LEARNED)
    for name in SMALL_LAYERS:
        layer = binary.get_submodule(name)
        assert layer.activation_pre_process.bias.dtype == torch.float64
        assert layer.activation_post_process.alpha.dtype == torch.float64
    for value in binary.state_dict().values():
        if value.is_floating_point():
            assert value.dtype == torch.float64
    out = binary(torch.randn(2, 3, 8, 8, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_binarizer_parameters_follow_the_layer_device():
    model = small_net().to("meta")
    binary = prepare_binary_model(model, LEARNED)
    for name in SMALL_LAYERS:
        layer = binary.get_submodule(name)
        assert layer.activation_pre_process.bias.device.type == "meta"
        assert layer.activation_post_process.alpha.device.type == "meta"


def _randomize_learned(model: nn.Module, seed: int = 3) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, InputBiasBinarizer):
                module.bias.copy_(torch.rand(module.bias.shape, generator=generator) - 0.5)
            if isinstance(module, BasicScaleBinarizer):
                module.alpha.copy_(torch.rand(module.alpha.shape, generator=generator) + 0.5)


def test_whole_binarized_model_survives_torch_save_and_load():
    config = BConfig(
        activation_pre_process=InputBiasBinarizer,
        weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False, center_weights=True),
        activation_post_process=BasicScaleBinarizer,
    )
    binary = prepare_binary_model(
        small_net(), config, custom_config_layers_name={"stem": BConfig()}
    )
    _randomize_learned(binary)
    binary.eval()
    x = torch.randn(2, 3, 8, 8)
    expected = binary(x)

    buffer = io.BytesIO()
    torch.save(binary, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert binary_names(loaded) == SMALL_LAYERS[1:]
    assert type(loaded.stem) is nn.Conv2d
    assert loaded.head.bconfig == config
    assert loaded.head.weight_pre_process.center_weights is True
    assert torch.equal(loaded(x), expected)


def test_binarized_state_dict_loads_with_weights_only():
    binary = prepare_binary_model(small_net(0), LEARNED)
    _randomize_learned(binary)
    buffer = io.BytesIO()
    torch.save(binary.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = prepare_binary_model(small_net(1), LEARNED)
    fresh.load_state_dict(state)
    binary.eval()
    fresh.eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(fresh(x), binary(x))


def test_whole_binarized_model_survives_deepcopy():
    binary = prepare_binary_model(small_net(), LEARNED)
    _randomize_learned(binary)
    binary.eval()
    x = torch.randn(2, 3, 8, 8)
    clone = copy.deepcopy(binary)
    assert torch.equal(clone(x), binary(x))
    assert clone.head.weight is not binary.head.weight
    assert clone.head.activation_pre_process.bias is not binary.head.activation_pre_process.bias
    assert clone.head.bconfig == binary.head.bconfig


# ---------------------------------------------------------------- matching rules


def test_exact_name_selects_one_layer(resnet18):
    plans = plan_binarization(resnet18, SIGN, ignore_layers_name=["layer1.0.conv1"])
    assert {n for n, b in planned(plans).items() if not b} == {"layer1.0.conv1"}


def test_container_name_selects_the_layers_inside(resnet18):
    plans = plan_binarization(resnet18, SIGN, ignore_layers_name=["layer1", "layer2.0.downsample"])
    floats = {n for n, b in planned(plans).items() if not b}
    assert floats == {
        "layer1.0.conv1",
        "layer1.0.conv2",
        "layer1.1.conv1",
        "layer1.1.conv2",
        "layer2.0.downsample.0",
    }


def test_container_name_in_custom_config(resnet18):
    config = BConfig(weight_pre_process=XNORWeightBinarizer)
    plans = plan_binarization(resnet18, SIGN, custom_config_layers_name={"layer4.1": config})
    changed = {p.name for p in plans if "compute_alpha" not in p.binarizers["weight_pre_process"]}
    assert changed == {"layer4.1.conv1", "layer4.1.conv2"}


def test_downsample_pattern_selects_the_downsample_convolutions(resnet18):
    plans = plan_binarization(resnet18, SIGN, ignore_layers_name=["$downsample$"])
    assert {n for n, b in planned(plans).items() if not b} == DOWNSAMPLE


def test_pattern_matches_whole_names_and_dotted_tails(resnet18):
    def floats(pattern: str) -> set[str]:
        plans = plan_binarization(resnet18, SIGN, ignore_layers_name=[pattern])
        return {n for n, b in planned(plans).items() if not b}

    assert floats("$conv1$") == {n for n in RESNET_LAYERS if n.endswith("conv1")}
    assert floats("$0\\.conv1$") == {f"layer{i}.0.conv1" for i in (1, 2, 3, 4)}
    assert floats("$layer[12]\\..*$") == {
        n for n in RESNET_LAYERS if n.startswith(("layer1.", "layer2."))
    }
    assert floats("$layer3$") == {n for n in RESNET_LAYERS if n.startswith("layer3.")}
    assert floats("$fc|conv1$") == {"fc", "conv1"} | {
        n for n in RESNET_LAYERS if n.endswith(".conv1")
    }


def test_pattern_tail_must_start_after_a_dot(resnet18):
    # "1.0.conv1" is a substring of "layer1.0.conv1" but not a dotted tail of it
    with pytest.raises(LayerMatchError):
        plan_binarization(resnet18, SIGN, ignore_layers_name=["$1\\.0\\.conv1$"])


def test_regression_regex_is_anchored_not_an_unanchored_search(resnet18):
    # the seed used re.search: "$conv$" selected every convolution
    with pytest.raises(LayerMatchError) as info:
        plan_binarization(resnet18, SIGN, ignore_layers_name=["$conv$"])
    message = str(info.value)
    assert "$conv$" in message
    assert "conv1" in message  # the suggestion names what a search would have matched
    with pytest.raises(LayerMatchError):
        plan_binarization(resnet18, SIGN, custom_config_layers_name={"$ownsampl$": BConfig()})
    # the seed also stripped the first and last characters whatever they were
    with pytest.raises(LayerMatchError):
        plan_binarization(resnet18, SIGN, ignore_layers_name=["xdownsamplex"])


def test_invalid_regex_is_an_error(resnet18):
    with pytest.raises(BnnError) as info:
        plan_binarization(resnet18, SIGN, ignore_layers_name=["$layer[1$"])
    assert "layer[1" in str(info.value)
    with pytest.raises(BnnError):
        plan_binarization(resnet18, SIGN, custom_config_layers_name={"$(conv$": BConfig()})


def test_regression_first_and_last_are_not_swapped(resnet18):
    # the seed mapped _first_ to the last layer and _last_ to the first one
    plans = plan_binarization(resnet18, SIGN, ignore_layers_name=["_first_"])
    assert {n for n, b in planned(plans).items() if not b} == {"conv1"}
    plans = plan_binarization(resnet18, SIGN, ignore_layers_name=["_last_"])
    assert {n for n, b in planned(plans).items() if not b} == {"fc"}

    model = prepare_binary_model(
        small_net(), SIGN, custom_config_layers_name={"_first_": BConfig(), "_last_": BConfig()}
    )
    assert type(model.stem) is nn.Conv2d
    assert type(model.head) is nn.Linear
    assert binary_names(model) == ["features.0", "features.3"]


def test_first_and_last_follow_definition_order():
    class Reordered(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.body = nn.Sequential(nn.ReLU(), nn.Conv1d(3, 3, 1), nn.Conv1d(3, 3, 1))
            self.tail = nn.BatchNorm1d(3)

    plans = plan_binarization(Reordered(), SIGN, ignore_layers_name=["_first_"])
    assert planned(plans) == {"head": False, "body.1": True, "body.2": True}
    plans = plan_binarization(Reordered(), SIGN, ignore_layers_name=["_last_"])
    assert planned(plans) == {"head": True, "body.1": True, "body.2": False}


def test_regression_misspelled_layer_names_raise_instead_of_being_ignored(resnet18):
    with pytest.raises(LayerMatchError) as info:
        plan_binarization(resnet18, SIGN, ignore_layers_name=["layer1.0.convv1"])
    assert "layer1.0.convv1" in str(info.value)
    assert "layer1.0.conv1" in str(info.value).replace("layer1.0.convv1", "")
    assert "ignore_layers_name" in str(info.value)

    with pytest.raises(LayerMatchError) as info:
        plan_binarization(resnet18, SIGN, custom_config_layers_name={"conv_1": BConfig()})
    assert "conv1" in str(info.value).replace("conv_1", "")
    assert "custom_config_layers_name" in str(info.value)


def test_match_errors_leave_an_inplace_model_untouched():
    model = small_net()
    with pytest.raises(LayerMatchError):
        prepare_binary_model(model, SIGN, ignore_layers_name=["stem", "nope"], inplace=True)
    assert binary_names(model) == []


def test_a_name_without_binarizable_layers_is_an_error(resnet18):
    with pytest.raises(LayerMatchError) as info:
        plan_binarization(resnet18, SIGN, ignore_layers_name=["bn1"])
    assert "bn1" in str(info.value)
    with pytest.raises(LayerMatchError):
        plan_binarization(resnet18, SIGN, ignore_layers_name=["$bn.$"])


def test_ignored_layers_stay_float_in_the_prepared_model():
    model = prepare_binary_model(small_net(), SIGN, ignore_layers_name=["features", "head"])
    assert binary_names(model) == ["stem"]
    assert type(model.features[0]) is nn.Conv2d
    assert type(model.features[3]) is nn.Conv2d
    assert type(model.head) is nn.Linear
    # a single string is one rule, not a sequence of characters
    model = prepare_binary_model(small_net(), SIGN, ignore_layers_name="head")
    assert binary_names(model) == SMALL_LAYERS[:3]


def test_ignore_wins_over_a_custom_config():
    model = prepare_binary_model(
        small_net(),
        SIGN,
        custom_config_layers_name={"head": LEARNED},
        ignore_layers_name=["head"],
    )
    assert type(model.head) is nn.Linear


def test_custom_full_precision_config_keeps_the_layer_float():
    model = prepare_binary_model(
        small_net(), LEARNED, custom_config_layers_name={"stem": BConfig()}
    )
    assert type(model.stem) is nn.Conv2d
    assert binary_names(model) == SMALL_LAYERS[1:]
    assert "stem.activation_pre_process.bias" not in model.state_dict()


def test_regression_per_layer_bconfig_does_not_reset_other_fields():
    # the seed copied every field of the per-layer config, unset ones included
    partial = BConfig(weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False))
    model = prepare_binary_model(small_net(), LEARNED, custom_config_layers_name={"head": partial})
    head = model.head
    assert isinstance(head.activation_pre_process, InputBiasBinarizer)
    assert isinstance(head.activation_post_process, BasicScaleBinarizer)
    assert isinstance(head.weight_pre_process, XNORWeightBinarizer)
    assert head.weight_pre_process.compute_alpha is False
    assert model.stem.weight_pre_process.compute_alpha is True
    assert head.bconfig == BConfig(
        activation_pre_process=InputBiasBinarizer,
        weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False),
        activation_post_process=BasicScaleBinarizer,
    )


def test_partial_per_layer_config_over_a_partial_model_config():
    base = BConfig(activation_pre_process=BasicInputBinarizer)
    partial = BConfig(activation_post_process=BasicScaleBinarizer)
    model = prepare_binary_model(small_net(), base, custom_config_layers_name={"head": partial})
    assert isinstance(model.head.activation_pre_process, BasicInputBinarizer)
    assert isinstance(model.head.activation_post_process, BasicScaleBinarizer)
    assert isinstance(model.head.weight_pre_process, nn.Identity)
    assert isinstance(model.stem.activation_post_process, nn.Identity)


@pytest.mark.parametrize("exact_first", [True, False])
def test_patterns_apply_before_exact_names(exact_first):
    pattern = ("$features\\..*$", BConfig(weight_pre_process=XNORWeightBinarizer))
    exact = (
        "features.0",
        BConfig(
            weight_pre_process=XNORWeightBinarizer.with_args(center_weights=True),
            activation_post_process=BasicScaleBinarizer,
        ),
    )
    rules = [exact, pattern] if exact_first else [pattern, exact]
    model = prepare_binary_model(small_net(), SIGN, custom_config_layers_name=rules)
    # the exact name wins for features.0 whatever the order ...
    assert model.features[0].weight_pre_process.center_weights is True
    assert model.features[0].weight_pre_process.compute_alpha is True
    assert isinstance(model.features[0].activation_post_process, BasicScaleBinarizer)
    assert isinstance(model.features[0].activation_pre_process, BasicInputBinarizer)
    # ... and the pattern still configures the other layer it selects
    assert model.features[3].weight_pre_process.compute_alpha is True
    assert model.features[3].weight_pre_process.center_weights is False
    assert isinstance(model.features[3].activation_post_process, nn.Identity)
    # untouched layers keep the model-wide config
    assert model.stem.weight_pre_process.compute_alpha is False


def test_exact_full_precision_wins_over_a_pattern():
    model = prepare_binary_model(
        small_net(),
        SIGN,
        custom_config_layers_name={"stem": BConfig(), "$stem|head$": LEARNED},
    )
    assert type(model.stem) is nn.Conv2d
    assert isinstance(model.head.activation_pre_process, InputBiasBinarizer)


def test_custom_config_given_as_mapping():
    model = prepare_binary_model(
        small_net(),
        {"activation_pre_process": "basic_input", "weight_pre_process": "xnor"},
        custom_config_layers_name={
            "head": {"weight_pre_process": {"name": "xnor", "compute_alpha": False}}
        },
    )
    assert isinstance(model.stem.weight_pre_process, XNORWeightBinarizer)
    assert model.head.weight_pre_process.compute_alpha is False
    assert isinstance(model.head.activation_pre_process, BasicInputBinarizer)


def test_model_bconfig_attribute_is_the_default_config():
    model = small_net()
    model.bconfig = SIGN
    binary = prepare_binary_model(model)
    assert binary_names(binary) == SMALL_LAYERS
    with pytest.raises(BnnError):
        prepare_binary_model(small_net())


# -------------------------------------------------------- re-preparing a model


@pytest.mark.parametrize("inplace", [False, True])
def test_regression_learned_parameters_survive_re_preparation(inplace):
    stage1 = prepare_binary_model(small_net(), LEARNED)
    _randomize_learned(stage1)
    learned = {
        k: v.clone()
        for k, v in stage1.state_dict().items()
        if k.endswith(("activation_pre_process.bias", "activation_post_process.alpha"))
    }
    assert sorted(learned) == BINARIZER_KEYS
    weights = {n: p for n, p in stage1.named_parameters() if n.endswith("weight")}

    stage2_config = BConfig(
        activation_pre_process=InputBiasBinarizer,
        weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False),
        activation_post_process=BasicScaleBinarizer,
    )
    stage2 = prepare_binary_model(stage1, stage2_config, inplace=inplace)
    assert binary_names(stage2) == SMALL_LAYERS
    for name in SMALL_LAYERS:
        layer = stage2.get_submodule(name)
        assert layer.weight_pre_process.compute_alpha is False
        assert layer.bconfig == stage2_config
    state = stage2.state_dict()
    for key, value in learned.items():
        assert torch.equal(state[key], value), key
    for name, p in stage2.named_parameters():
        if name in weights:
            assert (p is weights[name]) is inplace
            assert torch.equal(p, weights[name])


def test_re_preparation_with_another_binarizer_class_starts_fresh_and_ignore_restores_float():
    stage1 = prepare_binary_model(small_net(), LEARNED)
    _randomize_learned(stage1)
    head_bias = stage1.head.activation_pre_process.bias.detach().clone()
    stem_weight = stage1.stem.weight
    stage2 = prepare_binary_model(
        stage1,
        BConfig(
            activation_pre_process=InputBiasBinarizer,
            weight_pre_process=XNORWeightBinarizer,
            activation_post_process=nn.Identity,
        ),
        ignore_layers_name=["stem"],
        inplace=True,
    )
    assert type(stage2.stem) is nn.Conv2d
    assert stage2.stem.weight is stem_weight
    assert "stem.activation_pre_process.bias" not in stage2.state_dict()
    assert isinstance(stage2.head.activation_post_process, nn.Identity)
    torch.testing.assert_close(stage2.head.activation_pre_process.bias, head_bias)


# ------------------------------------------------------------------ seed defects


def test_regression_bconfig_with_args_pickles():
    config = BConfig(
        activation_pre_process=InputBiasBinarizer,
        weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False, center_weights=True),
        activation_post_process=BasicScaleBinarizer,
    )
    restored = pickle.loads(pickle.dumps(config))
    assert restored == config
    assert restored.weight_pre_process.params == {"compute_alpha": False, "center_weights": True}
    assert copy.deepcopy(config) == config
    built = restored.factory("weight_pre_process").build(nn.Conv2d(2, 3, 1))
    assert built.compute_alpha is False and built.center_weights is True

    layer = prepare_binary_model(nn.Sequential(nn.Conv2d(2, 3, 1)), config)
    clone = pickle.loads(pickle.dumps(layer))
    assert clone[0].bconfig == config


RSIGN_CASES = {
    "linear": (lambda: nn.Linear(4, 3), (5, 4), F.linear),
    "linear_3d_input": (lambda: nn.Linear(4, 3), (2, 5, 4), F.linear),
    "conv1d": (lambda: nn.Conv1d(4, 3, 3), (2, 4, 7), F.conv1d),
    "conv2d": (lambda: nn.Conv2d(4, 3, 3), (2, 4, 5, 5), F.conv2d),
    "conv3d": (lambda: nn.Conv3d(4, 3, 3), (1, 4, 3, 4, 4), F.conv3d),
}


@pytest.mark.parametrize("case", list(RSIGN_CASES))
def test_regression_rsign_works_on_every_layer_type(case):
    # the seed's InputBiasBinarizer crashed on Conv1d
    build, shape, functional = RSIGN_CASES[case]
    torch.manual_seed(0)
    layer = build()
    model = prepare_binary_model(
        nn.Sequential(layer),
        BConfig(
            activation_pre_process=InputBiasBinarizer,
            weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False),
        ),
    )
    rsign = model[0].activation_pre_process
    assert rsign.bias.numel() == 4
    shifts = torch.tensor([0.5, -0.5, 1.0, -1.0])
    with torch.no_grad():
        rsign.bias.copy_(shifts.view(rsign.bias.shape))
    # the per-channel shift broadcast over the input: channel axis 1, or last for Linear
    view = [1] * len(shape)
    view[-1 if case.startswith("linear") else 1] = 4
    shift = shifts.view(view)

    x = torch.randn(shape, requires_grad=True)
    out = model(x)
    shifted = (x + shift).detach()
    expected = functional(sgn(shifted), sgn(layer.weight.detach()), layer.bias)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected)

    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    binary_input = torch.zeros(shape, requires_grad=True)
    functional(binary_input, sgn(layer.weight.detach())).backward(grad_out)
    expected_x_grad = binary_input.grad * (shifted.abs() <= 1).to(x.dtype)
    torch.testing.assert_close(x.grad, expected_x_grad)
    reduce = [d for d in range(len(shape)) if view[d] == 1]
    expected_bias_grad = expected_x_grad.sum(dim=reduce)
    torch.testing.assert_close(rsign.bias.grad.reshape(-1), expected_bias_grad)


@pytest.mark.parametrize(
    ("build", "shape"),
    [
        (lambda: nn.Conv1d(4, 3, 3), (4, 7)),
        (lambda: nn.Conv2d(4, 3, 3), (4, 5, 5)),
        (lambda: nn.Conv3d(4, 3, 3), (4, 3, 4, 4)),
        (lambda: nn.Linear(4, 3), (4,)),
    ],
    ids=["conv1d", "conv2d", "conv3d", "linear"],
)
def test_learned_binarizers_accept_unbatched_input(build, shape):
    # torch layers accept an input without a batch axis; the binary layer must too
    torch.manual_seed(0)
    layer = build()
    model = prepare_binary_model(nn.Sequential(layer), LEARNED)
    x = torch.randn(shape)
    out = model(x)
    batched = model(x.unsqueeze(0))
    assert out.shape == layer(x).shape
    torch.testing.assert_close(out, batched.squeeze(0))


def _grid() -> torch.Tensor:
    grid = torch.arange(-40, 41, dtype=torch.float32) / 20
    assert (grid == 0).any() and (grid == 1).any() and (grid == -1).any()
    return grid


@pytest.mark.parametrize(
    ("config", "derivative"),
    [
        (StochasticInputBinarizer, lambda x: (x.abs() <= 1).to(x.dtype)),
        (AdvancedInputBinarizer, lambda x: 5.0 * (1 - torch.tanh(5.0 * x) ** 2)),
        (
            AdvancedInputBinarizer.with_args(t=2.0),
            lambda x: 2.0 * (1 - torch.tanh(2.0 * x) ** 2),
        ),
    ],
    ids=["stochastic", "advanced", "advanced_t2"],
)
def test_regression_stochastic_and_advanced_binarizers_have_a_nonzero_gradient(config, derivative):
    # the seed's versions returned a zero (or no) gradient
    bconfig = BConfig(activation_pre_process=config)
    binarizer = bconfig.factory("activation_pre_process").build(nn.Conv2d(3, 4, 3)).train()
    x = _grid().requires_grad_()
    y = binarizer(x)
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    grad_out = torch.linspace(0.5, 1.5, x.numel())
    y.backward(grad_out)
    assert x.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad, grad_out * derivative(x.detach()))

    # and through a binary layer, down to the layer input
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3, bias=False)
    model = prepare_binary_model(
        nn.Sequential(layer),
        BConfig(
            activation_pre_process=config,
            weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False),
        ),
    )
    inputs = (torch.rand(2, 3, 6, 6) * 4 - 2).requires_grad_()
    grad = torch.randn(2, 4, 4, 4)
    model(inputs).backward(grad)
    binary_input = torch.zeros(2, 3, 6, 6, requires_grad=True)
    F.conv2d(binary_input, sgn(layer.weight.detach())).backward(grad)
    assert inputs.grad.abs().sum() > 0
    torch.testing.assert_close(inputs.grad, binary_input.grad * derivative(inputs.detach()))


def test_stochastic_binarizer_is_certain_outside_the_unit_interval():
    torch.manual_seed(0)
    binarizer = StochasticInputBinarizer().train()
    x = torch.tensor([-3.0, -1.0, 1.0, 2.5]).repeat(50)
    assert torch.equal(binarizer(x), sgn(x))
    inside = torch.zeros(2000)
    fraction = (binarizer(inside) > 0).float().mean().item()
    assert 0.4 < fraction < 0.6
    assert torch.equal(binarizer.eval()(torch.zeros(5)), torch.ones(5))


# ----------------------------------------------------------------------- convert


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.linear = nn.Linear(4, 4)


class Tree(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 4, 1)
        self.block = Block()
        self.other = Block()


def test_convert_swaps_only_layers_with_a_bconfig():
    model = Tree()
    model.block.conv.bconfig = LEARNED
    model.other.bconfig = SIGN
    binary = convert(model)
    assert binary_names(binary) == ["block.conv", "other.conv", "other.linear"]
    assert type(binary.first) is nn.Conv2d
    assert type(binary.block.linear) is nn.Linear
    assert binary.block.conv.bconfig == LEARNED
    assert binary.other.linear.bconfig == SIGN
    assert isinstance(binary.block.conv.activation_pre_process, InputBiasBinarizer)
    assert binary_names(model) == []  # not in place by default


def test_convert_children_override_only_the_fields_they_set():
    model = Tree()
    model.bconfig = SIGN
    model.block.bconfig = BConfig(activation_post_process=BasicScaleBinarizer)
    model.block.linear.bconfig = BConfig(weight_pre_process=XNORWeightBinarizer)
    model.other.conv.bconfig = BConfig()
    binary = convert(model, inplace=True)
    assert binary is model

    assert isinstance(model.first.activation_pre_process, BasicInputBinarizer)
    assert isinstance(model.first.activation_post_process, nn.Identity)
    conv = model.block.conv
    assert isinstance(conv.activation_pre_process, BasicInputBinarizer)
    assert conv.weight_pre_process.compute_alpha is False
    assert isinstance(conv.activation_post_process, BasicScaleBinarizer)
    linear = model.block.linear
    assert isinstance(linear.activation_pre_process, BasicInputBinarizer)
    assert linear.weight_pre_process.compute_alpha is True
    assert isinstance(linear.activation_post_process, BasicScaleBinarizer)
    assert type(model.other.conv) is nn.Conv2d  # BConfig(): full precision
    assert isinstance(model.other.linear.weight_pre_process, XNORWeightBinarizer)
    assert model.other.linear.weight_pre_process.compute_alpha is False


def test_convert_without_any_bconfig_changes_nothing():
    model = Tree()
    binary = convert(model)
    assert binary_names(binary) == []
    assert {n: type(m) for n, m in binary.named_modules()} == {
        n: type(m) for n, m in model.named_modules()
    }


def test_convert_inplace_shares_parameters_and_computes_on_signs():
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3)
    model = nn.Sequential(layer)
    layer.bconfig = SIGN
    binary = convert(model, inplace=True)
    assert binary[0].weight is layer.weight
    x = with_zeros(torch.randn(2, 3, 5, 5))
    torch.testing.assert_close(binary(x), F.conv2d(sgn(x), sgn(layer.weight.detach()), layer.bias))


def test_convert_accepts_a_mapping_bconfig_and_a_bare_layer():
    layer = nn.Linear(4, 3)
    layer.bconfig = {"activation_pre_process": "basic_input"}
    binary = convert(layer)
    assert type(binary) is BinaryLinear
    assert isinstance(binary.activation_pre_process, BasicInputBinarizer)


# ----------------------------------------------------------------------- explain


def test_explain_lists_every_layer_with_binarizers_or_reason(resnet18):
    config = BConfig(
        activation_pre_process=InputBiasBinarizer,
        activation_post_process=BasicScaleBinarizer,
        weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False, center_weights=True),
    )
    before = {k: v.clone() for k, v in resnet18.state_dict().items() if k.startswith("fc")}
    plans = explain(
        resnet18,
        config,
        custom_config_layers_name={"conv1": BConfig()},
        ignore_layers_name=["$downsample$"],
    )
    assert [p.name for p in plans] == RESNET_LAYERS
    by_name = {p.name: p for p in plans}
    conv1 = by_name["conv1"]
    assert not conv1.binarize
    assert "full precision" in conv1.reason and "conv1" in conv1.reason
    for name in DOWNSAMPLE:
        assert not by_name[name].binarize
        assert "ignore_layers_name" in by_name[name].reason
        assert "$downsample$" in by_name[name].reason
    binary = [p for p in plans if p.binarize]
    assert len(binary) == len(RESNET_LAYERS) - 4
    for plan in binary:
        assert plan.binarizers["activation_pre_process"] == "input_bias"
        assert plan.binarizers["activation_post_process"] == "basic_scale"
        weight = plan.binarizers["weight_pre_process"]
        assert weight.startswith("xnor_weight")
        assert "compute_alpha=False" in weight and "center_weights=True" in weight
    assert by_name["fc"].layer_type == "Linear"
    assert by_name["layer1.0.conv1"].layer_type == "Conv2d"
    assert by_name["fc"].to_dict()["binarize"] is True
    # explaining changes nothing
    assert type(resnet18.fc) is nn.Linear
    for key, value in before.items():
        assert torch.equal(resnet18.state_dict()[key], value)
    table = format_plan(plans)
    for name in RESNET_LAYERS:
        assert name in table


def test_explain_describes_an_already_binarized_model():
    model = prepare_binary_model(
        small_net(),
        BConfig(
            activation_pre_process=InputBiasBinarizer,
            weight_pre_process=XNORWeightBinarizer,
        ),
        ignore_layers_name=["features.3"],
    )
    plans = explain(model)
    assert [p.name for p in plans] == SMALL_LAYERS
    by_name = {p.name: p for p in plans}
    assert not by_name["features.3"].binarize
    assert by_name["features.3"].layer_type == "Conv2d"
    head = by_name["head"]
    assert head.binarize
    assert head.layer_type == "Linear"
    assert head.binarizers == {
        "activation_pre_process": "input_bias",
        "weight_pre_process": "xnor_weight",
        "activation_post_process": "identity",
    }


def test_explain_names_unregistered_user_binarizers():
    model = prepare_binary_model(
        nn.Sequential(nn.Linear(4, 3)),
        BConfig(activation_pre_process=CustomInputBinarizer),
    )
    plan = explain(model)[0]
    assert plan.binarize
    assert "CustomInputBinarizer" in plan.binarizers["activation_pre_process"]
    plan = explain(
        nn.Sequential(nn.Linear(4, 3)), BConfig(activation_pre_process=CustomInputBinarizer)
    )[0]
    assert "CustomInputBinarizer" in plan.binarizers["activation_pre_process"]


# ------------------------------------------------------ user-facing examples


def test_design_example_runs_on_resnet18(resnet18):
    model = copy.deepcopy(resnet18)
    bconfig = BConfig(
        activation_pre_process=InputBiasBinarizer,  # RSign (ReActNet)
        activation_post_process=BasicScaleBinarizer,
        weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False, center_weights=True),
    )
    model = prepare_binary_model(
        model,
        bconfig,
        custom_config_layers_name={"conv1": BConfig()},  # keep full precision
        ignore_layers_name=["$downsample$"],  # regex between $...$
    )
    assert type(model.conv1) is nn.Conv2d
    for name in DOWNSAMPLE:
        assert type(model.get_submodule(name)) is nn.Conv2d
    assert set(binary_names(model)) == set(RESNET_LAYERS) - DOWNSAMPLE - {"conv1"}
    assert type(model.fc) is BinaryLinear
    weight_binarizer = model.layer1[0].conv1.weight_pre_process
    assert weight_binarizer.compute_alpha is False and weight_binarizer.center_weights is True

    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert model.layer1[0].conv1.weight.grad.abs().sum() > 0
    assert model.conv1.weight.grad.abs().sum() > 0
    assert model.fc.activation_post_process.alpha.grad.abs().sum() > 0
    assert model.layer4[1].conv2.activation_pre_process.bias.grad.abs().sum() > 0
    # the float model given to it is untouched
    assert binary_names(resnet18) == []


class CustomOutputBinarizer(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x_after, x_before):
        # scale binarizer takes the conv output and the conv input
        return F.normalize(x_after, p=2)


class CustomInputBinarizer(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.tanh(x)


def test_seed_readme_custom_binarizer_example_runs():
    torch.manual_seed(0)
    model = SmallNet().eval()
    model.bconfig = BConfig(
        activation_pre_process=CustomInputBinarizer,
        activation_post_process=CustomOutputBinarizer,
        weight_pre_process=nn.Identity,  # this will keep the weights real
    )
    binary = convert(model)
    assert binary_names(binary) == SMALL_LAYERS
    x = torch.randn(2, 3, 8, 8)
    out = binary(x)

    def reference(x: torch.Tensor) -> torch.Tensor:
        def layer(module, inputs):
            return F.normalize(
                module._conv_forward(torch.tanh(inputs), module.weight, module.bias), p=2
            )

        h = layer(model.stem, x)
        h = model.features[2](model.features[1](layer(model.features[0], h)))
        h = layer(model.features[3], h)
        h = model.pool(h).flatten(1)
        return F.normalize(F.linear(torch.tanh(h), model.head.weight, model.head.bias), p=2)

    torch.testing.assert_close(out, reference(x))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


class NoArgBinarizer(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = 0.5

    def forward(self, x):
        return x * self.scale


class LayerAwareBinarizer(nn.Module):
    """Receives the layer as ``module``; scales each output channel by its index + 1."""

    seen: list = []

    def __init__(self, module=None, offset: float = 1.0):
        super().__init__()
        LayerAwareBinarizer.seen.append(module)
        channels = module.weight.shape[0]
        shape = [1, channels] + [1] * (module.weight.dim() - 2)
        self.register_buffer(
            "scale", torch.arange(channels, dtype=torch.float32).view(shape) + offset
        )

    def forward(self, x_after, x_before):
        return x_after * self.scale


class PositionalLayerBinarizer(nn.Module):
    """Receives the layer as its only required positional argument."""

    def __init__(self, layer):
        super().__init__()
        self.in_channels = layer.weight.shape[1]

    def forward(self, x):
        return x


def test_user_binarizer_with_a_no_argument_init():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    model = prepare_binary_model(nn.Sequential(layer), BConfig(weight_pre_process=NoArgBinarizer))
    x = torch.randn(2, 4)
    torch.testing.assert_close(model(x), F.linear(x, layer.weight * 0.5, layer.bias))


def test_user_binarizer_taking_module_receives_the_layer():
    LayerAwareBinarizer.seen.clear()
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    linear = nn.Linear(4, 2)
    model = prepare_binary_model(
        nn.Sequential(conv, nn.Flatten(), linear),
        BConfig(activation_post_process=functools.partial(LayerAwareBinarizer, offset=2.0)),
        inplace=True,
    )
    assert len(LayerAwareBinarizer.seen) == 2
    first, second = LayerAwareBinarizer.seen
    assert isinstance(first, nn.Conv2d) and first.weight is conv.weight
    assert isinstance(second, nn.Linear) and second.weight is linear.weight
    assert model[0].activation_post_process.scale.shape == (1, 4, 1, 1)
    torch.testing.assert_close(
        model[0].activation_post_process.scale.view(-1), torch.tensor([2.0, 3, 4, 5])
    )
    x = torch.randn(2, 3, 3, 3)
    h = conv(x) * torch.tensor([2.0, 3, 4, 5]).view(1, 4, 1, 1)
    expected = linear(h.flatten(1)) * torch.tensor([2.0, 3.0])
    torch.testing.assert_close(model(x), expected)


def test_user_binarizer_taking_one_positional_argument_receives_the_layer():
    model = prepare_binary_model(
        nn.Sequential(nn.Conv1d(5, 2, 1)), BConfig(activation_pre_process=PositionalLayerBinarizer)
    )
    assert model[0].activation_pre_process.in_channels == 5


def test_registered_names_and_seed_class_names_resolve_in_a_bconfig():
    by_name = prepare_binary_model(
        small_net(),
        BConfig(
            activation_pre_process="InputBiasBinarizer",
            weight_pre_process="xnor",
            activation_post_process="basic-scale",
        ),
    )
    for name in SMALL_LAYERS:
        layer = by_name.get_submodule(name)
        assert isinstance(layer.activation_pre_process, InputBiasBinarizer)
        assert isinstance(layer.weight_pre_process, XNORWeightBinarizer)
        assert isinstance(layer.activation_post_process, BasicScaleBinarizer)


def test_a_module_used_twice_is_binarized_at_both_places():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    binary = prepare_binary_model(model, BConfig(activation_pre_process=BasicInputBinarizer))
    assert binary[0] is binary[2] and is_binary_layer(binary[0])
    assert [p.name for p in explain(binary)] == ["0", "2"]


def test_a_module_used_twice_cannot_be_binarized_two_ways():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    with pytest.raises(LayerMatchError, match="same module used twice"):
        prepare_binary_model(
            model, BConfig(activation_pre_process=BasicInputBinarizer), ignore_layers_name=["2"]
        )


def test_pad_value_is_checked_when_the_model_is_prepared():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="padding_mode='zeros'"):
        prepare_binary_model(model, BConfig(activation_pre_process="ste_sign", pad_value=1))
    with pytest.raises(ValueError, match="not a boolean"):
        BConfig(pad_value=True)
    plans = plan_binarization(
        nn.Sequential(nn.Conv2d(2, 2, 3, padding=1)),
        BConfig(activation_pre_process="ste_sign", pad_value=1),
    )
    assert plans[0].binarizers["activation_pre_process"] == "ste_sign, pad +1"
