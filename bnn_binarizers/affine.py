"""AdaBin: binarization onto an adaptive set ``{beta - alpha, beta + alpha}``.

Instead of {-1, +1}, each layer's activations and each output channel's weights take
two values with their own centre ``beta`` and half-distance ``alpha``, which fit
skewed or shifted distributions better than a symmetric pair.
"""

from __future__ import annotations

import torch
from torch import nn

from bnn_binarizers.functional import approx_sign_derivative, sign, surrogate_sign
from bnn_binarizers.progressive import EdeSign, ede_derivative
from bnn_binarizers.standardised import standardise, standardise_backward
from bnn_core.binarizer import INPUT, WEIGHT, Binarizer, ValueSet


class AdaBinActivation(Binarizer):
    """AdaBin's activation binarization with a learned centre and distance.

    Forward ``beta + alpha * sign((x - beta) / alpha)``: values in
    ``{beta - alpha, beta + alpha}``, with ``alpha`` (init 1) and ``beta`` (init 0) two
    learnable scalars per layer. Backward with respect to ``x``: Bi-Real's ApproxSign
    derivative at ``z = (x - beta) / alpha``, ``2 - 2|z|`` for ``|z| <= 1`` else 0 (the
    ``alpha`` of the output and of ``z`` cancel); ``alpha`` and ``beta`` get their
    gradients by autograd through the same surrogate. Two levels (1 bit each); the
    output is real-valued. Not packable: the packed runtime folds per-channel scales and
    thresholds, not the offset ``beta`` added to every binary input.
    Tu et al., AdaBin: Improving Binary Neural Networks with Adaptive Binary Sets,
    ECCV 2022.
    """

    roles = frozenset({INPUT})
    value_set = ValueSet.REAL
    bit_width = 1
    packable = False
    paper = (
        "Tu et al., AdaBin: Improving Binary Neural Networks with Adaptive Binary Sets, ECCV 2022"
    )

    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.beta = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.beta) / self.alpha
        return self.beta + self.alpha * surrogate_sign(z, approx_sign_derivative)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        z = ((x - self.beta) / self.alpha).abs()
        return torch.where(z <= 1, 2 - 2 * z, torch.zeros_like(z))


class AdaBinWeight(EdeSign):
    """AdaBin's weight binarization: each output channel onto ``{beta - alpha, beta + alpha}``.

    Forward ``beta + alpha * sign((W - beta) / alpha)`` with, per output channel,
    ``beta = mean(W)`` and ``alpha = sqrt(mean((W - beta)^2))`` (the biased standard
    deviation; 1e-5 is added under the root), so the pair keeps the channel's mean and
    spread. Backward: through ``alpha`` and ``beta`` by their formulas, and through the
    sign with IR-Net's error decay estimator ``k t (1 - tanh(t z)^2)`` (``t`` 0.1 -> 10,
    ``k = max(1 / t, 1)``, through ``on_progress``, as AdaBin trains). Two levels per
    channel (1 bit each); real-valued output. Not packable: the offset ``beta`` adds a
    data-dependent term (``beta`` times the window sum of the input) that the runtime
    does not compute.
    Tu et al., AdaBin: Improving Binary Neural Networks with Adaptive Binary Sets,
    ECCV 2022.
    """

    roles = frozenset({WEIGHT})
    value_set = ValueSet.REAL
    packable = False
    paper = (
        "Tu et al., AdaBin: Improving Binary Neural Networks with Adaptive Binary Sets, ECCV 2022"
    )

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        z, alpha = standardise(w, correction=0)
        beta = w.mean(dim=tuple(range(1, w.dim())), keepdim=True)
        return beta + alpha * surrogate_sign(z, self._derivative)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor | None:
        return None

    def expected_grad(self, w: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        # out = beta + alpha S(z): beta contributes mean(g), alpha contributes
        # z sum(g S) / n, and the sign contributes the standardisation's backward of
        # alpha g S'(z).
        z, alpha = standardise(w, correction=0)
        dims = tuple(range(1, w.dim()))
        count = w[0].numel()
        through_sign = standardise_backward(
            z, alpha, alpha * grad_output * ede_derivative(z, self.t, self.k), correction=0
        )
        through_beta = grad_output.mean(dim=dims, keepdim=True)
        through_alpha = z * (grad_output * sign(z)).sum(dim=dims, keepdim=True) / count
        return through_sign + through_beta + through_alpha
