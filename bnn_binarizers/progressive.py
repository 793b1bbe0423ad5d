"""Sign binarizers whose surrogate gradient follows a training schedule (FDA, IR-Net).

The forward pass is always ``sign(x)``; only the backward pass changes as the trainer
reports progress through ``on_progress(step, total)`` (``bnn_core.apply_progress``).
The scheduled values are plain attributes, recomputed from the progress the trainer
reports; they are not part of the state dict, and evaluation does not depend on them.
"""

from __future__ import annotations

import math

import torch
from pydantic import PositiveFloat, PositiveInt

from bnn_binarizers.functional import EdeDerivative, FourierDerivative, surrogate_sign
from bnn_binarizers.schedules import ede_sharpness, fourier_terms
from bnn_core.binarizer import INPUT, WEIGHT, Binarizer, ValueSet


def fourier_sign_derivative(x: torch.Tensor, terms: int, omega: float) -> torch.Tensor:
    """``(4 omega / pi) sum_{i < terms} cos((2i + 1) omega x)`` for ``|x| <= 1``, else 0:
    the derivative of the truncated Fourier series of the square wave."""
    odd = torch.arange(terms, dtype=x.dtype, device=x.device) * 2 + 1
    series = torch.cos(x.unsqueeze(-1) * odd * omega).sum(dim=-1)
    return torch.where(x.abs() <= 1, 4 * omega / math.pi * series, torch.zeros_like(x))


def ede_derivative(x: torch.Tensor, t: float, k: float) -> torch.Tensor:
    """IR-Net's error decay estimator ``k t (1 - tanh(t x)^2)``."""
    return k * t * (1 - torch.tanh(t * x).square())


class FourierSign(Binarizer):
    """Sign trained through a truncated Fourier series of the square wave (FDA).

    Forward ``sign(x)`` in {-1, +1} (1 bit). Backward
    ``(4 omega / pi) sum_{i < n} cos((2i + 1) omega x)`` for ``|x| <= 1`` and 0 outside:
    the derivative of the square wave's first ``n`` sine terms, a smooth bump that
    approaches the true (impulse) derivative of sign as ``n`` grows. ``n`` grows from
    ``terms_start`` (9) to ``terms_end`` (18) over training through ``on_progress``:
    ``n = terms_start + int(p (terms_end - terms_start))`` at progress ``p``. Option
    ``omega`` (default 0.1, the series' base frequency). No learnable parameters;
    packable. FDA's noise-adaptation branch (a small learned module whose output, with
    a weight decaying to 0, is added to the binary values) changes the layer, not the
    binarizer, and is not part of it.
    Xu et al., Learning Frequency Domain Approximation for Binary Neural Networks,
    NeurIPS 2021.
    """

    roles = frozenset({INPUT, WEIGHT})
    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True
    paper = (
        "Xu et al., Learning Frequency Domain Approximation for Binary Neural Networks, "
        "NeurIPS 2021"
    )

    def __init__(
        self, terms_start: PositiveInt = 9, terms_end: PositiveInt = 18, omega: PositiveFloat = 0.1
    ) -> None:
        super().__init__()
        self.terms_start = terms_start
        self.terms_end = terms_end
        self.omega = omega
        self.terms = terms_start
        self._derivative = FourierDerivative(terms_start, omega)

    def on_progress(self, step: float, total: float) -> None:
        self.terms = fourier_terms(step, total, self.terms_start, self.terms_end)
        self._derivative = FourierDerivative(self.terms, self.omega)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return surrogate_sign(x, self._derivative)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return fourier_sign_derivative(x, self.terms, self.omega)

    def extra_repr(self) -> str:
        return f"terms={self.terms} ({self.terms_start}->{self.terms_end}), omega={self.omega}"


class EdeSign(Binarizer):
    """Sign trained through IR-Net's error decay estimator (EDE).

    Forward ``sign(x)`` in {-1, +1} (1 bit). Backward ``k t (1 - tanh(t x)^2)``, the
    derivative of ``k tanh(t x)``. Over training ``t`` grows log-linearly from
    ``t_min`` (0.1) to ``t_max`` (10), ``t = t_min 10^(p log10(t_max / t_min))`` at
    progress ``p``, with ``k = max(1 / t, 1)``: early on the gradient is close to the
    identity (keeping updates alive), at the end close to sign's (matching the forward
    pass). The schedule follows ``on_progress``. No learnable parameters; packable.
    Qin et al., Forward and Backward Information Retention for Accurate Binary Neural
    Networks (IR-Net), CVPR 2020.
    """

    roles = frozenset({INPUT, WEIGHT})
    value_set = ValueSet.BINARY
    bit_width = 1
    packable = True
    paper = "Qin et al., IR-Net: Forward and Backward Information Retention, CVPR 2020"

    def __init__(self, t_min: PositiveFloat = 0.1, t_max: PositiveFloat = 10.0) -> None:
        super().__init__()
        self.t_min = t_min
        self.t_max = t_max
        self.on_progress(0, 1)

    def on_progress(self, step: float, total: float) -> None:
        self.t, self.k = ede_sharpness(step, total, self.t_min, self.t_max)
        self._derivative = EdeDerivative(self.t, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return surrogate_sign(x, self._derivative)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return ede_derivative(x, self.t, self.k)

    def extra_repr(self) -> str:
        return f"t={self.t:.4g}, k={self.k:.4g} (t: {self.t_min}->{self.t_max})"
