"""What a binary layer computes, in the packed runtime's terms.

The runtime computes ``y = scale[o] * dot + bias[o]``, where ``dot`` is the sum over
the window of ``sign(x + threshold[c]) * sign(w)`` (both in {-1, +1}). This module
derives the four parts from a prepared binary layer:

* the input binarizer becomes ``threshold`` (``sign(x + t)``): 0 for the sign
  binarizers, RSign's learned per-channel shift for ``input_bias``;
* the weight binarizer is evaluated once and must give one magnitude per output
  channel times a sign (``xnor_weight``'s mean-|W| alpha, Bi-Real's magnitude-aware
  scale, ReCU's learned alpha, ...): the signs become the 1-bit weights, the magnitude
  a factor of ``scale``;
* the output binarizer must be a per-channel scale and shift of the layer output
  (``basic_scale``); ``factorised_scale``'s spatial factors become a separate node;
* the layer's own bias joins ``bias``.

Each derivation is checked on a probe input, so a binarizer that declares itself
packable but computes something else is refused with the layer's name and the reason
instead of being exported wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bnn.deploy.errors import ExportError
from bnn_binarizers.learnable import BasicScaleBinarizer, InputBiasBinarizer
from bnn_binarizers.scaled import FactorisedScaleBinarizer
from bnn_core.layers import SLOTS, BinaryConv2d, BinaryLinear

#: Relative tolerance for "one magnitude per output channel" and for probe checks.
RTOL = 1e-5


@dataclass
class BinaryFold:
    """A binary layer in the runtime's terms (float64 vectors; ``None`` = neutral)."""

    signs: np.ndarray
    threshold: np.ndarray | None
    scale: np.ndarray | None
    bias: np.ndarray | None
    derived_scale: bool
    spatial: tuple[np.ndarray, np.ndarray] | None


def binarizer_label(binarizer: nn.Module) -> str:
    """The registry name of a binarizer's class, else its class name."""
    from bnn_core.registries import REGISTRIES

    return REGISTRIES["binarizer"].name_of(type(binarizer)) or type(binarizer).__name__


def fold_binary_layer(name: str, layer: nn.Module) -> BinaryFold:
    """The runtime form of binary ``layer`` (called ``name`` in the model); an
    :class:`ExportError` naming the layer when it has none."""
    if not isinstance(layer, BinaryConv2d | BinaryLinear):
        raise ExportError(
            f"layer {name} ({type(layer).__name__}): the packed runtime executes binary "
            "2-D convolutions (BinaryConv2d) and linear layers (BinaryLinear) only"
        )
    _check_declared(name, layer)
    if isinstance(layer, BinaryConv2d):
        _check_conv(name, layer)
    with torch.no_grad():
        threshold = _input_threshold(name, layer)
        signs, weight_scale = _weight_signs(name, layer)
        out_scale, out_shift, spatial = _output_affine(name, layer)
    scale = _product(weight_scale, out_scale)
    bias = None
    if layer.bias is not None:
        bias = layer.bias.detach().double().numpy()
        bias = bias * out_scale if out_scale is not None else bias
    if out_shift is not None:
        bias = out_shift if bias is None else bias + out_shift
    derived = (
        weight_scale is not None
        and out_scale is None
        and not any(True for _ in layer.weight_pre_process.parameters())
    )
    return BinaryFold(signs, threshold, scale, bias, derived, spatial)


