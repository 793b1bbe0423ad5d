"""Sign with a chosen surrogate gradient, the primitive under every sign binarizer.

Sign convention: ``sign(x) = +1 for x >= 0, -1 otherwise``. The backward pass
multiplies the incoming gradient by a surrogate derivative evaluated at ``x``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Derivative = Callable[[torch.Tensor], torch.Tensor]


def sign(x: torch.Tensor, sign_of_zero: int = 1) -> torch.Tensor:
    """+1 where ``x >= 0`` and -1 elsewhere; with ``sign_of_zero=0``, 0 stays 0
    (``torch.sign``, the seed library's ternary behaviour, kept only as an option)."""
    if sign_of_zero == 0:
        return torch.sign(x)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(x >= 0, one, -one)


@dataclass(frozen=True)
class ClippedIdentity:
    """Straight-through estimator: 1 where ``|x| <= clip_value`` (everywhere if None)."""

    clip_value: float | None = 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.clip_value is None:
            return torch.ones_like(x)
        return (x.abs() <= self.clip_value).to(x.dtype)


def approx_sign_derivative(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real's ApproxSign gradient: ``2 - 2|x|`` for ``|x| <= 1``, else 0."""
    return (2 - 2 * x.abs()).clamp_min(0)


@dataclass(frozen=True)
class TanhDerivative:
    """Derivative of ``tanh(t x)``: ``t (1 - tanh(t x)^2)``, computed as ``t / cosh(t x)^2``
    which keeps its precision in the tails."""

    t: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.t / torch.cosh(self.t * x).square()


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
