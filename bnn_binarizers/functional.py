"""Sign with a chosen surrogate gradient, the primitive under every sign binarizer.

Sign convention: ``sign(x) = +1 for x >= 0, -1 otherwise``. The backward pass
multiplies the incoming gradient by a surrogate derivative evaluated at ``x``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Derivative = Callable[[torch.Tensor], torch.Tensor]


def sign(x: torch.Tensor, sign_of_zero: int = 1) -> torch.Tensor:
    """+1 where ``x >= 0`` and -1 elsewhere; with ``sign_of_zero=0``, 0 stays 0
    (``torch.sign``, the seed library's ternary behaviour, kept only as an option)."""
    if sign_of_zero == 0:
        return torch.sign(x)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(x >= 0, one, -one)


def clipped_identity(clip_value: float | None) -> Derivative:
    """Straight-through estimator: 1 where ``|x| <= clip_value`` (everywhere if None)."""
    if clip_value is None:
        return torch.ones_like

    def derivative(x: torch.Tensor) -> torch.Tensor:
        return (x.abs() <= clip_value).to(x.dtype)

    return derivative


def approx_sign_derivative(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real's ApproxSign gradient: ``2 - 2|x|`` for ``|x| <= 1``, else 0."""
    return (2 - 2 * x.abs()).clamp_min(0)


def tanh_derivative(t: float) -> Derivative:
    """Derivative of ``tanh(t x)``: ``t (1 - tanh(t x)^2)``."""

    def derivative(x: torch.Tensor) -> torch.Tensor:
        return t * (1 - torch.tanh(t * x).square())

    return derivative


class _SurrogateSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, derivative: Derivative, sign_of_zero: int) -> torch.Tensor:  # type: ignore[override]
        ctx.derivative = derivative
        ctx.save_for_backward(x)
        return sign(x, sign_of_zero)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * ctx.derivative(x), None, None


def surrogate_sign(x: torch.Tensor, derivative: Derivative, sign_of_zero: int = 1) -> torch.Tensor:
    """``sign(x)`` forward, ``grad * derivative(x)`` backward."""
    return _SurrogateSign.apply(x, derivative, sign_of_zero)


class _StochasticSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        probability = ((x + 1) / 2).clamp(0, 1)
        one = torch.ones((), dtype=x.dtype, device=x.device)
        return torch.where(torch.rand_like(x) < probability, one, -one)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * (x.abs() <= 1).to(grad_output.dtype)


def stochastic_sign(x: torch.Tensor) -> torch.Tensor:
    """+1 with probability ``clamp((x + 1) / 2, 0, 1)``, else -1; clipped STE backward."""
    return _StochasticSign.apply(x)
