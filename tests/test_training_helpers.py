"""Training helpers: Bop flips exactly what its rule says, param_groups covers every
parameter once, clipping touches only latent binary weights, and the flip ratio matches a
hand count."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from bnn.constraints import clip_after_step, clip_latent_weights
from bnn.latent import binarizer_parameters, binarizes, binary_weights
from bnn.metrics import FlipRatio
from bnn.ops import BasicScaleBinarizer, InputBiasBinarizer, SteSign, XNORWeightBinarizer
from bnn.optim import GROUPS, Bop, HyperparameterScheduler, param_groups
from bnn_core import BConfig, Identity, prepare_binary_model

LEARNED = BConfig(
    activation_pre_process=InputBiasBinarizer,
    weight_pre_process=SteSign,
    activation_post_process=BasicScaleBinarizer,
)


class Net(nn.Module):
    """A float stem, two binarizable convolutions with batch norm, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(self.bn(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


def binarized_net() -> nn.Module:
    """stem and fc stay float; conv1 and conv2 get learned binarizers; conv2's weight is
    left real (identity weight binarizer), so only conv1.weight is a binary weight."""
    torch.manual_seed(0)
    return prepare_binary_model(
        Net(),
        LEARNED,
        custom_config_layers_name={
            "stem": BConfig(),
            "fc": BConfig(),
            "conv2": BConfig(weight_pre_process=Identity),
        },
    )


# --- which parameters are binary ---------------------------------------------------------


def test_binarizes_follows_the_declared_value_set_and_bit_width():
    assert binarizes(SteSign()) and binarizes(XNORWeightBinarizer())
    assert not binarizes(Identity()) and not binarizes(nn.Identity())

    class OneBit(nn.Module):
        bit_width = 1

    assert binarizes(OneBit())


def test_binary_weights_and_binarizer_parameters_of_a_prepared_model():
    model = binarized_net()
    assert list(binary_weights(model)) == ["conv1.weight"]
    assert binary_weights(model)["conv1.weight"] is model.conv1.weight
    assert list(binarizer_parameters(model)) == [
        "conv1.activation_pre_process.bias",
        "conv1.activation_post_process.alpha",
        "conv2.activation_pre_process.bias",
        "conv2.activation_post_process.alpha",
    ]
    assert binary_weights(Net()) == {} and binarizer_parameters(Net()) == {}


# --- Bop --------------------------------------------------------------------------------


def test_bop_flips_exactly_the_weights_its_rule_selects():
    weight = nn.Parameter(torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]))
    bop = Bop([weight], gamma=0.5, threshold=0.25)
    gradients = [
        [1.0, 1.0, -1.0, -1.0, 0.5, 0.0],
        [1.0, 1.0, -1.0, 0.0, 0.5, -1.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    ]
    # m_t = 0.5 m_{t-1} + 0.5 g_t; flip where m_t * w_{t-1} > 0.25
    expected_m = [
        [0.5, 0.5, -0.5, -0.5, 0.25, 0.0],  # m*w: .5 -.5 -.5 .5 .25(not > .25) 0
        [0.75, 0.75, -0.75, -0.25, 0.375, -0.5],  # m*w: -.75 -.75 -.75 -.25 .375 .5
        [0.375, 0.375, -0.375, -0.125, 0.1875, -0.25],  # m*w all negative: no flip
    ]
    expected_w = [
        [-1.0, -1.0, 1.0, 1.0, 1.0, -1.0],
        [-1.0, -1.0, 1.0, 1.0, -1.0, 1.0],
        [-1.0, -1.0, 1.0, 1.0, -1.0, 1.0],
    ]
    for gradient, m, w in zip(gradients, expected_m, expected_w, strict=True):
        weight.grad = torch.tensor(gradient)
        bop.step()
        assert torch.equal(bop.state[weight]["m"], torch.tensor(m))
        assert torch.equal(weight.detach(), torch.tensor(w))


def test_bop_defaults_and_flip_condition_uses_the_sign_of_the_weight():
    weight = nn.Parameter(torch.tensor([1.0, 1.0, -1.0, -1.0]))
    bop = Bop([weight])
    assert bop.defaults == {"gamma": 1e-4, "threshold": 1e-8}
    weight.grad = torch.tensor([1.0, -1.0, -1.0, 1.0])  # m = 1e-4 g, |m| > 1e-8
    bop.step()
    assert torch.equal(weight.detach(), torch.tensor([-1.0, 1.0, 1.0, -1.0]))


def test_bop_binarizes_float_values_at_the_first_step():
    weight = nn.Parameter(torch.tensor([0.3, -2.0, 0.0, -0.1]))
    bop = Bop([weight], gamma=0.5, threshold=1.0)
    weight.grad = torch.zeros(4)
    bop.step()
    assert torch.equal(weight.detach(), torch.tensor([1.0, -1.0, 1.0, -1.0]))


def test_bop_hyperparameters_are_per_group_and_can_change_between_steps():
    a = nn.Parameter(torch.ones(2))
    b = nn.Parameter(torch.ones(2))
    bop = Bop([{"params": [a], "threshold": 0.6}, {"params": [b]}], gamma=0.5, threshold=0.4)
    for p in (a, b):
        p.grad = torch.ones(2)
    bop.step()  # m = 0.5 for both: only b (threshold 0.4) flips
    assert torch.equal(a.detach(), torch.ones(2)) and torch.equal(b.detach(), -torch.ones(2))
    bop.param_groups[0]["gamma"] = 0.25
    a.grad = torch.ones(2)
    bop.step()  # m = 0.75 * 0.5 + 0.25 * 1 = 0.625 > 0.6
    assert torch.equal(bop.state[a]["m"], torch.full((2,), 0.625))
    assert torch.equal(a.detach(), -torch.ones(2))


def test_bop_skips_weights_without_gradient_and_checks_its_options():
    weight = nn.Parameter(torch.tensor([0.5, -0.5]))
    bop = Bop([weight])
    bop.step()
    assert torch.equal(weight.detach(), torch.tensor([0.5, -0.5])) and not bop.state
    with pytest.raises(ValueError, match="gamma"):
        Bop([weight], gamma=0.0)
    with pytest.raises(ValueError, match="threshold"):
        Bop([weight], threshold=-1.0)


def test_bop_state_survives_a_state_dict_round_trip():
    weight = nn.Parameter(torch.ones(3))
    bop = Bop([weight], gamma=0.5)
    weight.grad = torch.tensor([0.2, -0.2, 0.0])
    bop.step()
    restored = Bop([weight], gamma=0.5)
    restored.load_state_dict(bop.state_dict())
    assert torch.equal(restored.state[weight]["m"], torch.tensor([0.1, -0.1, 0.0]))


def test_hyperparameter_scheduler_scales_gamma_and_resumes():
    weight = nn.Parameter(torch.ones(2))
    bop = Bop([weight], gamma=1e-2)
    scheduler = HyperparameterScheduler(bop, "gamma", lambda step: 0.5**step)
    assert bop.param_groups[0]["gamma"] == 1e-2
    scheduler.step()
    scheduler.step()
    assert bop.param_groups[0]["gamma"] == pytest.approx(2.5e-3)
    assert bop.param_groups[0]["initial_gamma"] == 1e-2
    resumed_bop = Bop([weight], gamma=1e-2)
    resumed = HyperparameterScheduler(resumed_bop, "gamma", lambda step: 0.5**step)
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed_bop.param_groups[0]["gamma"] == pytest.approx(2.5e-3)
    bop.add_param_group({"params": [nn.Parameter(torch.ones(1))], "gamma": 0.2})
    scheduler.step()
    assert bop.param_groups[1]["gamma"] == pytest.approx(0.2 * 0.5**3)
    with pytest.raises(KeyError, match="'momentum'"):
        HyperparameterScheduler(bop, "momentum", lambda step: 1.0)


def test_bop_on_binary_weights_with_adam_on_the_rest():
    model = binarized_net()
    bop = Bop(param_groups(model, include=["binary_weights"]), gamma=0.5, threshold=1e-8)
    adam = torch.optim.Adam(param_groups(model, include=["binarizers", "others"]), lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = model(torch.randn(2, 1, 5, 5)).square().sum()
    loss.backward()
    bop.step()
    adam.step()
    weight = model.conv1.weight.detach()
    assert set(weight.unique().tolist()) <= {-1.0, 1.0}
    m = bop.state[model.conv1.weight]["m"]
    flips = m * torch.where(before["conv1.weight"] >= 0, 1.0, -1.0) > 1e-8
    assert torch.equal(weight == -torch.sign(before["conv1.weight"]), flips)
    for name in ("stem.weight", "conv1.activation_pre_process.bias", "fc.bias"):
        assert not torch.equal(before[name], model.get_parameter(name))


# --- param_groups ------------------------------------------------------------------------


def _ids(groups: list[dict]) -> list[int]:
    return [id(p) for group in groups for p in group["params"]]


@pytest.mark.parametrize("build", [binarized_net, Net], ids=["binarized", "float"])
def test_param_groups_cover_every_parameter_exactly_once(build):
    model = build()
    groups = param_groups(model)
    ids = _ids(groups)
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert len(ids) == len(list(model.parameters()))


def test_param_groups_sort_the_parameters_of_a_binarized_model():
    model = binarized_net()
    groups = {g["name"]: g for g in param_groups(model)}
    assert list(groups) == list(GROUPS)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in groups["binary_weights"]["params"]] == ["conv1.weight"]
    assert sorted(names[id(p)] for p in groups["binarizers"]["params"]) == sorted(
        binarizer_parameters(model)
    )
    others = {names[id(p)] for p in groups["others"]["params"]}
    assert {"stem.weight", "bn.weight", "conv2.weight", "conv2.bias", "fc.bias"} <= others


def test_param_groups_of_a_float_model_are_one_group():
    model = Net()
    groups = param_groups(model, lr=0.1)
    assert [g["name"] for g in groups] == ["others"]
    assert groups[0]["lr"] == 0.1 and "weight_decay" not in groups[0]


def test_param_groups_settings_defaults_and_overrides():
    model = binarized_net()
    groups = {g["name"]: g for g in param_groups(model, lr=1e-3, weight_decay=5e-4)}
    assert groups["binary_weights"]["weight_decay"] == 0.0
    assert groups["binarizers"]["weight_decay"] == 0.0
    assert groups["others"]["weight_decay"] == 5e-4
    assert all(g["lr"] == 1e-3 for g in groups.values())
    optimizer = torch.optim.Adam(param_groups(model, lr=1e-3, weight_decay=5e-4))
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.0, 5e-4]
    custom = param_groups(
        model,
        lr=1e-3,
        overrides={"binary_weights": {"weight_decay": 1e-5}, "binarizers": {"lr": 1e-2}},
    )
    assert [g.get("weight_decay") for g in custom] == [1e-5, 0.0, None]
    assert [g["lr"] for g in custom] == [1e-3, 1e-2, 1e-3]


