"""The binary layer wrappers in isolation: construction from a float layer and back,
forward semantics, the post-process calling convention, train/eval mode and repr."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn.ops import (
    BasicInputBinarizer,
    BasicScaleBinarizer,
    InputBiasBinarizer,
    StochasticInputBinarizer,
    XNORWeightBinarizer,
)
from bnn_core.bconfig import BConfig
from bnn_core.binarizer import Identity
from bnn_core.layers import (
    SLOTS,
    BinaryConv1d,
    BinaryConv2d,
    BinaryConv3d,
    BinaryConvTranspose1d,
    BinaryConvTranspose2d,
    BinaryConvTranspose3d,
    BinaryLayerMixin,
    BinaryLinear,
    is_binary_layer,
)


def sgn(t: torch.Tensor) -> torch.Tensor:
    """The library's sign convention: +1 for t >= 0, -1 otherwise."""
    return torch.where(t >= 0, torch.ones_like(t), -torch.ones_like(t))


# (float layer builder, binary class, input shape)
LAYERS = {
    "linear": (lambda: nn.Linear(6, 5), BinaryLinear, (3, 6)),
    "conv1d": (lambda: nn.Conv1d(4, 6, 3, padding=1), BinaryConv1d, (2, 4, 9)),
    "conv2d": (lambda: nn.Conv2d(4, 6, 3, stride=2, groups=2), BinaryConv2d, (2, 4, 7, 7)),
    "conv3d": (lambda: nn.Conv3d(4, 6, 3, bias=False), BinaryConv3d, (2, 4, 4, 5, 5)),
    "convtranspose1d": (
        lambda: nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1),
        BinaryConvTranspose1d,
        (2, 4, 5),
    ),
    "convtranspose2d": (
        lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2, output_padding=1),
        BinaryConvTranspose2d,
        (2, 4, 4, 5),
    ),
    "convtranspose3d": (
        lambda: nn.ConvTranspose3d(4, 2, 2, stride=2),
        BinaryConvTranspose3d,
        (1, 4, 2, 3, 3),
    ),
}
LAYER_IDS = list(LAYERS)

IDENTITY_CONFIG = BConfig(
    activation_pre_process=nn.Identity,
    weight_pre_process=nn.Identity,
    activation_post_process=nn.Identity,
)
LEARNED_CONFIG = BConfig(
    activation_pre_process=InputBiasBinarizer,
    weight_pre_process=XNORWeightBinarizer,
    activation_post_process=BasicScaleBinarizer,
)


def _make(kind: str) -> tuple[nn.Module, type, torch.Tensor]:
    torch.manual_seed(0)
    build, binary_cls, shape = LAYERS[kind]
    return build(), binary_cls, torch.randn(shape)


@pytest.mark.parametrize("kind", LAYER_IDS)
def test_from_float_shares_parameters_and_keeps_type_hierarchy(kind):
    layer, binary_cls, _ = _make(kind)
    float_cls = type(layer)
    binary = binary_cls.from_float(layer, LEARNED_CONFIG)

    assert type(binary) is binary_cls
    assert isinstance(binary, float_cls)
    assert is_binary_layer(binary)
    assert not is_binary_layer(layer)
    assert binary.weight is layer.weight
    assert binary.bias is layer.bias
    assert binary.bconfig == LEARNED_CONFIG
    assert isinstance(binary.activation_pre_process, InputBiasBinarizer)
    assert isinstance(binary.weight_pre_process, XNORWeightBinarizer)
    assert isinstance(binary.activation_post_process, BasicScaleBinarizer)
    # the float layer itself is not modified
    assert type(layer) is float_cls
    assert not hasattr(layer, "bconfig")
    assert set(dict(layer.named_children())) == set()
    assert list(layer.state_dict()) == [
        k for k in ("weight", "bias") if getattr(layer, k) is not None
    ]


