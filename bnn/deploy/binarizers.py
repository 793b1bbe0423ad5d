"""What a binary layer computes, in the packed runtime's terms.

The runtime computes ``y = scale[o] * dot + bias[o]``, where ``dot`` is the sum over
the window of ``sign(x + threshold[c]) * sign(w)`` (both in {-1, +1}). This module
derives the four parts from a prepared binary layer, each binarizer through the
:class:`~bnn_core.lowering.BinarizerLowering` registered for its class:

* the input binarizer's lowering gives ``threshold`` (``sign(x + t)``): 0 for the sign
  binarizers, RSign's learned per-channel shift for ``input_bias``;
* the weight binarizer is evaluated once and must give one magnitude per output
  channel times a sign (``xnor_weight``'s mean-|W| alpha, Bi-Real's magnitude-aware
  scale, ReCU's learned alpha, ...): the signs become the 1-bit weights, the magnitude
  a factor of ``scale``;
* the output binarizer's lowering gives a per-channel scale and shift of the layer
  output (``basic_scale``); ``factorised_scale``'s spatial factors become a separate node;
* the layer's own bias joins ``bias``.

Each derivation is checked on a probe input, so a binarizer that declares itself
packable, or a lowering that claims a fold, but computes something else is refused with
the layer's name and the reason instead of being exported wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bnn.deploy.errors import ExportError
from bnn.deploy.lowerings import HOW_TO_ADD, Lowerings
from bnn_core.layers import SLOTS, is_binary_layer
from bnn_core.lowering import BinarizerLowering, ChannelAffine, LoweringError
from bnn_core.registry import qualified_name

#: Relative tolerance for "one magnitude per output channel" and for probe checks.
RTOL = 1e-5
#: What each slot needs of its binarizer's lowering, and how the role is called.
_ROLES = {
    "activation_pre_process": ("threshold", "an input binarizer (threshold)"),
    "weight_pre_process": ("weight", "a weight binarizer (weight)"),
    "activation_post_process": ("output", "an output binarizer (output)"),
}


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


def fold_binary_layer(
    name: str, layer: nn.Module, lowerings: Lowerings | None = None
) -> BinaryFold:
    """The runtime form of binary ``layer`` (called ``name`` in the model), its
    binarizers folded through ``lowerings`` (the registered ones by default); an
    :class:`ExportError` naming the layer when it has none."""
    if not (is_binary_layer(layer) and isinstance(layer, nn.Conv2d | nn.Linear)):
        raise ExportError(
            f"layer {name} ({type(layer).__name__}): the packed runtime executes binary "
            "2-D convolutions (BinaryConv2d) and linear layers (BinaryLinear) only"
        )
    _check_declared(name, layer)
    folds = _binarizer_lowerings(name, layer, lowerings or Lowerings())
    if isinstance(layer, nn.Conv2d):
        _check_conv(name, layer)
    with torch.no_grad():
        threshold = _input_threshold(name, layer, folds["activation_pre_process"])
        signs, weight_scale = _weight_signs(name, layer)
        out_scale, out_shift, spatial = _output_affine(
            name, layer, folds["activation_post_process"]
        )
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


def _channels(layer: nn.Module, conv: str, linear: str) -> int:
    return int(getattr(layer, conv if isinstance(layer, nn.Conv2d) else linear))


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


def _binarizer_lowerings(
    name: str, layer: nn.Module, lowerings: Lowerings
) -> dict[str, BinarizerLowering | None]:
    """The lowering of each slot's binarizer (None for an identity output), checked to
    fold the binarizer in the role its slot gives it."""
    found: dict[str, BinarizerLowering | None] = {}
    for slot in SLOTS:
        binarizer = getattr(layer, slot)
        if slot == "activation_post_process" and isinstance(binarizer, nn.Identity):
            found[slot] = None
            continue
        lowering = lowerings.binarizer(type(binarizer))
        field, role = _ROLES[slot]
        where = f"layer {name}: its {slot} {binarizer_label(binarizer)}"
        if lowering is None:
            raise ExportError(
                f"{where} has no export lowering (none is registered for "
                f"{qualified_name(type(binarizer))} or a base class of it), so the exporter "
                "does not know how it folds into the packed layer. A binarizer's lowering is "
                f"a bnn_core.lowering.BinarizerLowering. {HOW_TO_ADD}"
            )
        if not getattr(lowering, field):
            raise ExportError(
                f"{where} has an export lowering that does not fold it as {role}; its "
                f"lowering {lowering!r} leaves that role unset"
            )
        found[slot] = lowering
    return found


def _check_conv(name: str, layer: nn.Conv2d) -> None:
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


def _vector(name: str, where: str, what: str, value: object, size: int) -> np.ndarray:
    """``value`` (what a lowering returned) as a float64 vector of ``size`` values."""
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size != size:
        raise ExportError(
            f"layer {name}: the lowering of its {where} gave a {what} of {array.size} values, "
            f"not one per channel ({size})"
        )
    return array


def _call_lowering(name: str, slot: str, fold: object, *args: object) -> object:
    """Run a lowering's fold function; its refusal becomes an error naming the layer."""
    try:
        return fold(*args)  # type: ignore[operator]
    except LoweringError as exc:
        raise ExportError(f"layer {name}: its {slot} cannot be exported: {exc}") from None