def test_param_groups_include_and_unknown_names():
    model = binarized_net()
    rest = param_groups(model, include=["binarizers", "others"])
    assert [g["name"] for g in rest] == ["binarizers", "others"]
    assert id(model.conv1.weight) not in _ids(rest)
    with pytest.raises(ValueError, match="unknown group 'weights'"):
        param_groups(model, include=["weights"])
    with pytest.raises(ValueError, match="unknown group 'binary'"):
        param_groups(model, overrides={"binary": {"lr": 1.0}})


def test_param_groups_count_a_shared_weight_once():
    model = binarized_net()
    model.extra = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    model.extra.weight = model.conv1.weight
    groups = param_groups(model)
    assert _ids(groups).count(id(model.conv1.weight)) == 1
    assert groups[0]["params"] == [model.conv1.weight]


# --- clipping ----------------------------------------------------------------------------


def _blow_up(model: nn.Module) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-3.0, 3.0, p.numel()).reshape(p.shape))
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_clip_latent_weights_clips_only_binary_latent_weights():
    model = binarized_net()
    before = _blow_up(model)
    clip_latent_weights(model, c=0.5)
    for name, parameter in model.named_parameters():
        if name == "conv1.weight":
            assert torch.equal(parameter, before[name].clamp(-0.5, 0.5))
            assert parameter.abs().max() == 0.5
        else:
            assert torch.equal(parameter, before[name]), name
    with pytest.raises(ValueError, match="positive"):
        clip_latent_weights(model, c=0.0)


