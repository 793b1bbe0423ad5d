"""Binary layer wrappers: float layers whose input, weight and output pass through binarizers.

Each binary class subclasses its float class, so it keeps the same Parameters (the
very same objects: optimizer state survives a swap), the same state-dict keys, and
works wherever the float layer did. The binarizers are submodules named as in the
seed library, ``activation_pre_process``, ``weight_pre_process`` and
``activation_post_process``, so their parameters add keys such as
``activation_pre_process.bias``.

A plugin adds a layer type by subclassing :class:`BinaryLayerMixin` together with the
float class, implementing :meth:`BinaryLayerMixin.binary_forward`, and registering the
pair through the ``bnn_register_layers`` hook; :func:`layer_map` is the resulting swap map.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bnn_core.binarizer import forward_takes_two
from bnn_core.plugins import REGISTRIES

if TYPE_CHECKING:
    from bnn_core.bconfig import BConfig

SLOTS = ("activation_pre_process", "weight_pre_process", "activation_post_process")
_CONTAINERS = (dict, set, list)


class BinaryLayerMixin:
    """Behaviour shared by every binary layer; mixed in before the float class."""

    bconfig: BConfig
    activation_pre_process: nn.Module
    weight_pre_process: nn.Module
    activation_post_process: nn.Module
    _post_takes_input: bool
    _FLOAT_MODULE: ClassVar[type[nn.Module]]

    @classmethod
    def from_float(cls, module: nn.Module, bconfig: BConfig) -> nn.Module:
        """Wrap ``module`` (a float layer, or a binary one being re-prepared) sharing its
        Parameters. A binarizer whose class is unchanged keeps its learned state."""
        if type(module) not in (cls._FLOAT_MODULE, cls):
            raise TypeError(
                f"{cls.__name__} wraps {cls._FLOAT_MODULE.__name__}, got {type(module)}"
            )
        previous = {s: getattr(module, s) for s in SLOTS} if isinstance(module, cls) else {}
        binary = _shallow_copy(module, cls)
        for slot in SLOTS:
            binary._modules.pop(slot, None)
        pads = any(getattr(module, "_reversed_padding_repeated_twice", ()))
        if bconfig.pad_value and pads and getattr(module, "padding_mode", "zeros") != "zeros":
            raise ValueError(
                f"pad_value={bconfig.pad_value} needs padding_mode='zeros', "
                f"not {module.padding_mode!r}"
            )
        binary.bconfig = bconfig
        reference = module.weight
        for slot in SLOTS:
            built = bconfig.factory(slot).build(binary)
            built = built.to(device=reference.device, dtype=reference.dtype)
            _carry_state(previous.get(slot), built)
            built.train(module.training)
            binary.add_module(slot, built)
        binary._post_takes_input = forward_takes_two(binary.activation_post_process)
        return binary

    def to_float(self) -> nn.Module:
        """The float twin of this layer, sharing its Parameters (binarizers dropped)."""
        float_layer = _shallow_copy(self, self._FLOAT_MODULE)
        for slot in SLOTS:
            float_layer._modules.pop(slot, None)
        float_layer.__dict__.pop("bconfig", None)
        float_layer.__dict__.pop("_post_takes_input", None)
        return float_layer

    def binary_forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The float layer's computation on already binarized ``x`` and ``weight``."""
        raise NotImplementedError

    def binarized_weight(self) -> torch.Tensor:
        """``weight_pre_process(weight)``. In evaluation without autograd the result is
        cached until the weight or the binarizer's tensors change (their version
        counters, storage, device or dtype), so inference does not binarize the same
        weights again at every call."""
        weight: torch.Tensor = self.weight  # type: ignore[attr-defined]
        if self.training or torch.is_grad_enabled():  # type: ignore[attr-defined]
            self.__dict__.pop("_weight_cache", None)
            return self.weight_pre_process(weight)
        tensors = [
            weight,
            *self.weight_pre_process.parameters(),
            *self.weight_pre_process.buffers(),
        ]
        key = tuple((t.data_ptr(), t._version, t.device, t.dtype) for t in tensors)
        cached = self.__dict__.get("_weight_cache")
        if cached is None or cached[0] != key:
            cached = (key, self.weight_pre_process(weight))
            self.__dict__["_weight_cache"] = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        state.pop("_weight_cache", None)
        return state

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        x_binary = self.activation_pre_process(x)
        out = self.binary_forward(x_binary, self.binarized_weight(), *args, **kwargs)
        if self._post_takes_input:
            return self.activation_post_process(out, x)
        return self.activation_post_process(out)


