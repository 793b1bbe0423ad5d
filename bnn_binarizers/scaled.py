"""Scales around the binary product: XNOR-Net's input scale and XNOR-Net++'s factorised
output scale."""

from __future__ import annotations

import torch
from pydantic import PositiveInt
from torch import nn

from bnn_binarizers.functional import ClippedIdentity, surrogate_sign
from bnn_binarizers.learnable import channel_shape, layer_channels, per_channel
from bnn_core.binarizer import INPUT, OUTPUT, Binarizer, ValueSet


def spatial_dims(module: nn.Module | None) -> int | None:
    """How many spatial axes the layer's activations have: 0 for a linear layer, 1-3 for
    a convolution (from its weight), ``None`` without a layer."""
    weight = getattr(module, "weight", None)
    return weight.dim() - 2 if isinstance(weight, torch.Tensor) else None


class ScaledInputBinarizer(Binarizer):
    """XNOR-Net's binary input with its scale ``K``: ``K * sign(x)``.

    ``K = mean(|x|)`` over the channel axis (axis 1 of a convolution's input, the last
    axis of a linear layer's; axis 1 without a layer), one value per sample and spatial
    position, detached. Backward: ``K`` times the clipped straight-through estimator
    (1 where ``|x| <= 1``). No options, no learnable parameters. Values: the signs are
    1 bit, but ``K`` varies per position, so the output is real-valued; not packable
    (a data-dependent per-pixel scale cannot be folded into the output transform).
    XNOR-Net averages ``K`` over each receptive field as well; use this binarizer with
    ``xnor_weight`` for the ``xnor`` method with its input scale.
    Rastegari et al., XNOR-Net, ECCV 2016.
    """

    roles = frozenset({INPUT})
    value_set = ValueSet.REAL
    bit_width = 1
    packable = False
    paper = "Rastegari et al., XNOR-Net, ECCV 2016"

    def __init__(self, module: nn.Module | None = None) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims(module)
        self._derivative = ClippedIdentity(1.0)

    def channel_axis(self, x: torch.Tensor) -> int:
        """The axis ``K`` averages over."""
        if self.spatial_dims is None:
            return 1 if x.dim() > 1 else 0
        return x.dim() - 1 - self.spatial_dims

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """``K``: ``mean(|x|)`` over the channel axis, kept broadcastable to ``x``."""
        return x.detach().abs().mean(dim=self.channel_axis(x), keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return surrogate_sign(x, self._derivative) * self.scale(x)

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() <= 1).to(x.dtype) * x.abs().mean(dim=self.channel_axis(x), keepdim=True)


class FactorisedScaleBinarizer(Binarizer):
    """XNOR-Net++'s factorised learned output scale: ``y * (alpha_c * alpha_h * alpha_w)``.

    One learnable factor per output channel (shape ``[1, C, 1, 1]``) and one per output
    position along each spatial axis (``[1, 1, H, 1]`` and ``[1, 1, 1, W]`` for a 2-D
    convolution; ``[1, 1, L]`` for 1-D, three factors for 3-D), all initialised to 1;
    a linear layer gets the channel factor only. The spatial factors need the output
    size: give it as ``output_size`` (``[H, W]``), or leave it unset to allocate
    ``max_size`` entries per axis (default 256) of which the first ``H`` (``W``) are used,
    so one binarizer serves any output up to that size (a larger one is an error).
    Sizes are fixed at construction, so the parameters exist before the optimizer is
    built. Backward by autograd (``d/dy`` is the product of the factors). Real-valued
    output; packable: the factors are learned constants, a fixed per-position scale
    the runtime multiplies into the output (not data-dependent).
    Bulat & Tzimiropoulos, XNOR-Net++, BMVC 2019.
    """

    roles = frozenset({OUTPUT})
    value_set = ValueSet.REAL
    packable = True
    paper = "Bulat & Tzimiropoulos, XNOR-Net++, BMVC 2019"

    def __init__(
        self,
        module: nn.Module | None = None,
        output_size: list[PositiveInt] | None = None,
        max_size: PositiveInt = 256,
    ) -> None:
        super().__init__()
        channels = layer_channels(module, "out_channels", "out_features")
        dims = spatial_dims(module) or 0
        if output_size is not None and len(output_size) != dims:
            raise ValueError(
                f"output_size needs {dims} value(s) for a {type(module).__name__}, "
                f"got {list(output_size)}"
            )
        sizes = list(output_size) if output_size is not None else [max_size] * dims
        self.alpha = nn.Parameter(torch.ones(channel_shape(module, channels)))
        self.spatial_alpha = nn.ParameterList(
            nn.Parameter(torch.ones([1, 1] + [size if j == i else 1 for j in range(dims)]))
            for i, size in enumerate(sizes)
        )

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """The product of the factors, cut to the spatial size of ``x``."""
        scale = per_channel(self.alpha, x)
        offset = x.dim() - self.alpha.dim()  # -1 for a convolution's unbatched output
        for i, factor in enumerate(self.spatial_alpha):
            factor = factor if offset == 0 else factor.squeeze(0)
            axis = 2 + i + offset
            size = x.shape[axis]
            if size > factor.shape[axis]:
                raise ValueError(
                    f"the output is {size} long on spatial axis {i}, but the factorised "
                    f"scale has {factor.shape[axis]} entries there; set output_size or a "
                    "larger max_size"
                )
            scale = scale * factor.narrow(axis, 0, size)
        return scale

    def forward(self, x_after: torch.Tensor, x_before: torch.Tensor | None = None) -> torch.Tensor:
        return x_after * self.scale(x_after)

    def expected_grad(self, x: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output * self.scale(x)

    def extra_repr(self) -> str:
        sizes = [list(f.shape) for f in self.spatial_alpha]
        return f"channels={list(self.alpha.shape)}, spatial={sizes}"