@pytest.mark.parametrize("kind", LAYER_IDS)
def test_to_float_round_trip_shares_parameters(kind):
    layer, binary_cls, x = _make(kind)
    expected = layer(x)
    binary = binary_cls.from_float(layer, LEARNED_CONFIG)
    back = binary.to_float()

    assert type(back) is type(layer)
    assert not is_binary_layer(back)
    assert back.weight is layer.weight
    assert back.bias is layer.bias
    assert not hasattr(back, "bconfig")
    assert dict(back.named_children()) == {}
    assert list(back.state_dict()) == list(layer.state_dict())
    torch.testing.assert_close(back(x), expected, rtol=0, atol=0)
    # and again to binary: the same Parameters all the way
    again = binary_cls.from_float(back, IDENTITY_CONFIG)
    assert again.weight is layer.weight


@pytest.mark.parametrize("kind", LAYER_IDS)
def test_identity_binarizers_forward_equals_float_layer_exactly(kind):
    layer, binary_cls, x = _make(kind)
    binary = binary_cls.from_float(layer, IDENTITY_CONFIG)
    for slot in SLOTS:
        assert isinstance(getattr(binary, slot), nn.Identity)
    out = binary(x)
    assert torch.equal(out, layer(x))
    assert out.shape == layer(x).shape


@pytest.mark.parametrize("kind", LAYER_IDS)
def test_unset_slots_are_identity(kind):
    layer, binary_cls, x = _make(kind)
    binary = binary_cls.from_float(layer, BConfig(activation_pre_process=BasicInputBinarizer))
    assert isinstance(binary.weight_pre_process, nn.Identity)
    assert isinstance(binary.activation_post_process, nn.Identity)
    assert torch.equal(binary(x), layer(sgn(x)))


@pytest.mark.parametrize("kind", LAYER_IDS)
def test_gradients_reach_the_shared_parameters(kind):
    layer, binary_cls, x = _make(kind)
    reference = layer(x)
    reference.square().sum().backward()
    expected = layer.weight.grad.clone()
    layer.weight.grad = None

    binary = binary_cls.from_float(layer, IDENTITY_CONFIG)
    binary(x).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, expected)


def test_state_dict_keys_are_float_keys_plus_binarizer_keys():
    layer = nn.Conv2d(3, 4, 3)
    binary = BinaryConv2d.from_float(layer, LEARNED_CONFIG)
    state = binary.state_dict()
    assert list(state) == [
        "weight",
        "bias",
        "activation_pre_process.bias",
        "activation_post_process.alpha",
    ]
    assert state["activation_pre_process.bias"].shape == (1, 3, 1, 1)
    assert state["activation_post_process.alpha"].shape == (1, 4, 1, 1)
    assert torch.equal(state["activation_pre_process.bias"], torch.zeros(1, 3, 1, 1))
    assert torch.equal(state["activation_post_process.alpha"], torch.ones(1, 4, 1, 1))

    linear = BinaryLinear.from_float(nn.Linear(6, 5, bias=False), LEARNED_CONFIG)
    assert list(linear.state_dict()) == [
        "weight",
        "activation_pre_process.bias",
        "activation_post_process.alpha",
    ]
    assert linear.activation_pre_process.bias.shape == (1, 6)
    assert linear.activation_post_process.alpha.shape == (1, 5)


def test_from_float_rejects_another_layer_type():
    with pytest.raises(TypeError, match="Conv2d"):
        BinaryConv2d.from_float(nn.Linear(3, 4), IDENTITY_CONFIG)
    with pytest.raises(TypeError):
        BinaryConv2d.from_float(nn.Conv1d(3, 4, 3), IDENTITY_CONFIG)
    with pytest.raises(TypeError):
        BinaryLinear.from_float(
            BinaryConv1d.from_float(nn.Conv1d(3, 4, 3), IDENTITY_CONFIG), IDENTITY_CONFIG
        )