def _product(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a * b


def _check_declared(name: str, layer: nn.Module) -> None:
    for slot in SLOTS:
        binarizer = getattr(layer, slot)
        if slot == "activation_post_process" and isinstance(binarizer, nn.Identity):
            continue
        if not getattr(binarizer, "packable", False):
            value_set = getattr(binarizer, "value_set", "undeclared")
            raise ExportError(
                f"layer {name}: its {slot} {binarizer_label(binarizer)} is not packable (it "
                f"declares packable=False; output values {value_set}): the packed runtime "
                "executes {-1, +1} inputs and weights with per-channel thresholds and scales "
                "only. Keep this layer float, or binarize it with packable binarizers "
                "(`bnn list binarizers` shows which are)"
            )


def _check_conv(name: str, layer: BinaryConv2d) -> None:
    if tuple(layer.dilation) != (1, 1):
        raise ExportError(
            f"layer {name}: dilation {tuple(layer.dilation)} is not supported by the packed "
            "kernels (dilation 1 only)"
        )
    if layer.padding_mode != "zeros":
        raise ExportError(
            f"layer {name}: padding_mode {layer.padding_mode!r} is not supported by the packed "
            "kernels (constant padding only)"
        )
    left, right, top, bottom = layer._reversed_padding_repeated_twice
    if left != right or top != bottom:
        raise ExportError(
            f"layer {name}: asymmetric padding is not supported by the packed kernels"
        )


def conv_padding(layer: nn.Conv2d) -> list[int]:
    """The symmetric ``[pad_h, pad_w]`` of a 2-D convolution (also for ``padding='same'``)."""
    left, _, top, _ = layer._reversed_padding_repeated_twice
    return [int(top), int(left)]


def _probe_input(layer: nn.Module, channels: int, shift: np.ndarray | None) -> torch.Tensor:
    """Random values with exact zeros and exact ``-threshold`` entries (the edges a
    sign may get wrong), shaped for the layer: ``[4, C, 3, 3]`` or ``[4, C]``."""
    generator = torch.Generator().manual_seed(0)
    dtype = layer.weight.dtype
    spatial = (3, 3) if isinstance(layer, BinaryConv2d) else ()
    x = torch.randn((4, channels, *spatial), generator=generator, dtype=dtype) * 2
    x[1] = 0
    if shift is not None:
        x[2] = -torch.as_tensor(shift, dtype=dtype).reshape(channels, *[1] * len(spatial))
    return x


def _input_threshold(name: str, layer: nn.Module) -> np.ndarray | None:
    binarizer = layer.activation_pre_process
    channels = layer.in_channels if isinstance(layer, BinaryConv2d) else layer.in_features
    threshold = None
    if isinstance(binarizer, InputBiasBinarizer):
        threshold = binarizer.bias.detach().double().reshape(-1).numpy()
    x = _probe_input(layer, channels, threshold)
    shape = [1, channels] + [1] * (x.dim() - 2)
    shift = 0 if threshold is None else torch.as_tensor(threshold, dtype=x.dtype).reshape(shape)
    expected = torch.where(x + shift >= 0, 1.0, -1.0).to(x.dtype)
    training = binarizer.training
    binarizer.eval()
    try:
        got = binarizer(x)
    finally:
        binarizer.train(training)
    if got.shape != expected.shape or not torch.equal(got, expected):
        zero = bool((got == 0).any())
        detail = (
            "it maps some inputs to 0 (ternary, such as sign_of_zero=0)"
            if zero
            else "its output differs from sign(x + per-channel threshold) on a probe input"
        )
        raise ExportError(
            f"layer {name}: its activation_pre_process {binarizer_label(binarizer)} cannot run "
            f"in the packed runtime: {detail}"
        )
    return threshold


def _weight_signs(name: str, layer: nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
    binarizer = layer.weight_pre_process
    training = binarizer.training
    binarizer.eval()
    try:
        binary = binarizer(layer.weight).detach().double()
    finally:
        binarizer.train(training)
    flat = binary.reshape(binary.shape[0], -1)
    magnitude = flat.abs().amax(dim=1)
    spread = (flat.abs() - magnitude[:, None]).abs().amax(dim=1)
    bad = torch.nonzero(spread > RTOL * magnitude.clamp_min(1e-30)).flatten()
    if bad.numel():
        channel = int(bad[0])
        values = torch.unique(flat[channel].abs())[:4].tolist()
        shown = ", ".join(f"{v:.4g}" for v in values) + (", ..." if len(values) == 4 else "")
        raise ExportError(
            f"layer {name}: its weight_pre_process {binarizer_label(binarizer)} gives output "
            f"channel {channel} weights of several magnitudes ({shown}); the packed runtime "
            "stores one sign per weight and one scale per output channel"
        )
    positive = (binary >= 0).numpy()
    if positive.ndim == 4:
        positive = positive.transpose(0, 2, 3, 1)
    scale = magnitude.numpy()
    return np.ascontiguousarray(positive), None if np.all(scale == 1.0) else scale


def _output_affine(
    name: str, layer: nn.Module
) -> tuple[np.ndarray | None, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
    """``(scale, shift, spatial factors)`` of the output binarizer."""
    binarizer = layer.activation_post_process
    if isinstance(binarizer, nn.Identity):
        return None, None, None
    if isinstance(binarizer, BasicScaleBinarizer):
        return binarizer.alpha.detach().double().reshape(-1).numpy(), None, None
    if isinstance(binarizer, FactorisedScaleBinarizer):
        factors = [f.detach().double().reshape(-1).numpy() for f in binarizer.spatial_alpha]
        channel = binarizer.alpha.detach().double().reshape(-1).numpy()
        if not factors:
            return channel, None, None
        if len(factors) != 2:
            raise ExportError(f"layer {name}: a factorised scale needs 2 spatial axes here")
        return channel, None, (factors[0], factors[1])
    return _probe_affine(name, layer, binarizer)


def _probe_affine(
    name: str, layer: nn.Module, binarizer: nn.Module
) -> tuple[np.ndarray | None, np.ndarray | None, None]:
    """Measure an unknown output binarizer as ``a * y + c`` per channel, and check it."""
    channels = layer.out_channels if isinstance(layer, BinaryConv2d) else layer.out_features
    spatial = (3, 3) if isinstance(layer, BinaryConv2d) else ()
    dtype = layer.weight.dtype
    inputs = layer.in_channels if isinstance(layer, BinaryConv2d) else layer.in_features
    before = torch.zeros((4, inputs, *spatial), dtype=dtype)
    takes_input = getattr(layer, "_post_takes_input", True)

    def apply(y: torch.Tensor) -> torch.Tensor:
        return binarizer(y, before) if takes_input else binarizer(y)

    zeros = torch.zeros((4, channels, *spatial), dtype=dtype)
    training = binarizer.training
    binarizer.eval()
    try:
        shift = apply(zeros)
        scale = apply(torch.ones_like(zeros)) - shift
        probe = torch.randn(zeros.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
        got = apply(probe)
    finally:
        binarizer.train(training)
    per_channel = [t.transpose(0, 1).reshape(channels, -1) for t in (scale, shift)]
    uniform = all(
        torch.allclose(t, t[:, :1].expand_as(t), rtol=RTOL, atol=1e-7) for t in per_channel
    )
    if not uniform or not torch.allclose(got, probe * scale + shift, rtol=1e-4, atol=1e-6):
        raise ExportError(
            f"layer {name}: its activation_post_process {binarizer_label(binarizer)} is not a "
            "per-channel scale and shift of the layer output, which is all the packed runtime "
            "folds into a binary layer"
        )
    a = per_channel[0][:, 0].double().numpy()
    c = per_channel[1][:, 0].double().numpy()
    return (None if np.all(a == 1) else a), (None if not np.any(c) else c), None
