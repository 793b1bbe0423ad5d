"""``BConfig.pad_value``: binary convolutions padding their binarized input with +1 or -1.

Each case compares the binary layer with a reference built by hand: ``F.pad`` of the
input's sign with the pad value, then the functional convolution with padding 0. The
expected pads are written out per case (last dimension first, as ``F.pad`` takes them),
not taken from the layer, so 'same' padding with even kernels is checked too.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml
from pydantic import ValidationError
from torch import nn

from bnn.ops import SteSign, XNORWeightBinarizer
from bnn_core import BConfig, convert, prepare_binary_model
from bnn_core.config import BinarizeSpec
from bnn_core.layers import BinaryConv1d, BinaryConv2d, BinaryConv3d, BinaryConvTranspose2d

# torch warns that float 'same' padding with an even kernel copies the input; expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

SIGN = {"activation_pre_process": SteSign, "weight_pre_process": SteSign}
FUNCTIONAL = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
BINARY = {nn.Conv1d: BinaryConv1d, nn.Conv2d: BinaryConv2d, nn.Conv3d: BinaryConv3d}


def sgn(t: torch.Tensor) -> torch.Tensor:
    """The library's sign convention: +1 for t >= 0, -1 otherwise."""
    return torch.where(t >= 0, torch.ones_like(t), -torch.ones_like(t))


# name: (float conv builder, input shape, pads for F.pad)
CASES = {
    "conv1d": (lambda: nn.Conv1d(4, 6, 3, padding=1), (2, 4, 9), (1, 1)),
    "conv1d_stride2": (lambda: nn.Conv1d(4, 6, 5, stride=2, padding=2), (2, 4, 11), (2, 2)),
    "conv1d_same_even_kernel": (lambda: nn.Conv1d(3, 5, 4, padding="same"), (2, 3, 7), (1, 2)),
    "conv2d": (lambda: nn.Conv2d(4, 6, 3, padding=1), (2, 4, 6, 5), (1, 1, 1, 1)),
    "conv2d_stride2": (
        lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1),
        (2, 4, 7, 8),
        (1, 1, 1, 1),
    ),
    "conv2d_dilation": (
        lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2),
        (2, 4, 7, 7),
        (2, 2, 2, 2),
    ),
    "conv2d_groups": (
        lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False),
        (2, 4, 5, 5),
        (1, 1, 1, 1),
    ),
    "conv2d_depthwise": (
        lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4),
        (2, 4, 5, 5),
        (1, 1, 1, 1),
    ),
    "conv2d_asymmetric_kernel": (
        lambda: nn.Conv2d(4, 6, (1, 3), padding=(0, 1)),
        (2, 4, 5, 6),
        (1, 1, 0, 0),
    ),
    "conv2d_asymmetric_padding": (
        lambda: nn.Conv2d(4, 6, (5, 3), stride=(2, 1), padding=(2, 1)),
        (2, 4, 9, 6),
        (1, 1, 2, 2),
    ),
    "conv2d_same_even_kernel": (
        lambda: nn.Conv2d(4, 6, (2, 4), padding="same"),
        (2, 4, 5, 6),
        (1, 2, 0, 1),
    ),
    "conv2d_same_dilation": (
        lambda: nn.Conv2d(4, 6, (3, 2), padding="same", dilation=(1, 3)),
        (2, 4, 6, 8),
        (1, 2, 1, 1),
    ),
    "conv3d": (lambda: nn.Conv3d(2, 4, 3, padding=1), (1, 2, 4, 5, 5), (1, 1, 1, 1, 1, 1)),
    "conv3d_stride2_asymmetric": (
        lambda: nn.Conv3d(2, 4, (3, 1, 3), stride=2, padding=(1, 0, 1)),
        (1, 2, 5, 4, 5),
        (1, 1, 0, 0, 1, 1),
    ),
}
CASE_IDS = list(CASES)


