"""Sign with a chosen surrogate gradient, the primitive under every sign binarizer.

Sign convention: ``sign(x) = +1 for x >= 0, -1 otherwise``. The backward pass
multiplies the incoming gradient by a surrogate derivative evaluated at ``x``. The
derivatives are frozen dataclasses or module-level functions, so binarizers holding
them pickle. The straight-through rounding under the k-bit quantizers lives here too.
"""

from __future__ import annotations

import math
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
    # copysign is one vectorised pass (torch.where over a mask is several times slower on
    # CPU); adding +0.0 turns -0.0 into +0.0, whose sign is +1 as for every x >= 0.
    return torch.copysign(one, x + 0.0)


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


@dataclass(frozen=True)
class SwishDerivative:
    """BNN+'s SignSwish derivative:
    ``beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x))``."""

    beta: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        bx = self.beta * x
        return self.beta * (2 - bx * torch.tanh(bx / 2)) / (1 + torch.cosh(bx))


@dataclass(frozen=True)
class FourierDerivative:
    """Derivative of the first ``terms`` terms of the square wave's Fourier series
    ``(4 / pi) sum_i sin((2i + 1) omega x) / (2i + 1)``, that is
    ``(4 omega / pi) sum_{i < terms} cos((2i + 1) omega x)``, zeroed where ``|x| > clip_value``
    (FDA). A loop over the terms keeps the memory at one tensor the size of ``x``."""

    terms: int
    omega: float = 0.1
    clip_value: float = 1.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(x)
        for i in range(self.terms):
            total = total + torch.cos((2 * i + 1) * self.omega * x)
        return (4 * self.omega / math.pi) * total * (x.abs() <= self.clip_value).to(x.dtype)


@dataclass(frozen=True)
class EdeDerivative:
    """IR-Net's error decay estimator: ``k t (1 - tanh(t x)^2)``, computed as
    ``k t / cosh(t x)^2``."""

    t: float
    k: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.k * self.t / torch.cosh(self.t * x).square()


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, values: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(slope)
        return values.clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (slope,) = ctx.saved_tensors
        return grad_output * slope, None, None


def straight_through(x: torch.Tensor, values: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """``values`` forward (a quantization of ``x``, computed without gradient) and
    ``grad * slope`` backward: the general straight-through estimator, for quantizers
    whose surrogate derivative depends on more than one element of ``x`` (a threshold
    per channel) or is not a sign."""
    return _StraightThrough.apply(x, values.detach(), slope.detach())


def round_straight_through(x: torch.Tensor, levels: int) -> torch.Tensor:
    """``round(x * levels) / levels`` forward, identity backward (DoReFa's quantizer)."""
    values = torch.round(x.detach() * levels) / levels
    return straight_through(x, values, torch.ones_like(x))