def test_from_float_of_a_binary_layer_keeps_learned_binarizer_state():
    layer = nn.Conv2d(3, 4, 3)
    binary = BinaryConv2d.from_float(layer, LEARNED_CONFIG)
    with torch.no_grad():
        binary.activation_pre_process.bias.copy_(torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1))
        binary.activation_post_process.alpha.copy_(torch.arange(1.0, 5.0).view(1, 4, 1, 1))
    stage2 = BConfig(
        activation_pre_process=InputBiasBinarizer,
        weight_pre_process=BasicInputBinarizer,
        activation_post_process=BasicScaleBinarizer,
    )
    again = BinaryConv2d.from_float(binary, stage2)
    assert again.weight is layer.weight
    assert isinstance(again.weight_pre_process, BasicInputBinarizer)
    torch.testing.assert_close(
        again.activation_pre_process.bias, torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)
    )
    torch.testing.assert_close(
        again.activation_post_process.alpha, torch.arange(1.0, 5.0).view(1, 4, 1, 1)
    )


class _RecordOne(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, ...]] = []

    def forward(self, x):
        self.calls.append((x,))
        return x * 2


class _RecordTwo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, ...]] = []

    def forward(self, x_after, x_before):
        self.calls.append((x_after, x_before))
        return x_after + 1


class _RecordOptional(_RecordTwo):
    def forward(self, x_after, x_before=None):
        self.calls.append((x_after, x_before))
        return x_after + 1


class _RecordVarargs(_RecordTwo):
    def forward(self, *args):
        self.calls.append(args)
        return args[0] + 1


class _RecordKeywordOnly(_RecordOne):
    def forward(self, x, *, scale=2.0):
        self.calls.append((x,))
        return x * scale


SIGN_INPUT = {"activation_pre_process": BasicInputBinarizer, "weight_pre_process": nn.Identity}


@pytest.mark.parametrize("post", [_RecordOne, _RecordKeywordOnly])
def test_one_argument_post_process_gets_only_the_layer_output(post):
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 5, 5)
    binary = BinaryConv2d.from_float(layer, BConfig(activation_post_process=post, **SIGN_INPUT))
    out = binary(x)
    calls = binary.activation_post_process.calls
    assert len(calls) == 1 and len(calls[0]) == 1
    raw = layer(sgn(x))
    assert torch.equal(calls[0][0], raw)
    assert torch.equal(out, raw * 2)


@pytest.mark.parametrize("post", [_RecordTwo, _RecordOptional, _RecordVarargs])
def test_two_argument_post_process_gets_output_and_the_raw_input(post):
    torch.manual_seed(0)
    layer = nn.Linear(6, 3)
    x = torch.randn(4, 6)
    binary = BinaryLinear.from_float(layer, BConfig(activation_post_process=post, **SIGN_INPUT))
    out = binary(x)
    calls = binary.activation_post_process.calls
    assert len(calls) == 1 and len(calls[0]) == 2
    x_after, x_before = calls[0]
    assert torch.equal(x_after, layer(sgn(x)))
    # x_before is the layer input before the input binarizer, not the binarized one
    assert torch.equal(x_before, x)
    assert torch.equal(out, layer(sgn(x)) + 1)


def test_library_identity_as_post_process_ignores_the_second_argument():
    layer = nn.Linear(4, 3)
    binary = BinaryLinear.from_float(layer, BConfig(activation_post_process=Identity))
    x = torch.randn(2, 4)
    assert torch.equal(binary(x), layer(x))


@pytest.mark.parametrize("training", [True, False])
def test_train_eval_mode_is_carried_to_the_binarizers(training):
    layer = nn.Conv2d(3, 4, 3)
    layer.train(training)
    config = BConfig(
        activation_pre_process=StochasticInputBinarizer,
        weight_pre_process=XNORWeightBinarizer,
        activation_post_process=BasicScaleBinarizer,
    )
    binary = BinaryConv2d.from_float(layer, config)
    assert binary.training is training
    for slot in SLOTS:
        assert getattr(binary, slot).training is training

    binary.train(not training)
    for slot in SLOTS:
        assert getattr(binary, slot).training is (not training)


