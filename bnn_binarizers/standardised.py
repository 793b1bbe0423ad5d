"""Weight binarizers that standardise each output channel before taking its sign
(ReCU, FDA, IR-Net's Libra-PB).

Standardising ``W`` per output channel (zero mean, unit standard deviation over every
axis but the first) balances the signs of each filter and puts every channel on the
same scale, so one threshold or schedule fits all layers. The gradient flows through
the standardisation (its mean and deviation are not detached), as in the papers.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

from bnn_binarizers.functional import sign, straight_through, surrogate_sign
from bnn_binarizers.progressive import EdeSign, FourierSign, ede_derivative, fourier_sign_derivative
from bnn_binarizers.schedules import recu_tau
from bnn_binarizers.weight import channel_mean_abs
from bnn_core.binarizer import WEIGHT, Binarizer, ValueSet

#: Added to the variance so that a constant channel does not divide by zero.
EPS = 1e-5

Quantile = Annotated[float, Field(gt=0, le=1)]


def _dims(w: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(1, w.dim()))


def _count(w: torch.Tensor, correction: int) -> int:
    return max(w[0].numel() - correction, 1)


def standardise(w: torch.Tensor, correction: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, sigma)``: ``z = (W - mean) / sigma`` per output channel, with
    ``sigma = sqrt(sum((W - mean)^2) / (n - correction) + EPS)`` over the ``n`` weights of
    the channel (``correction=1``: the unbiased estimate, ``0``: the biased one)."""
    centred = w - w.mean(dim=_dims(w), keepdim=True)
    variance = centred.square().sum(dim=_dims(w), keepdim=True) / _count(w, correction)
    sigma = (variance + EPS).sqrt()
    return centred / sigma, sigma


def standardise_backward(
    z: torch.Tensor, sigma: torch.Tensor, grad_z: torch.Tensor, correction: int = 1
) -> torch.Tensor:
    """The gradient with respect to ``W`` given the gradient ``grad_z`` with respect to
    ``z = standardise(W)``: ``(g - mean(g) - z sum(g z) / (n - correction)) / sigma``
    per output channel."""
    mean = grad_z.mean(dim=_dims(z), keepdim=True)
    projection = (grad_z * z).sum(dim=_dims(z), keepdim=True) / _count(z, correction)
    return (grad_z - mean - z * projection) / sigma


def _weight_of(module: nn.Module | None) -> torch.Tensor:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(
            "this weight binarizer needs the layer it binarizes (one with a weight), got "
            f"{type(module).__name__ if module is not None else 'no layer'}"
        )
    return weight


class ReCUWeightBinarizer(Binarizer):
    """ReCU weight binarization: standardise, clamp at a quantile, sign, learned scale.

    Forward ``alpha * sign(clamp(z, -q, q))`` with ``z`` the weights standardised per
    output channel and ``q`` the ``tau``-quantile of ``|z|`` in that channel (detached);
    since ``q > 0`` the clamp leaves the sign of ``z`` unchanged, so the forward value is
    ``alpha * sign(z)``. ``alpha`` is a learnable scale per output channel, initialised
    to 1. Backward: identity through the sign, the clamp's gradient (1 where
    ``|z| <= q``, 0 for the clamped outliers), then through the standardisation.
    ``tau`` grows from ``tau_start`` (0.85) to ``tau_end`` (0.99) over training through
    ``on_progress``, exponentially as in the paper:
    ``tau = tau_start + (tau_end - tau_start) (e^p - 1) / (e - 1)`` at progress ``p``.
    The paper writes the clamp between the (1 - tau)- and tau-quantiles of ``W``; for a
    symmetric distribution that is the (2 tau - 1)-quantile of ``|W|``. This binarizer
    uses the tau-quantile of ``|z|``, which keeps the clamp symmetric and every sign
    unchanged. Values ``alpha * {-1, +1}`` (1 bit); packable (per-channel scale).
    Xu et al., ReCU: Reviving the Dead Weights in Binary Neural Networks, ICCV 2021.
    """

    roles = frozenset({WEIGHT})
    value_set = ValueSet.SCALED_BINARY
    bit_width = 1
    packable = True
    paper = "Xu et al., ReCU: Reviving the Dead Weights in Binary Neural Networks, ICCV 2021"

    def __init__(
        self, module: nn.Module | None = None, tau_start: Quantile = 0.85, tau_end: Quantile = 0.99
    ) -> None:
        super().__init__()
        weight = _weight_of(module)
        self.alpha = nn.Parameter(torch.ones([weight.shape[0]] + [1] * (weight.dim() - 1)))
        self.tau_start = tau_start
        self.tau_end = tau_end
        self.tau = tau_start

    def on_progress(self, step: float, total: float) -> None:
        self.tau = recu_tau(step, total, self.tau_start, self.tau_end)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """``q``: the ``tau``-quantile of ``|z|`` per output channel (interpolating linearly
        between order statistics, at least the smallest positive float), detached and
        broadcastable to ``z``. Sorting directly has no size limit, unlike
        ``torch.quantile``, so it serves layers of any size."""
        ordered = z.detach().abs().flatten(1).sort(dim=1).values
        position = self.tau * (ordered.shape[1] - 1)
        low = int(position)
        high = min(low + 1, ordered.shape[1] - 1)
        q = ordered[:, low] + (position - low) * (ordered[:, high] - ordered[:, low])
        q = q.clamp_min(torch.finfo(z.dtype).tiny)
        return q.reshape([-1] + [1] * (z.dim() - 1))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        z, _ = standardise(w)
        inside = (z.abs() <= self.bound(z)).to(z.dtype)
        return self.alpha * straight_through(z, sign(z.detach()), inside)

    def expected_grad(self, w: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        z, sigma = standardise(w)
        inside = (z.abs() <= self.bound(z)).to(w.dtype)
        return standardise_backward(z, sigma, grad_output * self.alpha * inside)

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g} ({self.tau_start}->{self.tau_end})"