def test_clip_after_step_clips_after_each_step_until_removed():
    model = binarized_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=10.0)
    handle = clip_after_step(optimizer, model)
    model(torch.randn(2, 1, 5, 5)).square().sum().backward()
    optimizer.step()
    assert model.conv1.weight.abs().max() <= 1.0
    assert model.conv2.weight.abs().max() > 1.0  # not binary: left alone
    handle.remove()
    _blow_up(model)
    optimizer.step()
    assert model.conv1.weight.abs().max() > 1.0


# --- flip ratio --------------------------------------------------------------------------


def test_flip_ratio_equals_the_hand_counted_share():
    model = prepare_binary_model(
        nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False)),
        BConfig(weight_pre_process=SteSign),
    )
    with torch.no_grad():
        model[0].weight.copy_(torch.linspace(-1, 1, 12).reshape(3, 4))  # no exact zero
        model[1].weight.fill_(0.5)
    ratio = FlipRatio(model)
    with torch.no_grad():
        model[0].weight[0, :2] *= -1  # 2 flips
        model[0].weight[2, 3] = 0.7  # positive already: no flip
        model[1].weight[0, 0] = 0.0  # 0 counts as +1: no flip
        model[1].weight[1, :] = -0.1  # 3 flips
    assert ratio.update() == pytest.approx(5 / 18)
    assert ratio.per_layer == pytest.approx({"0.weight": 2 / 12, "1.weight": 3 / 6})
    assert ratio.update() == 0.0  # nothing changed since the last call
    with torch.no_grad():
        model[1].weight[1, 0] = 0.0  # -0.1 -> 0: counts as a flip to +1
    assert ratio.update() == pytest.approx(1 / 18)


