"""Progress-aware binarizers: each schedule runs from its start value to its end value
as the trainer reports progress, and changes the backward pass only."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from torch import nn

import bnn_core
from bnn import prepare_binary_model
from bnn_binarizers.schedules import ede_sharpness, fourier_terms, fraction, recu_tau
from bnn_core.bconfig import to_factory

EPOCHS = 10


def test_recu_tau_grows_exponentially_from_0_85_to_0_99():
    assert recu_tau(0, EPOCHS) == pytest.approx(0.85)
    assert recu_tau(EPOCHS / 2, EPOCHS) == pytest.approx(
        0.85 + 0.14 * (math.exp(0.5) - 1) / (math.e - 1)
    )
    assert recu_tau(EPOCHS, EPOCHS) == pytest.approx(0.99)
    values = [recu_tau(e, EPOCHS) for e in range(EPOCHS + 1)]
    assert values == sorted(values)


def test_fourier_terms_grow_from_9_to_18():
    assert [fourier_terms(e, EPOCHS) for e in (0, 1, 5, 9, 10)] == [9, 9, 13, 17, 18]


def test_ede_t_grows_log_linearly_and_k_shrinks_to_1():
    assert ede_sharpness(0, EPOCHS) == pytest.approx((0.1, 10.0))
    assert ede_sharpness(EPOCHS / 4, EPOCHS) == pytest.approx((0.1 * 10**0.5, 10**0.5))
    assert ede_sharpness(EPOCHS / 2, EPOCHS) == pytest.approx((1.0, 1.0))
    assert ede_sharpness(EPOCHS, EPOCHS) == pytest.approx((10.0, 1.0))


def test_progress_is_clamped_and_needs_a_positive_total():
    assert fraction(-3, EPOCHS) == 0 and fraction(2 * EPOCHS, EPOCHS) == 1
    assert recu_tau(2 * EPOCHS, EPOCHS) == pytest.approx(0.99)
    with pytest.raises(ValueError, match="positive"):
        fraction(1, 0)


def scheduled_values(binarizer: nn.Module) -> dict[str, float]:
    return {
        name: getattr(binarizer, name)
        for name in ("tau", "terms", "t", "k")
        if hasattr(binarizer, name)
    }


START_END = {
    "recu_weight": ({"tau": 0.85}, {"tau": 0.99}),
    "fda_input": ({"terms": 9}, {"terms": 18}),
    "fda_weight": ({"terms": 9}, {"terms": 18}),
    "irnet_input": ({"t": 0.1, "k": 10.0}, {"t": 10.0, "k": 1.0}),
    "irnet_weight": ({"t": 0.1, "k": 10.0}, {"t": 10.0, "k": 1.0}),
    "adabin_weight": ({"t": 0.1, "k": 10.0}, {"t": 10.0, "k": 1.0}),
}


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(64, 3)
    )


@pytest.mark.parametrize("method", ["recu", "fda", "irnet", "adabin"])
def test_the_progress_hook_moves_every_schedule_from_start_to_end(method):
    model = prepare_binary_model(small_cnn(), method)
    names = {bnn_core.get_binarizer(name): name for name in START_END}
    scheduled = [(names[type(m)], m) for m in model.modules() if type(m) in names]
    assert scheduled, f"{method} has no progress-aware binarizer"
    for step, which in ((0, 0), (EPOCHS, 1)):
        assert bnn_core.apply_progress(model, step, EPOCHS) > 0
        for name, module in scheduled:
            assert scheduled_values(module) == pytest.approx(START_END[name][which]), name


@pytest.mark.parametrize("name", sorted(START_END))
def test_progress_changes_the_gradient_but_not_the_forward_pass(name):
    layer = nn.Linear(8, 4)
    binarizer = to_factory(name).build(layer)
    x = torch.linspace(-1.5, 1.5, 32).reshape(4, 8)
    gradients, outputs = [], []
    for step in (0, EPOCHS):
        bnn_core.apply_progress(binarizer, step, EPOCHS)
        leaf = x.clone().requires_grad_(True)
        out = binarizer(leaf)
        out.backward(torch.linspace(-1, 1, 32).reshape(4, 8))
        gradients.append(leaf.grad)
        outputs.append(out.detach())
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.allclose(gradients[0], gradients[1])


@pytest.mark.parametrize("name", sorted(START_END))
def test_a_schedule_survives_pickling_and_copying(name):
    binarizer = to_factory(name).build(nn.Linear(8, 4))
    bnn_core.apply_progress(binarizer, 7, EPOCHS)
    expected = scheduled_values(binarizer)
    for twin in (pickle.loads(pickle.dumps(binarizer)), copy.deepcopy(binarizer)):
        assert scheduled_values(twin) == expected


def test_recu_clamps_less_as_tau_grows():
    recu = to_factory({"name": "recu_weight", "tau_end": 1.0}).build(nn.Linear(4, 1))
    w = torch.tensor([[0.0, 1.0, 2.0, 10.0]])
    upstream = torch.tensor([[0.0, 0.0, 0.0, 1.0]])  # only the outlier's own gradient
    grads = []
    for step in (0, EPOCHS):
        bnn_core.apply_progress(recu, step, EPOCHS)
        leaf = w.clone().requires_grad_(True)
        recu(leaf).backward(upstream)
        grads.append(leaf.grad)
    assert grads[0].abs().max() == 0  # tau = 0.85: the outlier is clamped
    assert grads[1].abs().max() > 0  # tau = 1: nothing is clamped
