"""Weight binarizers with an analytic per-output-channel scale (XNOR-Net, Bi-Real Net)."""

from __future__ import annotations

import torch
from pydantic import PositiveFloat

from bnn_binarizers.functional import ClippedIdentity, surrogate_sign
from bnn_core.binarizer import WEIGHT, Binarizer, ValueSet


def channel_mean_abs(w: torch.Tensor) -> torch.Tensor:
    """``mean(|W|)`` over every axis but the first (one value per output channel), kept
    broadcastable to ``W``; a plain abs/mean, much faster than an L1-norm reduction."""
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


class XNORWeightBinarizer(Binarizer):
    """XNOR-Net weight binarization: ``alpha * sign(W)``.

    With ``center_weights`` the weights are first centred by subtracting their mean over
    the input-channel axis (dim 1, as the seed did). With ``compute_alpha`` the signs are
    scaled by ``alpha = mean(|W|)`` per output channel (detached, as in the seed's fork);
    otherwise the output is in {-1, +1}. Backward: clipped straight-through estimator
    on the sign, times ``alpha``, through the centring. No learnable parameters;
    packable (the per-channel scale folds into the output transform).
    Rastegari et al., XNOR-Net, ECCV 2016.
    """

    roles = frozenset({WEIGHT})
    value_set = ValueSet.SCALED_BINARY
    bit_width = 1
    packable = True
    paper = "Rastegari et al., XNOR-Net, ECCV 2016"

    def __init__(self, compute_alpha: bool = True, center_weights: bool = False) -> None:
        super().__init__()
        self.compute_alpha = compute_alpha
        self.center_weights = center_weights
        self._derivative = ClippedIdentity(1.0)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.center_weights:
            w = w - w.mean(dim=1, keepdim=True)
        signs = surrogate_sign(w, self._derivative)
        if not self.compute_alpha:
            return signs
        return signs * channel_mean_abs(w).detach()

    def expected_grad(self, w: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        centred = w - w.mean(dim=1, keepdim=True) if self.center_weights else w
        grad = grad_output * (centred.abs() <= 1).to(w.dtype)
        if self.compute_alpha:
            grad = grad * centred.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
        if self.center_weights:
            grad = grad - grad.mean(dim=1, keepdim=True)
        return grad

    def extra_repr(self) -> str:
        return f"compute_alpha={self.compute_alpha}, center_weights={self.center_weights}"


class MagnitudeAwareSign(Binarizer):
    """Bi-Real Net's magnitude-aware weight sign (Larq ``magnitude_aware_sign``).

    Forward ``alpha * sign(W)`` with ``alpha = mean(|W|)`` per output channel (over every
    axis but the first), detached. Backward: ``alpha`` times the clipped
    straight-through estimator, 1 where ``|W| <= clip_value`` (everywhere if None).
    Option ``clip_value`` (default 1.0). No learnable parameters. Values
    ``alpha * {-1, +1}`` (1 bit); packable (the per-channel scale folds into the output
    transform). Liu et al., Bi-Real Net, ECCV 2018.
    """

    roles = frozenset({WEIGHT})
    value_set = ValueSet.SCALED_BINARY
    bit_width = 1
    packable = True
    paper = "Liu et al., Bi-Real Net, ECCV 2018"

    def __init__(self, clip_value: PositiveFloat | None = 1.0) -> None:
        super().__init__()
        self.clip_value = clip_value
        self._derivative = ClippedIdentity(clip_value)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return surrogate_sign(w, self._derivative) * channel_mean_abs(w).detach()

    def surrogate_grad(self, w: torch.Tensor) -> torch.Tensor:
        inside = torch.ones_like(w) if self.clip_value is None else (w.abs() <= self.clip_value)
        scale = w.abs().flatten(1).mean(dim=1).reshape([-1] + [1] * (w.dim() - 1))
        return inside.to(w.dtype) * scale

    def extra_repr(self) -> str:
        return f"clip_value={self.clip_value}"