def _binary(conv: nn.Module, pad_value: int | None) -> nn.Module:
    return BINARY[type(conv)].from_float(conv, BConfig(**SIGN, pad_value=pad_value))


def _reference(conv: nn.Module, x: torch.Tensor, pads: tuple[int, ...], value: float):
    functional = FUNCTIONAL[len(conv.kernel_size)]
    padded = F.pad(sgn(x), pads, value=value)
    return functional(
        padded, sgn(conv.weight), conv.bias, conv.stride, 0, conv.dilation, conv.groups
    )


@pytest.mark.parametrize("pad_value", [1, -1])
@pytest.mark.parametrize("case", CASE_IDS)
def test_pad_value_pads_the_binarized_input(case, pad_value):
    torch.manual_seed(0)
    build, shape, pads = CASES[case]
    conv, x = build(), torch.randn(shape)
    out = _binary(conv, pad_value)(x)
    assert torch.allclose(out, _reference(conv, x, pads, float(pad_value)), atol=1e-5)
    zero_padded = _reference(conv, x, pads, 0.0)
    assert out.shape == zero_padded.shape == conv(x).shape
    assert not torch.allclose(out, zero_padded)  # the border really changed


@pytest.mark.parametrize("pad_value", [0, None])
@pytest.mark.parametrize("case", CASE_IDS)
def test_pad_value_zero_or_unset_is_zero_padding(case, pad_value):
    torch.manual_seed(0)
    build, shape, pads = CASES[case]
    conv, x = build(), torch.randn(shape)
    out = _binary(conv, pad_value)(x)
    assert torch.allclose(out, _reference(conv, x, pads, 0.0), atol=1e-5)
    expected = conv._conv_forward(sgn(x), sgn(conv.weight), conv.bias)
    assert torch.allclose(out, expected, atol=1e-5)


def test_one_padding_on_an_input_without_batch_axis():
    torch.manual_seed(0)
    conv, x = nn.Conv1d(3, 4, 3, padding=1), torch.randn(3, 6)
    out = _binary(conv, 1)(x)
    expected = F.conv1d(F.pad(sgn(x), (1, 1), value=1.0), sgn(conv.weight), conv.bias)
    assert torch.allclose(out, expected, atol=1e-5)


def test_gradients_flow_through_the_padded_input():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    _binary(conv, -1)(x).square().sum().backward()
    x_grad, w_grad = x.grad.clone(), conv.weight.grad.clone()
    x.grad, conv.weight.grad = None, None
    padded = F.pad(SteSign()(x), (1, 1, 1, 1), value=-1.0)
    F.conv2d(padded, SteSign()(conv.weight), conv.bias, stride=2).square().sum().backward()
    assert torch.allclose(x_grad, x.grad) and torch.allclose(w_grad, conv.weight.grad)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_value_with_another_padding_mode_is_a_clear_error(mode):
    conv, x = nn.Conv2d(4, 6, 3, padding=1, padding_mode=mode), torch.randn(1, 4, 5, 5)
    with pytest.raises(ValueError, match=rf"pad_value=1 needs padding_mode='zeros'.*{mode}"):
        _binary(conv, 1)(x)


def test_other_padding_modes_are_unchanged_without_pad_value_or_padding():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 5, 5)
    conv = nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect")
    expected = F.conv2d(F.pad(sgn(x), (1, 1, 1, 1), mode="reflect"), sgn(conv.weight), conv.bias)
    assert torch.allclose(_binary(conv, None)(x), expected, atol=1e-5)
    unpadded = nn.Conv2d(4, 6, 3, padding_mode="reflect")
    expected = F.conv2d(sgn(x), sgn(unpadded.weight), unpadded.bias)
    assert torch.allclose(_binary(unpadded, 1)(x), expected, atol=1e-5)