def test_eval_mode_makes_the_stochastic_binarizer_deterministic():
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3, bias=False).eval()
    binary = BinaryConv2d.from_float(
        layer,
        BConfig(
            activation_pre_process=StochasticInputBinarizer,
            weight_pre_process=XNORWeightBinarizer.with_args(compute_alpha=False),
        ),
    )
    x = torch.rand(2, 3, 6, 6) * 1.6 - 0.8  # inside (-1, 1): random in training mode
    expected = F.conv2d(sgn(x), sgn(layer.weight))
    torch.testing.assert_close(binary(x), expected)
    torch.testing.assert_close(binary(x), expected)

    binary.train()
    outs = [binary(x) for _ in range(3)]
    assert not all(torch.equal(outs[0], o) for o in outs[1:])


def test_binarizers_follow_the_layer_dtype():
    layer = nn.Conv1d(3, 4, 3).double()
    binary = BinaryConv1d.from_float(layer, LEARNED_CONFIG)
    assert binary.activation_pre_process.bias.dtype == torch.float64
    assert binary.activation_post_process.alpha.dtype == torch.float64
    out = binary(torch.randn(2, 3, 7, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_convtranspose_output_size_is_honoured():
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1)
    binary = BinaryConvTranspose2d.from_float(layer, IDENTITY_CONFIG)
    x = torch.randn(1, 4, 5, 5)
    for size in ([9, 9], [10, 10], [9, 10]):
        out = binary(x, output_size=size)
        assert list(out.shape[-2:]) == size
        assert torch.equal(out, layer(x, output_size=size))
    assert torch.equal(binary(x, [10, 10]), layer(x, [10, 10]))


def test_repr_names_the_binary_class_its_geometry_and_binarizers():
    binary = BinaryConv2d.from_float(nn.Conv2d(4, 6, 3, stride=2, bias=False), LEARNED_CONFIG)
    text = repr(binary)
    assert text.startswith("BinaryConv2d(")
    geometry = text.splitlines()[1].strip()
    assert geometry.startswith("4, 6, kernel_size=(3, 3), stride=(2, 2)")
    assert "bias=False" in geometry
    assert "(activation_pre_process): InputBiasBinarizer" in text
    assert (
        "(weight_pre_process): XNORWeightBinarizer(compute_alpha=True, center_weights=False)"
        in text
    )
    assert "(activation_post_process): BasicScaleBinarizer([1, 6, 1, 1])" in text

    linear = BinaryLinear.from_float(nn.Linear(6, 5), IDENTITY_CONFIG)
    assert repr(linear).startswith("BinaryLinear(\n  in_features=6, out_features=5, bias=True")


def test_every_binary_layer_is_a_mixin_subclass_of_its_float_layer():
    for build, binary_cls, _ in LAYERS.values():
        layer = build()
        assert issubclass(binary_cls, BinaryLayerMixin)
        assert issubclass(binary_cls, type(layer))
        assert binary_cls._FLOAT_MODULE is type(layer)


def test_evaluation_reuses_the_binarized_weight_until_it_changes():
    import pickle

    layer = BinaryConv2d.from_float(
        nn.Conv2d(3, 4, 3, bias=False), BConfig(weight_pre_process=XNORWeightBinarizer)
    ).eval()
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        first = layer(x)
        cached = layer.binarized_weight()
        assert layer.binarized_weight() is cached  # no new binarization
        layer.weight.mul_(-1)  # an in-place update (as an optimizer step makes)
        flipped = layer(x)
    assert torch.allclose(flipped, -first)
    assert layer.binarized_weight() is not cached
    assert "_weight_cache" not in pickle.loads(pickle.dumps(layer)).__dict__
    layer.train()
    weight = layer.binarized_weight()
    assert weight.requires_grad and "_weight_cache" not in layer.__dict__
