"""SignSwish: the sign function trained through the derivative of a swish-shaped curve."""

from __future__ import annotations

import torch
from bnn_core import Binarizer, ValueSet
from pydantic import PositiveFloat


def sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where ``x >= 0`` and -1 elsewhere (bnn's sign convention: never 0)."""
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(x >= 0, one, -one)


def swish_sign_derivative(x: torch.Tensor, beta: float) -> torch.Tensor:
    """``beta * (2 - beta * x * tanh(beta * x / 2)) / (1 + cosh(beta * x))``, the derivative
    of ``2 * sigmoid(beta * x) * (1 + beta * x * (1 - sigmoid(beta * x))) - 1``."""
    bx = beta * x
    return beta * (2 - bx * torch.tanh(bx / 2)) / (1 + torch.cosh(bx))


class _SwishSignFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float) -> torch.Tensor:  # type: ignore[override]
        ctx.beta = beta
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_output * swish_sign_derivative(x, ctx.beta), None


class SwishSign(Binarizer):
    """Sign with the SignSwish surrogate gradient (BNN+; Larq's ``swish_sign``).

    Forward: ``sign(x)``, +1 for ``x >= 0`` and -1 otherwise, so the output is in
    {-1, +1} (1 bit). Backward: the incoming gradient times
    ``beta * (2 - beta * x * tanh(beta * x / 2)) / (1 + cosh(beta * x))``, the derivative
    of the smooth SignSwish curve. It equals ``beta`` at 0, turns slightly negative
    around ``|x| = 2.4 / beta`` and vanishes for large ``|x|``; a larger ``beta`` gives a
    sharper, narrower gradient.

    Option ``beta`` (float > 0, default 5.0). No learnable parameters. Runs in the
    packed runtime (an element-wise sign with no scale).
    Darabi et al., BNN+: Improved Binary Network Training, arXiv:1812.11800, 2018.
    """

    roles = frozenset({"input", "weight"})
    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True
    paper = "Darabi et al., BNN+: Improved Binary Network Training, arXiv:1812.11800, 2018"

    def __init__(self, beta: PositiveFloat = 5.0) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SwishSignFunction.apply(x, self.beta)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return swish_sign_derivative(x, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"
