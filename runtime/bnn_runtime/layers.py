"""Binary convolution and linear layers prepared once and run many times.

Creating a layer validates its arguments and prepares the weights for the kernels
(blocked layout, per-channel transform, padding corrections) in the C library; calling
it only checks the input and runs. Inference engines (and :mod:`bnn_runtime.executor`)
keep one object per layer; :func:`bnn_runtime.kernels.binary_conv2d` is the one-shot
form. Without the compiled library the layers run the NumPy reference.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Sequence

import numpy as np

from bnn_runtime import _library, dispatch, reference

OUTPUTS = ("float", "packed")

IntPair = int | Sequence[int]


def _pair(v: IntPair, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        pair: tuple[int, ...] = (int(v), int(v))
    else:
        pair = tuple(int(i) for i in v)
    if len(pair) != 2 or min(pair) < minimum:
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {v!r}")
    return pair  # type: ignore[return-value]


def _vector(v: object, n: int, name: str, default: float | None) -> np.ndarray | None:
    """A contiguous float32 copy of v with n values (or the default filled, or None)."""
    if v is None:
        return None if default is None else np.full(n, default, dtype=np.float32)
    a = np.array(v, dtype=np.float32).reshape(-1)
    if a.shape != (n,):
        raise ValueError(f"{name} must have {n} values, got shape {np.shape(v)}")
    return a


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


class BinaryConv2d:
    """A binary 2-D convolution with its output transform fused.

    Args:
        weights_packed: uint64 [O, KH, KW, ceil(in_channels/groups/64)] (see
            :func:`bnn_runtime.kernels.pack_weights`).
        in_channels: C, the number of input channels.
        kernel_size: (KH, KW) or an int; checked against the weights when given.
        stride, padding: int or (height, width) pair.
        pad_value: 0 (zero padding: border taps contribute nothing), 1 or -1 (the
            binarized input is padded with that sign).
        groups: C and O must both be divisible by it (``groups == C`` is depthwise).
        scale, bias: float32 [O] (default 1 and 0): ``y = scale * dot + bias``.
        input_threshold: float32 [C] added before binarizing a float input (None: 0); a
            packed input is used as it is.
        output: ``"float"`` for float32 NHWC [N, Ho, Wo, O], ``"packed"`` for uint64
            [N, Ho, Wo, ceil(O/64)] with bit ``y + next_threshold >= 0``.
        next_threshold: float32 [O] or None (0); packed output only.
        slope, shift_in, shift_out: float32 [O] each, float output only: an activation
            fused after the output (and after the residual, see below),
            ``y = prelu(y + shift_in) + shift_out`` with PReLU's ``v > 0 ? v : slope * v``
            (ReActNet's RPReLU; PReLU without the shifts). None: no activation, or no
            shift.
        threads: worker threads (None: ``BNN_RUNTIME_THREADS`` / ``OMP_NUM_THREADS`` /
            all cores).

    The layer copies what it needs: later changes to the arrays passed here have no
    effect. Calling it with a float NHWC [N, H, W, C] or packed [N, H, W, ceil(C/64)]
    input returns the output described above; ``residual`` (float32 [N, Ho, Wo, O], float
    output only) is added to the output before the activation, as a shortcut connection
    does. Every fused step rounds as the separate float32 operations would.
    """

    def __init__(
        self,
        weights_packed: np.ndarray,
        *,
        in_channels: int,
        kernel_size: IntPair | None = None,
        stride: IntPair = 1,
        padding: IntPair = 0,
        pad_value: int = 0,
        groups: int = 1,
        scale: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        input_threshold: np.ndarray | None = None,
        output: str = "float",
        next_threshold: np.ndarray | None = None,
        slope: np.ndarray | None = None,
        shift_in: np.ndarray | None = None,
        shift_out: np.ndarray | None = None,
        threads: int | None = None,
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if next_threshold is not None and output != "packed":
            raise ValueError("next_threshold applies to packed output only")
        if slope is not None and output != "float":
            raise ValueError("slope (a fused activation) applies to float output only")
        if slope is None and (shift_in is not None or shift_out is not None):
            raise ValueError("shift_in and shift_out need a slope")
        if pad_value not in (0, 1, -1):
            raise ValueError(f"pad_value must be 0, 1 or -1, got {pad_value!r}")
        c, groups = int(in_channels), int(groups)
        if c < 1 or groups < 1 or c % groups:
            raise ValueError(f"in_channels={c} must be a positive multiple of groups={groups}")
        words = reference.words(c // groups)
        wp = np.asarray(weights_packed)
        if wp.dtype != np.uint64 or wp.ndim != 4 or wp.shape[3] != words or wp.shape[0] < 1:
            raise ValueError(
                "weights_packed must be uint64 [O, KH, KW, ceil(in_channels/groups/64)] = "
                f"[O, KH, KW, {words}], got {wp.dtype} {wp.shape}"
            )
        o, kh, kw = wp.shape[:3]
        if o % groups:
            raise ValueError(f"out channels {o} must be a multiple of groups={groups}")
        if kernel_size is not None and _pair(kernel_size, "kernel_size", 1) != (kh, kw):
            raise ValueError(f"kernel_size={kernel_size!r} does not match the weights {wp.shape}")
        self.in_channels, self.out_channels, self.groups = c, o, groups
        self.kernel_size = (kh, kw)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.pad_value, self.output = pad_value, output
        self.threads = dispatch.threads_arg(threads)
        self.weights = np.array(wp, dtype=np.uint64, order="C")
        self.scale = _vector(scale, o, "scale", 1.0)
        self.bias = _vector(bias, o, "bias", 0.0)
        self.input_threshold = _vector(input_threshold, c, "input_threshold", None)
        self.next_threshold = _vector(next_threshold, o, "next_threshold", None)
        self.slope = _vector(slope, o, "slope", None)
        self.shift_in = _vector(shift_in, o, "shift_in", None)
        self.shift_out = _vector(shift_out, o, "shift_out", None)
        self._out_words = reference.words(o)
        self._handle: int | None = None
        lib = _library.load()
        if lib is not None:
            spec = self._spec()
            status = ctypes.c_int(0)
            handle = lib.bnn_conv2d_create(ctypes.byref(spec), ctypes.byref(status))
            if not handle:
                raise _library.creation_error(status.value, "the binary layer")
            self._handle = handle
            weakref.finalize(self, lib.bnn_conv2d_destroy, handle)

    def _spec(self) -> _library.ConvSpec:
        """This layer as the C library's ``bnn_conv_spec`` (pointing into its arrays)."""
        transform = _library.OutputTransform(
            **{name: _ptr(getattr(self, name)) for name, _ in _library.OutputTransform._fields_}
        )
        return _library.ConvSpec(
            c=self.in_channels, o=self.out_channels, kh=self.kernel_size[0],
            kw=self.kernel_size[1], stride_h=self.stride[0], stride_w=self.stride[1],
            pad_h=self.padding[0], pad_w=self.padding[1], groups=self.groups,
            pad_value=self.pad_value, weights=_ptr(self.weights),
            input_threshold=_ptr(self.input_threshold), transform=transform,
        )  # fmt: skip

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(Ho, Wo) for an input of height x width."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        hp, wp = height + 2 * ph, width + 2 * pw
        if hp < kh or wp < kw:
            raise ValueError(f"the {kh}x{kw} kernel is larger than the padded input {hp}x{wp}")
        return (hp - kh) // sh + 1, (wp - kw) // sw + 1

    def __call__(self, x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
        packed_in = getattr(x, "dtype", None) == np.uint64
        x = np.ascontiguousarray(x, dtype=np.uint64 if packed_in else np.float32)
        expected = reference.words(self.in_channels) if packed_in else self.in_channels
        if x.ndim != 4 or x.shape[3] != expected or 0 in x.shape:
            kind = "packed uint64" if packed_in else "float"
            raise ValueError(f"{kind} input must be [N, H, W, {expected}], got {x.shape}")
        n, h, w = x.shape[:3]
        ho, wo = self.output_size(h, w)
        if residual is not None:
            if self.output != "float":
                raise ValueError("residual applies to float output only")
            residual = np.ascontiguousarray(residual, dtype=np.float32)
            if residual.shape != (n, ho, wo, self.out_channels):
                raise ValueError(
                    f"residual must be [N, Ho, Wo, O] = {[n, ho, wo, self.out_channels]}, "
                    f"got {list(residual.shape)}"
                )
        path = dispatch.isa()
        if path == dispatch.REFERENCE_ISA:
            y = reference.binary_conv2d(
                x, self.weights, in_channels=self.in_channels, stride=self.stride,
                padding=self.padding, pad_value=self.pad_value, groups=self.groups,
                scale=self.scale, bias=self.bias, input_threshold=self.input_threshold,
                output=self.output, next_threshold=self.next_threshold,
            )  # fmt: skip
            return reference.finish(y, residual, self.slope, self.shift_in, self.shift_out)
        packed_out = self.output == "packed"
        if packed_out:
            y = np.empty((n, ho, wo, self._out_words), dtype=np.uint64)
        else:
            y = np.empty((n, ho, wo, self.out_channels), dtype=np.float32)
        status = _library.load().bnn_conv2d_run(
            self._handle, x.ctypes.data, packed_in, n, h, w, y.ctypes.data, packed_out,
            _ptr(residual), _library.ISAS.index(path), self.threads,
        )  # fmt: skip
        _library.check(status, "binary_conv2d")
        return y


class BinaryLinear:
    """A binary fully connected layer with its output transform fused.

    Args:
        weights_packed: uint64 [O, ceil(in_features/64)] (see
            :func:`bnn_runtime.kernels.pack_weights`).
        in_features: the number of input features.
        scale, bias, input_threshold, output, next_threshold, threads: as in
            :class:`BinaryConv2d`.

    Calling it with a float [N, in_features] or packed [N, ceil(in_features/64)] input
    returns float32 [N, O], or packed uint64 [N, ceil(O/64)].
    """

    def __init__(
        self,
        weights_packed: np.ndarray,
        *,
        in_features: int,
        scale: np.ndarray | None = None,
        bias: np.ndarray | None = None,
        input_threshold: np.ndarray | None = None,
        output: str = "float",
        next_threshold: np.ndarray | None = None,
        threads: int | None = None,
    ) -> None:
        wp = np.asarray(weights_packed)
        if wp.dtype != np.uint64 or wp.ndim != 2:
            raise ValueError(f"weights_packed must be uint64 [O, words], got {wp.dtype} {wp.shape}")
        self.conv = BinaryConv2d(
            wp[:, None, None, :], in_channels=in_features, scale=scale, bias=bias,
            input_threshold=input_threshold, output=output, next_threshold=next_threshold,
            threads=threads,
        )  # fmt: skip

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(
                f"x must be [N, features] (float) or [N, words] (packed), got {x.shape}"
            )
        y = self.conv(x[:, None, None, :])
        return y.reshape(x.shape[0], y.shape[-1])
