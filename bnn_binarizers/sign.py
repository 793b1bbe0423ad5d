"""Element-wise sign binarizers for activations (and weights): forward ``sign(x)``, each
with its own surrogate gradient."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import PositiveFloat

from bnn_binarizers.functional import (
    ClippedIdentity,
    SwishDerivative,
    TanhDerivative,
    approx_sign_derivative,
    sign,
    stochastic_sign,
    surrogate_sign,
)
from bnn_core.binarizer import INPUT, WEIGHT, Binarizer, ValueSet


class SteSign(Binarizer):
    """Sign with the straight-through estimator (Larq ``ste_sign``).

    Forward ``sign(x)`` in {-1, +1} (1 bit); backward passes the gradient where
    ``|x| <= clip_value`` and zeroes it elsewhere (everywhere if ``clip_value`` is None).
    ``sign_of_zero=0`` reproduces ``torch.sign`` (0 maps to 0: ternary output).
    No learnable parameters; runs in the packed runtime.
    Hubara et al., Binarized Neural Networks, NeurIPS 2016.
    """

    roles = frozenset({INPUT, WEIGHT})
    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True
    paper = "Hubara et al., Binarized Neural Networks, NeurIPS 2016"

    def __init__(self, clip_value: float | None = 1.0, sign_of_zero: Literal[1, 0] = 1) -> None:
        super().__init__()
        self.clip_value = clip_value
        self.sign_of_zero = sign_of_zero
        if sign_of_zero == 0:  # torch.sign keeps zeros: the output is ternary
            self.value_set, self.bit_width, self.packable = ValueSet.TERNARY, 2, False
        self._derivative = ClippedIdentity(clip_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return surrogate_sign(x, self._derivative, self.sign_of_zero)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        if self.clip_value is None:
            return torch.ones_like(x)
        return (x.abs() <= self.clip_value).to(x.dtype)

    def extra_repr(self) -> str:
        return f"clip_value={self.clip_value}"


class BasicInputBinarizer(SteSign):
    """Sign with the clipped straight-through estimator (the seed's input binarizer).

    Forward ``sign(x)`` in {-1, +1}; backward passes the gradient where ``|x| <= 1``.
    No parameters; runs in the packed runtime.
    Courbariaux et al., BinaryConnect / Hubara et al., BNN, 2016.
    """

    def __init__(self) -> None:
        super().__init__(clip_value=1.0)


class ApproxSign(Binarizer):
    """Sign with Bi-Real Net's piecewise-polynomial gradient (Larq ``approx_sign``).

    Forward ``sign(x)`` in {-1, +1}; backward ``2 - 2|x|`` for ``|x| <= 1``, else 0 (the
    derivative of the quadratic approximation of sign). No parameters; packable.
    Liu et al., Bi-Real Net, ECCV 2018.
    """

    roles = frozenset({INPUT, WEIGHT})
    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True
    paper = "Liu et al., Bi-Real Net, ECCV 2018"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return surrogate_sign(x, approx_sign_derivative)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.abs() <= 1, 2 - 2 * x.abs(), torch.zeros_like(x))


class AdvancedInputBinarizer(Binarizer):
    """Sign whose gradient is the derivative of ``tanh(t x)`` (the seed's advanced binarizer).

    Forward ``sign(x)`` in {-1, +1}; backward ``t (1 - tanh(t x)^2)``, a smooth surrogate
    that sharpens with ``t`` (the seed's version returned no gradient at all).
    Option ``t`` (default 5); no learnable parameters; packable.
    """

    roles = frozenset({INPUT, WEIGHT})
    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True

    def __init__(self, t: float = 5.0) -> None:
        super().__init__()
        self.t = t
        self._derivative = TanhDerivative(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return surrogate_sign(x, self._derivative)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.t * (1 - torch.tanh(self.t * x).square())

    def extra_repr(self) -> str:
        return f"t={self.t}"


class SwishSign(Binarizer):
    """Sign with BNN+'s SignSwish surrogate gradient (Larq ``swish_sign``).

    Forward ``sign(x)`` in {-1, +1} (1 bit); backward
    ``beta (2 - beta x tanh(beta x / 2)) / (1 + cosh(beta x))``, the derivative of the
    smooth curve ``2 sigmoid(beta x) (1 + beta x (1 - sigmoid(beta x))) - 1``: ``beta`` at
    0, slightly negative around ``|x| = 2.4 / beta`` and vanishing in the tails. Option
    ``beta`` (> 0, default 5). No learnable parameters; packable.
    Darabi et al., BNN+: Improved Binary Network Training, arXiv:1812.11800, 2018.
    """

    roles = frozenset({INPUT, WEIGHT})
    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True
    paper = "Darabi et al., BNN+: Improved Binary Network Training, arXiv:1812.11800, 2018"

    def __init__(self, beta: PositiveFloat = 5.0) -> None:
        super().__init__()
        self.beta = float(beta)
        self._derivative = SwishDerivative(self.beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return surrogate_sign(x, self._derivative)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        sigmoid = torch.sigmoid(self.beta * x)
        # d/dx of 2 s (1 + beta x (1 - s)) - 1, with s' = beta s (1 - s)
        return 2 * self.beta * sigmoid * (1 - sigmoid) * (2 + self.beta * x * (1 - 2 * sigmoid))

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class StochasticInputBinarizer(Binarizer):
    """Stochastic sign: +1 with probability ``hard_sigmoid(x) = clamp((x + 1) / 2, 0, 1)``.

    In training mode the output is random in {-1, +1}; in eval mode it is ``sign(x)``.
    Backward is the clipped straight-through estimator (1 where ``|x| <= 1``), which the
    seed's version lacked (it returned a zero gradient). No parameters; packable (the
    deployed network uses the deterministic eval-mode sign).
    Courbariaux et al., BinaryConnect, NeurIPS 2015.
    """

    roles = frozenset({INPUT, WEIGHT})
    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True
    paper = "Courbariaux et al., BinaryConnect, NeurIPS 2015"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return stochastic_sign(x)
        return surrogate_sign(x, _CLIPPED)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() <= 1).to(x.dtype)


_CLIPPED = ClippedIdentity(1.0)


__all__ = [
    "AdvancedInputBinarizer",
    "ApproxSign",
    "BasicInputBinarizer",
    "SteSign",
    "StochasticInputBinarizer",
    "SwishSign",
    "sign",
]