def _shallow_copy(module: nn.Module, cls: type) -> Any:
    """A new ``cls`` instance sharing ``module``'s Parameters, buffers and submodules."""
    new = cls.__new__(cls)
    new.__dict__.update(
        {k: copy.copy(v) if isinstance(v, _CONTAINERS) else v for k, v in module.__dict__.items()}
    )
    return new


def _carry_state(old: nn.Module | None, new: nn.Module) -> None:
    """Copy learned state from the binarizer a layer had before, when it is compatible."""
    if old is None or type(old) is not type(new):
        return
    old_state, new_state = old.state_dict(), new.state_dict()
    if old_state.keys() == new_state.keys() and all(
        old_state[k].shape == new_state[k].shape for k in old_state
    ):
        new.load_state_dict(old_state)


class BinaryLinear(BinaryLayerMixin, nn.Linear):
    """``nn.Linear`` on binarized input and weight."""

    _FLOAT_MODULE = nn.Linear

    def binary_forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight, self.bias)


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class _BinaryConvNd(BinaryLayerMixin):
    def binary_forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        conv: Any = self
        pad_value = self.bconfig.pad_value
        if not pad_value or not any(conv._reversed_padding_repeated_twice):
            return conv._conv_forward(x, weight, conv.bias)
        if conv.padding_mode != "zeros":
            raise ValueError(
                f"pad_value={pad_value} needs padding_mode='zeros', not {conv.padding_mode!r}"
            )
        padded = F.pad(x, conv._reversed_padding_repeated_twice, value=float(pad_value))
        function = _CONV[len(conv.kernel_size)]
        return function(padded, weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


class BinaryConv1d(_BinaryConvNd, nn.Conv1d):
    """``nn.Conv1d`` on binarized input and weight (grouped and depthwise included)."""

    _FLOAT_MODULE = nn.Conv1d


class BinaryConv2d(_BinaryConvNd, nn.Conv2d):
    """``nn.Conv2d`` on binarized input and weight (grouped and depthwise included)."""

    _FLOAT_MODULE = nn.Conv2d


class BinaryConv3d(_BinaryConvNd, nn.Conv3d):
    """``nn.Conv3d`` on binarized input and weight (grouped and depthwise included)."""

    _FLOAT_MODULE = nn.Conv3d


class _BinaryConvTransposeNd(BinaryLayerMixin):
    _conv_transpose: ClassVar[Any]
    _spatial_dims: ClassVar[int]

    def binary_forward(
        self, x: torch.Tensor, weight: torch.Tensor, output_size: list[int] | None = None
    ) -> torch.Tensor:
        output_padding = self._output_padding(  # type: ignore[attr-defined]
            x,
            output_size,
            self.stride,
            self.padding,
            self.kernel_size,  # type: ignore[attr-defined]
            self._spatial_dims,
            self.dilation,  # type: ignore[attr-defined]
        )
        return type(self)._conv_transpose(
            x,
            weight,
            self.bias,
            self.stride,
            self.padding,  # type: ignore[attr-defined]
            output_padding,
            self.groups,
            self.dilation,  # type: ignore[attr-defined]
        )


class BinaryConvTranspose1d(_BinaryConvTransposeNd, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` on binarized input and weight."""

    _FLOAT_MODULE = nn.ConvTranspose1d
    _conv_transpose = staticmethod(F.conv_transpose1d)
    _spatial_dims = 1


class BinaryConvTranspose2d(_BinaryConvTransposeNd, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` on binarized input and weight."""

    _FLOAT_MODULE = nn.ConvTranspose2d
    _conv_transpose = staticmethod(F.conv_transpose2d)
    _spatial_dims = 2


class BinaryConvTranspose3d(_BinaryConvTransposeNd, nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` on binarized input and weight."""

    _FLOAT_MODULE = nn.ConvTranspose3d
    _conv_transpose = staticmethod(F.conv_transpose3d)
    _spatial_dims = 3


def is_binary_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a binary layer (of any registered type)."""
    return isinstance(module, BinaryLayerMixin)


def layer_map() -> dict[type, type]:
    """The module-swap map of the registered layers, ``{float class: binary class}``,
    binary classes mapping to themselves so that an already binarized model can be
    prepared again. Two plugins claiming the same float layer type is an error naming both."""
    mapping: dict[type, type] = {}
    for float_layer, binary in REGISTRIES["layer"].type_map("float_layer").items():
        mapping[float_layer] = binary
        mapping[binary] = binary
    return mapping
