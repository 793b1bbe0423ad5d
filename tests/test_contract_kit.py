"""The binarizer contract kit itself: it catches a sign that is wrong at or near 0 and
says which input gave which output."""

from __future__ import annotations

import pytest
import torch

from bnn_core import Binarizer, ValueSet
from bnn_core.testing import CONTRACT_CHECKS, check_value_set, grid_like, near_zero_values


class _Straight(torch.autograd.Function):
    """Forward through ``fn``, backward the identity (a straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fn) -> torch.Tensor:  # type: ignore[override]
        return fn(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad_output, None


class TorchSign(Binarizer):
    """``torch.sign`` (0 at x = 0) that wrongly declares {-1, +1}."""

    roles = frozenset({"input", "weight"})
    value_set = ValueSet.BINARY
    bit_width = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Straight.apply(x, torch.sign)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


class TorchSignTernary(TorchSign):
    """``torch.sign`` declaring the value set it really has, {-1, 0, +1}."""

    value_set = ValueSet.TERNARY
    bit_width = 2


def _half_precision_sign(x: torch.Tensor) -> torch.Tensor:
    """+1 at exactly 0, but through float16, which flushes tiny magnitudes to 0."""
    out = torch.sign(x.to(torch.float16)).to(x.dtype)
    return torch.where(x == 0, torch.ones_like(x), out)


class FlushingSign(TorchSign):
    """Right at 0, wrong for tiny inputs that its float16 step rounds to 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Straight.apply(x, _half_precision_sign)


def test_grid_holds_minus_one_zero_and_one_even_when_small() -> None:
    for shape in [(2, 4, 6, 6), (8, 6), (3,)]:
        values = set(grid_like(shape).flatten().tolist())
        assert {-1.0, 0.0, 1.0} <= values, shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_near_zero_values_are_distinct_and_keep_their_sign(dtype: torch.dtype) -> None:
    values = near_zero_values(dtype)
    assert values.dtype == dtype
    assert bool(torch.signbit(values[1])) and float(values[1]) == 0.0
    nonzero = values[2:]
    assert bool((nonzero != 0).all())
    assert float(nonzero.abs().min()) < torch.finfo(dtype).tiny  # subnormals included


def test_torch_sign_declaring_binary_fails_and_names_input_and_output() -> None:
    with pytest.raises(AssertionError) as failure:
        check_value_set(TorchSign)
    message = str(failure.value)
    assert "TorchSign as input" in message and "outside {-1,+1}" in message
    assert "input -> output: 0.0 -> 0.0" in message
    assert "-0.0 -> " in message


def test_torch_sign_declaring_ternary_passes_the_contract() -> None:
    for name, check in CONTRACT_CHECKS.items():
        if name != "yaml_round_trip":  # needs a registered name
            check(TorchSignTernary)


def test_a_sign_wrong_only_for_tiny_inputs_fails() -> None:
    with pytest.raises(AssertionError) as failure:
        check_value_set(FlushingSign)
    message = str(failure.value)
    assert "1e-30 -> 0.0" in message and "-1e-30 -> 0.0" in message
    assert "0.0 -> 1" not in message  # exactly 0 is right