def _probe_input(layer: nn.Module, channels: int, shift: np.ndarray | None) -> torch.Tensor:
    """Random values with exact zeros and exact ``-threshold`` entries (the edges a
    sign may get wrong), shaped for the layer: ``[4, C, 3, 3]`` or ``[4, C]``."""
    generator = torch.Generator().manual_seed(0)
    dtype = layer.weight.dtype
    spatial = (3, 3) if isinstance(layer, nn.Conv2d) else ()
    x = torch.randn((4, channels, *spatial), generator=generator, dtype=dtype) * 2
    x[1] = 0
    if shift is not None:
        x[2] = -torch.as_tensor(shift, dtype=dtype).reshape(channels, *[1] * len(spatial))
    return x


def _evaluated(binarizer: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``binarizer(*inputs)`` in eval mode (its mode restored)."""
    training = binarizer.training
    binarizer.eval()
    try:
        return binarizer(*inputs)
    finally:
        binarizer.train(training)


def _input_threshold(
    name: str, layer: nn.Module, lowering: BinarizerLowering | None
) -> np.ndarray | None:
    slot = "activation_pre_process"
    binarizer = getattr(layer, slot)
    channels = _channels(layer, "in_channels", "in_features")
    assert lowering is not None and lowering.threshold is not None
    folded = _call_lowering(name, slot, lowering.threshold, binarizer, channels)
    threshold = None if folded is None else _vector(name, slot, "threshold", folded, channels)
    x = _probe_input(layer, channels, threshold)
    shape = [1, channels] + [1] * (x.dim() - 2)
    shift = 0 if threshold is None else torch.as_tensor(threshold, dtype=x.dtype).reshape(shape)
    expected = torch.where(x + shift >= 0, 1.0, -1.0).to(x.dtype)
    got = _evaluated(binarizer, x)
    if got.shape != expected.shape or not torch.equal(got, expected):
        zero = bool((got == 0).any())
        detail = (
            "it maps some inputs to 0 (ternary, such as sign_of_zero=0)"
            if zero
            else "its output differs from sign(x + per-channel threshold) on a probe input"
        )
        raise ExportError(
            f"layer {name}: its {slot} {binarizer_label(binarizer)} cannot run "
            f"in the packed runtime: {detail}"
        )
    return threshold


def _weight_signs(name: str, layer: nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
    binarizer = layer.weight_pre_process
    binary = _evaluated(binarizer, layer.weight).detach().double()
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
    name: str, layer: nn.Module, lowering: BinarizerLowering | None
) -> tuple[np.ndarray | None, np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
    """``(scale, shift, spatial factors)`` of the output binarizer, checked on a probe."""
    if lowering is None:
        return None, None, None
    slot = "activation_post_process"
    binarizer = getattr(layer, slot)
    channels = _channels(layer, "out_channels", "out_features")
    assert lowering.output is not None
    affine = _call_lowering(name, slot, lowering.output, binarizer, channels)
    if not isinstance(affine, ChannelAffine):
        raise ExportError(
            f"layer {name}: the lowering of its {slot} returned {type(affine).__name__}, "
            "not a bnn_core.lowering.ChannelAffine"
        )
    scale = None if affine.scale is None else _vector(name, slot, "scale", affine.scale, channels)
    shift = None if affine.shift is None else _vector(name, slot, "shift", affine.shift, channels)
    spatial = _spatial(name, layer, affine.spatial)
    _check_affine(name, layer, binarizer, scale, shift, spatial)
    return scale, shift, spatial


def _spatial(
    name: str, layer: nn.Module, spatial: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    if spatial is None:
        return None
    if not isinstance(layer, nn.Conv2d) or len(spatial) != 2:
        raise ExportError(
            f"layer {name}: a spatial output scale needs a 2-D convolution and two factors "
            "(rows, cols)"
        )
    rows, cols = (np.asarray(f, dtype=np.float64).reshape(-1) for f in spatial)
    return rows, cols


def _check_affine(
    name: str,
    layer: nn.Module,
    binarizer: nn.Module,
    scale: np.ndarray | None,
    shift: np.ndarray | None,
    spatial: tuple[np.ndarray, np.ndarray] | None,
) -> None:
    """Refuse an output fold that differs from the binarizer on a random probe."""
    channels = _channels(layer, "out_channels", "out_features")
    sizes: tuple[int, ...] = ()
    if isinstance(layer, nn.Conv2d):
        sizes = (3, 3) if spatial is None else (min(3, spatial[0].size), min(3, spatial[1].size))
    dtype = layer.weight.dtype
    generator = torch.Generator().manual_seed(1)
    probe = torch.randn((4, channels, *sizes), generator=generator, dtype=dtype)
    inputs = _channels(layer, "in_channels", "in_features")
    before = torch.zeros((4, inputs, *sizes), dtype=dtype)
    takes_input = getattr(layer, "_post_takes_input", True)
    got = _evaluated(binarizer, probe, before) if takes_input else _evaluated(binarizer, probe)
    along = [1, channels] + [1] * len(sizes)
    expected = probe.double()
    if scale is not None:
        expected = expected * torch.from_numpy(scale).reshape(along)
    if shift is not None:
        expected = expected + torch.from_numpy(shift).reshape(along)
    if spatial is not None:
        rows, cols = (torch.from_numpy(f[:n]) for f, n in zip(spatial, sizes, strict=True))
        expected = expected * (rows[:, None] * cols[None, :])
    if got.shape != expected.shape or not torch.allclose(
        got.double(), expected, rtol=1e-4, atol=1e-6
    ):
        raise ExportError(
            f"layer {name}: its activation_post_process {binarizer_label(binarizer)} does not "
            "compute the per-channel scale and shift its lowering declares, which is all the "
            "packed runtime folds into a binary layer"
        )
