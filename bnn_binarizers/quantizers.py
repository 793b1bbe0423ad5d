"""Quantizers beyond {-1, +1}: the step to {0, 1}, the ternary sign and DoReFa's k bits.

Each is trained through a straight-through estimator. None of them runs in the packed
XNOR-popcount runtime, which executes {-1, +1} operands only.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import PositiveFloat, PositiveInt

from bnn_binarizers.functional import round_straight_through, straight_through
from bnn_core.binarizer import INPUT, WEIGHT, Binarizer, ValueSet


def _clipped(x: torch.Tensor, clip_value: float | None) -> torch.Tensor:
    if clip_value is None:
        return torch.ones_like(x)
    return (x.abs() <= clip_value).to(x.dtype)


class SteHeaviside(Binarizer):
    """Heaviside step with the straight-through estimator (Larq ``ste_heaviside``).

    Forward ``1 if x > 0 else 0``: values in {0, 1} (1 bit, unipolar). Backward: the
    clipped straight-through estimator, 1 where ``|x| <= clip_value`` (everywhere if
    None). Option ``clip_value`` (default 1.0). No learnable parameters. Not packable:
    the packed runtime's XNOR-popcount needs {-1, +1} operands.
    Larq, ``larq.quantizers.SteHeaviside``.
    """

    roles = frozenset({INPUT, WEIGHT})
    value_set = ValueSet.UNIPOLAR
    bit_width = 1
    packable = False
    paper = "Larq: an open-source library for training binarized neural networks, JOSS 2020"

    def __init__(self, clip_value: PositiveFloat | None = 1.0) -> None:
        super().__init__()
        self.clip_value = clip_value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = (x > 0).to(x.dtype)
        return straight_through(x, values, _clipped(x.detach(), self.clip_value))

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return _clipped(x, self.clip_value)

    def extra_repr(self) -> str:
        return f"clip_value={self.clip_value}"


class SteTern(Binarizer):
    """Ternarization with the straight-through estimator (Larq ``ste_tern``; TWN).

    Forward ``+1 if x > t``, ``0 if |x| <= t``, ``-1 if x < -t``: values in {-1, 0, +1}
    (2 bits). The threshold ``t`` is ``threshold_value`` (default 0.05), or with
    ``ternary_weight_networks`` the TWN estimate ``t = 0.7 mean(|x|)`` over the whole
    tensor (detached). Backward: the clipped straight-through estimator, 1 where
    ``|x| <= clip_value`` (everywhere if None). No learnable parameters. Not packable
    (ternary operands). Li, Zhang & Liu, Ternary Weight Networks, arXiv:1605.04711, 2016.
    """

    roles = frozenset({INPUT, WEIGHT})
    value_set = ValueSet.TERNARY
    bit_width = 2
    packable = False
    paper = "Li, Zhang & Liu, Ternary Weight Networks, arXiv:1605.04711, 2016"

    def __init__(
        self,
        threshold_value: PositiveFloat = 0.05,
        ternary_weight_networks: bool = False,
        clip_value: PositiveFloat | None = 1.0,
    ) -> None:
        super().__init__()
        self.threshold_value = threshold_value
        self.ternary_weight_networks = ternary_weight_networks
        self.clip_value = clip_value

    def threshold(self, x: torch.Tensor) -> torch.Tensor:
        """The ternarization threshold for ``x`` (a 0-d tensor)."""
        if self.ternary_weight_networks:
            return 0.7 * x.detach().abs().mean()
        return torch.tensor(self.threshold_value, dtype=x.dtype, device=x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.threshold(x)
        values = (x > t).to(x.dtype) - (x < -t).to(x.dtype)
        return straight_through(x, values, _clipped(x.detach(), self.clip_value))

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return _clipped(x, self.clip_value)

    def extra_repr(self) -> str:
        if self.ternary_weight_networks:
            return f"threshold=0.7*mean|x|, clip_value={self.clip_value}"
        return f"threshold_value={self.threshold_value}, clip_value={self.clip_value}"


class DoReFaQuantizer(Binarizer):
    """DoReFa-Net's k-bit quantizer (Larq ``dorefa``), for activations or weights.

    With ``n = 2^k - 1`` levels and ``quantize(u) = round(u n) / n``:

    * ``mode="activations"``: ``quantize(clip(x, 0, 1))``, values ``{0, 1/n, ..., 1}``;
      backward 1 where ``0 <= x <= 1``, else 0 (identity through the rounding).
    * ``mode="weights"``: ``2 quantize(tanh(W) / (2 max|tanh(W)|) + 1/2) - 1`` with the
      maximum over the whole tensor, values ``{-1, -1 + 2/n, ..., 1}``; backward:
      identity through the rounding, autograd through ``tanh`` and the maximum.

    Options ``k_bit`` (default 2) and ``mode`` (default ``"activations"``, as in Larq; set
    ``mode: weights`` in a weight slot). No learnable parameters. Output k bits; not
    packable (multi-bit operands). The class's ``bit_width`` is the default ``k_bit``;
    an instance reports its own.
    Zhou et al., DoReFa-Net, arXiv:1606.06160, 2016.
    """

    roles = frozenset({INPUT, WEIGHT})
    value_set = ValueSet.KBIT
    bit_width = 2
    packable = False
    paper = "Zhou et al., DoReFa-Net, arXiv:1606.06160, 2016"

    def __init__(
        self, k_bit: PositiveInt = 2, mode: Literal["activations", "weights"] = "activations"
    ) -> None:
        super().__init__()
        self.k_bit = k_bit
        self.mode = mode
        self.bit_width = k_bit  # type: ignore[misc]
        self.levels = 2**k_bit - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "activations":
            inside = ((x >= 0) & (x <= 1)).to(x.dtype)
            values = torch.round(x.detach().clamp(0, 1) * self.levels) / self.levels
            return straight_through(x, values, inside)
        t = torch.tanh(x)
        unit = t / (2 * t.abs().amax().clamp_min(torch.finfo(x.dtype).tiny)) + 0.5
        return 2 * round_straight_through(unit, self.levels) - 1

    def expected_grad(self, x: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        if self.mode == "activations":
            return grad_output * ((x >= 0) & (x <= 1)).to(x.dtype)
        # out_i = 2 u_i - 1 with u_i = t_i / (2 m) + 1/2, m = max_j |t_j|; the gradient of
        # the maximum is shared equally by the entries that attain it.
        t = torch.tanh(x)
        m = t.abs().amax().clamp_min(torch.finfo(x.dtype).tiny)
        at_max = (t.abs() == m).to(x.dtype)
        dm_dt = torch.sign(t) * at_max / at_max.sum().clamp_min(1)
        grad_t = grad_output / m - (grad_output * t).sum() / m**2 * dm_dt
        return grad_t * (1 - t.square())

    def extra_repr(self) -> str:
        return f"k_bit={self.k_bit}, mode={self.mode!r}"