class FDAWeightBinarizer(FourierSign):
    """FDA weight binarization: the standardised weights' sign with the Fourier gradient,
    times ``mean(|W|)``.

    Forward ``mean(|W|) * sign(z)``, with ``z`` the weights standardised per output
    channel and ``mean(|W|)`` taken per output channel over the raw weights (detached).
    Backward: ``mean(|W|)`` times the Fourier-series derivative of :class:`FourierSign`
    at ``z`` (``n`` terms, 9 -> 18 over training through ``on_progress``), then through
    the standardisation. Values ``alpha * {-1, +1}`` (1 bit); packable (per-channel
    scale). FDA's noise-adaptation branch needs extra modules in the layer and is not
    part of this binarizer.
    Xu et al., Learning Frequency Domain Approximation for Binary Neural Networks,
    NeurIPS 2021.
    """

    roles = frozenset({WEIGHT})
    value_set = ValueSet.SCALED_BINARY

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        z, _ = standardise(w)
        return surrogate_sign(z, self._derivative) * channel_mean_abs(w).detach()

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def expected_grad(self, w: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        z, sigma = standardise(w)
        slope = fourier_sign_derivative(z, self.terms, self.omega)
        return standardise_backward(z, sigma, grad_output * channel_mean_abs(w) * slope)


class LibraWeightBinarizer(EdeSign):
    """IR-Net's Libra-PB weight binarization with the error decay estimator.

    Forward ``s * sign(z)``: ``z`` the weights standardised per output channel (zero
    mean, unit standard deviation: balanced signs, maximal information entropy) and
    ``s = 2^round(log2(mean(|z|)))`` per output channel, a power of two (a bit shift at
    inference), detached. Backward: ``s`` times the EDE ``k t (1 - tanh(t z)^2)`` of
    :class:`EdeSign` (``t`` 0.1 -> 10 log-linearly, ``k = max(1 / t, 1)``, through
    ``on_progress``), then through the standardisation. Values ``alpha * {-1, +1}``
    (1 bit); packable (per-channel power-of-two scale).
    Qin et al., Forward and Backward Information Retention for Accurate Binary Neural
    Networks (IR-Net), CVPR 2020.
    """

    roles = frozenset({WEIGHT})
    value_set = ValueSet.SCALED_BINARY

    @staticmethod
    def power_of_two_scale(z: torch.Tensor) -> torch.Tensor:
        """``2^round(log2(mean(|z|)))`` per output channel, detached, broadcastable (a
        constant channel, whose ``z`` is 0, gets the smallest positive float's scale)."""
        magnitude = channel_mean_abs(z.detach()).clamp_min(torch.finfo(z.dtype).tiny)
        return torch.exp2(torch.round(torch.log2(magnitude)))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        z, _ = standardise(w)
        return surrogate_sign(z, self._derivative) * self.power_of_two_scale(z)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def expected_grad(self, w: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        z, sigma = standardise(w)
        slope = ede_derivative(z, self.t, self.k) * self.power_of_two_scale(z)
        return standardise_backward(z, sigma, grad_output * slope)