def test_flip_ratio_during_training_with_bop():
    model = prepare_binary_model(nn.Linear(5, 4), BConfig(weight_pre_process=SteSign))
    bop = Bop(param_groups(model, include=["binary_weights"]), gamma=1.0, threshold=0.0)
    with torch.no_grad():
        model.weight.copy_(torch.where(torch.randn(4, 5) >= 0, 1.0, -1.0))
    ratio = FlipRatio(model)
    before = model.weight.detach().clone()
    model(torch.randn(3, 5)).sum().backward()
    bop.step()
    expected = (torch.sign(before) != torch.sign(model.weight)).float().mean().item()
    assert ratio.update() == pytest.approx(expected)


def test_flip_ratio_without_binary_weights_is_zero():
    assert FlipRatio(Net()).update() == 0.0


# --- the guide's examples ----------------------------------------------------------------

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "training-helpers.md"
BLOCK = re.compile(r"```python\n(.*?)```(?:\n\nprints\n\n```text\n(.*?)```)?", re.DOTALL)


def test_the_guide_examples_run_and_print_what_it_shows():
    namespace: dict = {"__name__": "guide"}
    examples = BLOCK.findall(GUIDE.read_text())
    assert len(examples) >= 6
    for code, expected in examples:
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exec(compile(code, str(GUIDE), "exec"), namespace)
        if expected:
            assert output.getvalue() == expected