def test_transposed_convolutions_ignore_pad_value():
    torch.manual_seed(0)
    conv, x = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1), torch.randn(1, 4, 4, 4)
    with_pad = BinaryConvTranspose2d.from_float(conv, BConfig(**SIGN, pad_value=1))
    without = BinaryConvTranspose2d.from_float(conv, BConfig(**SIGN))
    assert torch.equal(with_pad(x), without(x))


class TwoConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


def test_per_layer_pad_value_overrides_only_that_field():
    base = BConfig(**SIGN)
    model = prepare_binary_model(
        TwoConvs(), base, custom_config_layers_name={"conv2": BConfig(pad_value=1)}
    )
    assert model.conv1.bconfig == base and model.conv1.bconfig.pad_value is None
    assert model.conv2.bconfig == BConfig(**SIGN, pad_value=1)
    assert isinstance(model.conv2.activation_pre_process, SteSign)
    assert isinstance(model.conv2.weight_pre_process, SteSign)
    x = torch.randn(1, 4, 5, 5)
    expected = F.conv2d(
        F.pad(sgn(x), (1, 1, 1, 1), value=1.0), sgn(model.conv2.weight), model.conv2.bias
    )
    assert torch.allclose(model.conv2(x), expected, atol=1e-5)


def test_per_layer_config_without_pad_value_keeps_the_model_wide_one():
    base = BConfig(**SIGN, pad_value=-1)
    model = prepare_binary_model(
        TwoConvs(),
        base,
        custom_config_layers_name={
            "conv1": BConfig(weight_pre_process=XNORWeightBinarizer),
            "conv2": BConfig(pad_value=0),
        },
    )
    assert model.conv1.bconfig.pad_value == -1
    assert isinstance(model.conv1.weight_pre_process, XNORWeightBinarizer)
    assert isinstance(model.conv1.activation_pre_process, SteSign)
    assert model.conv2.bconfig.pad_value == 0
    assert isinstance(model.conv2.weight_pre_process, SteSign)


def test_full_precision_layer_config_still_wins_over_pad_value():
    model = prepare_binary_model(
        TwoConvs(), BConfig(**SIGN, pad_value=1), custom_config_layers_name={"conv1": BConfig()}
    )
    assert type(model.conv1) is nn.Conv2d
    assert model.conv2.bconfig.pad_value == 1


def test_convert_merges_a_hand_set_pad_value_over_the_parent_config():
    model = TwoConvs()
    model.bconfig = BConfig(**SIGN)
    model.conv2.bconfig = BConfig(pad_value=-1)
    binary = convert(model)
    assert binary.conv1.bconfig.pad_value is None
    assert binary.conv2.bconfig == BConfig(**SIGN, pad_value=-1)


def test_pad_value_round_trips_through_yaml():
    config = BConfig(activation_pre_process="ste_sign", weight_pre_process="xnor", pad_value=-1)
    text = yaml.safe_dump(config.model_dump())
    assert "pad_value: -1" in text
    assert BConfig.model_validate(yaml.safe_load(text)) == config
    partial = BConfig(pad_value=1)
    assert partial.model_dump() == {"pad_value": 1}
    assert BConfig.model_validate(yaml.safe_load(yaml.safe_dump(partial.model_dump()))) == partial


def test_pad_value_from_a_yaml_binarize_section():
    text = """
bconfig: {activation_pre_process: ste_sign, weight_pre_process: ste_sign}
custom_config_layers_name:
  conv2: {pad_value: 1}
"""
    spec = BinarizeSpec.model_validate(yaml.safe_load(text))
    model = spec.apply(TwoConvs())
    assert model.conv1.bconfig.pad_value is None
    assert model.conv2.bconfig.pad_value == 1
    assert isinstance(model.conv2.activation_pre_process, SteSign)


@pytest.mark.parametrize("value", [2, 0.5, "one"])
def test_pad_value_rejects_other_values(value):
    with pytest.raises(ValidationError, match="pad_value"):
        BConfig(pad_value=value)
