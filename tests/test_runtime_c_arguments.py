"""The C kernel library defends itself: every exported function, called through ctypes
with hostile sizes (negative, zero strides, paddings whose padded sizes wrap around,
INT64_MAX dimensions, output sizes that disagree with the geometry, overlapping buffers),
returns its status code before it allocates or writes anything. The buffers passed are
tiny, so a call that went ahead would read or write far out of bounds (and the sanitizer
build in tests/test_runtime_sanitizers.py would report it)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from bnn_runtime import _library

lib = _library.load()
pytestmark = pytest.mark.skipif(lib is None, reason="the kernel library was not built")

EINVAL, EISA, ENOMEM, ESIZE = _library.EINVAL, _library.EISA, _library.ENOMEM, _library.ESIZE
BIG = np.iinfo(np.int64).max
# 2 + 2 * WRAP == 2**32, so (2 + 2 * WRAP) ** 2 == 2**64 wraps around to 0.
WRAP = 2**31 - 1


def buffer(dtype=np.float32, count: int = 64) -> np.ndarray:
    return np.zeros(count, dtype=dtype)


# Buffers that outlive every call (a temporary's memory could be reused by the next one).
SRC, DST, AUX = buffer(count=4096), buffer(count=4096), buffer(count=4096)


def ptr(array: np.ndarray) -> int:
    return array.ctypes.data


# ---- bnn_pack_activations ------------------------------------------------------------


def pack(rows: int, c: int, *, x: int | None = None, out: int | None = None, isa: int = 0):
    return lib.bnn_pack_activations(
        ptr(SRC) if x is None else x, None, rows, c,
        ptr(DST) if out is None else out, isa, 1,
    )  # fmt: skip


def test_pack_activations_accepts_a_valid_call() -> None:
    x, out = np.linspace(-1, 1, 6, dtype=np.float32), buffer(np.uint64, 2)
    assert lib.bnn_pack_activations(ptr(x), None, 2, 3, ptr(out), 0, 1) == 0
    assert out.tolist() == [0b000, 0b111]


@pytest.mark.parametrize(
    "rows,c,isa,status",
    [
        (-1, 3, 0, EINVAL),
        (1, 0, 0, EINVAL),
        (1, -5, 0, EINVAL),
        (1, 3, -1, EINVAL),
        (1, 3, 3, EINVAL),
        (1, 3, 2**32, EINVAL),
        (BIG, 2, 0, ESIZE),
        (2**62, 64, 0, ESIZE),
        (1, BIG, 0, ESIZE),
    ],
)
def test_pack_activations_refuses(rows: int, c: int, isa: int, status: int) -> None:
    assert pack(rows, c, isa=isa) == status


def test_pack_activations_refuses_null_buffers() -> None:
    assert lib.bnn_pack_activations(None, None, 1, 3, ptr(DST), 0, 1) == EINVAL
    assert lib.bnn_pack_activations(ptr(SRC), None, 1, 3, None, 0, 1) == EINVAL


# ---- bnn_conv2d_create / bnn_conv2d_run ---------------------------------------------

WEIGHTS = buffer(np.uint64, 4096)
VECTOR = np.ones(4096, dtype=np.float32)


def spec(**fields: int) -> _library.ConvSpec:
    """A valid 3x3 layer, 3 -> 8 channels, padding 1, with `fields` (of the spec or of its
    output transform) replaced."""
    values = dict(c=3, o=8, kh=3, kw=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1, groups=1)
    values.update(pad_value=0, weights=ptr(WEIGHTS))
    transform = dict(scale=ptr(VECTOR), bias=ptr(VECTOR))
    for name, value in fields.items():
        (transform if name in dict(_library.OutputTransform._fields_) else values)[name] = value
    return _library.ConvSpec(**values, transform=_library.OutputTransform(**transform))


def create(s: _library.ConvSpec | None) -> tuple[int | None, int]:
    status = ctypes.c_int(99)
    handle = lib.bnn_conv2d_create(None if s is None else ctypes.byref(s), ctypes.byref(status))
    return handle, status.value


@pytest.fixture
def layer():
    handle, status = create(spec())
    assert handle and status == 0
    yield handle
    lib.bnn_conv2d_destroy(handle)


def test_create_accepts_a_valid_spec_and_a_null_status() -> None:
    handle = lib.bnn_conv2d_create(ctypes.byref(spec()), None)
    assert handle
    lib.bnn_conv2d_destroy(handle)


@pytest.mark.parametrize(
    "fields,status",
    [
        ({"c": 0}, EINVAL),
        ({"o": -8}, EINVAL),
        ({"kh": 0}, EINVAL),
        ({"stride_w": 0}, EINVAL),
        ({"pad_h": -1}, EINVAL),
        ({"groups": 2}, EINVAL),  # 3 channels are not a multiple of 2
        ({"pad_value": 2}, EINVAL),
        ({"weights": None}, EINVAL),
        ({"scale": None}, EINVAL),
        ({"shift_in": ptr(VECTOR)}, EINVAL),  # a shift without a slope
        ({"kh": BIG}, ESIZE),
        ({"kh": 2**16, "kw": 2**16}, ESIZE),  # dot products beyond int32
        ({"c": 2**30, "kh": 1, "kw": 2}, ESIZE),
        ({"o": BIG - 7}, ESIZE),
        ({"o": 2**62, "kh": 1, "kw": 1}, ESIZE),
        ({"c": 2**62, "o": 2**62, "groups": 2**62}, ESIZE),  # 8 lanes per group overflow
    ],
)
def test_create_refuses(fields: dict, status: int) -> None:
    handle, got = create(spec(**fields))
    assert handle is None
    assert got == status


def test_create_refuses_a_null_spec() -> None:
    assert create(None) == (None, EINVAL)


def test_creation_errors_tell_bad_arguments_from_lack_of_memory() -> None:
    assert isinstance(_library.creation_error(ENOMEM, "a layer"), MemoryError)
    for status in (EINVAL, ESIZE):
        error = _library.creation_error(status, "a layer")
        assert isinstance(error, ValueError)
        assert _library.ERRORS[status] in str(error)


def run(handle: int, n: int, h: int, w: int, **rest: int) -> int:
    x, y = rest.pop("x", ptr(SRC)), rest.pop("y", ptr(DST))
    return lib.bnn_conv2d_run(
        handle, x, rest.pop("x_packed", 0), n, h, w, y, rest.pop("y_packed", 0),
        rest.pop("residual", None), rest.pop("isa", 0), 1,
    )  # fmt: skip


def test_run_accepts_a_valid_call(layer: int) -> None:
    x, y = np.ones((1, 4, 4, 3), np.float32), np.full((1, 4, 4, 8), np.nan, np.float32)
    assert run(layer, 1, 4, 4, x=ptr(x), y=ptr(y)) == 0
    # zero weights are all -1, the input all +1: each inside tap gives -3, plus bias 1
    assert y[0, 1, 1, 0] == 1.0 * -27 + 1.0
    assert y[0, 0, 0, 0] == 1.0 * -12 + 1.0


@pytest.mark.parametrize(
    "n,h,w,extra,status",
    [
        (0, 4, 4, {}, EINVAL),
        (1, -4, 4, {}, EINVAL),
        (1, 4, 0, {}, EINVAL),
        (1, 4, 4, {"x_packed": 2}, EINVAL),
        (1, 4, 4, {"y_packed": -1}, EINVAL),
        (1, 4, 4, {"y_packed": 1, "residual": ptr(AUX)}, EINVAL),
        (1, 4, 4, {"isa": 3}, EINVAL),
        (1, 4, 4, {"isa": -1}, EINVAL),
        (1, 4, 4, {"x": None}, EINVAL),
        (1, 4, 4, {"y": None}, EINVAL),
        (1, BIG, 4, {}, ESIZE),  # BIG + 2 * padding overflows
        (1, BIG - 2, 1, {}, ESIZE),  # the padded height fits, the pixel count does not
        (2**31, 2**31, 2**31, {}, ESIZE),
        (BIG, 1, 1, {}, ESIZE),
    ],
)
def test_run_refuses(layer: int, n: int, h: int, w: int, extra: dict, status: int) -> None:
    assert run(layer, n, h, w, **extra) == status


def test_run_refuses_overlapping_buffers(layer: int) -> None:
    x = buffer(count=1024)
    assert run(layer, 1, 4, 4, x=ptr(x), y=ptr(x) + 16) == EINVAL
    y = buffer(count=1024)
    assert run(layer, 1, 4, 4, x=ptr(x), y=ptr(y), residual=ptr(y) + 4) == EINVAL


@pytest.mark.parametrize(
    "padding,h,status", [(0, 2, EINVAL), (WRAP, 2, ESIZE), (BIG // 2, 2, ESIZE)]
)
def test_run_checks_the_padded_geometry(padding: int, h: int, status: int) -> None:
    """A kernel larger than the padded input is refused; so is a padding so large that
    the padded buffer's size wraps around (to exactly 0 for WRAP)."""
    handle, created = create(spec(pad_h=padding, pad_w=padding))
    assert handle and created == 0
    try:
        assert run(handle, 1, h, h) == status
    finally:
        lib.bnn_conv2d_destroy(handle)


def test_destroy_accepts_null() -> None:
    lib.bnn_conv2d_destroy(None)


# ---- bnn_pool2d -------------------------------------------------------------------------


def window(n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, dh=1, dw=1) -> _library.Window:
    return _library.Window(
        n=n, h=h, w=w, c=c, oh=oh, ow=ow, kh=kh, kw=kw, stride_h=sh, stride_w=sw, pad_h=ph,
        pad_w=pw, dilation_h=dh, dilation_w=dw,
    )  # fmt: skip


def pool(n=1, h=5, w=5, c=3, oh=2, ow=2, kh=2, kw=2, sh=2, sw=2, ph=0, pw=0, **rest) -> int:
    """bnn_pool2d on a 5x5x3 input, 2x2 windows of stride 2, with the arguments given."""
    x, y = rest.pop("x", ptr(SRC)), rest.pop("y", ptr(DST))
    geometry = window(n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, rest.pop("dh", 1))
    spec = _library.PoolSpec(
        window=geometry, average=rest.pop("average", 0),
        include_pad=rest.pop("include_pad", 0), divisor=rest.pop("divisor", 0),
    )  # fmt: skip
    return lib.bnn_pool2d(ctypes.byref(spec), x, y, rest.pop("isa", 0), 1)


def test_pool_accepts_floor_and_ceil_mode_sizes() -> None:
    x = np.arange(75, dtype=np.float32).reshape(1, 5, 5, 3)
    y = np.zeros((1, 3, 3, 3), np.float32)
    assert pool(oh=2, ow=2, x=ptr(x), y=ptr(y)) == 0
    assert pool(oh=3, ow=3, x=ptr(x), y=ptr(y)) == 0  # ceil mode
    assert y[0, 2, 2].tolist() == x[0, 4, 4].tolist()


# A 2**31 x 2**33 window on a 2x2 input with almost all of it padding: one window of one
# input, but its area overflows.
HUGE_WINDOW = dict(h=2, w=2, kh=2**31, kw=2**33, ph=2**31 - 1, pw=2**33 - 1, sh=2**40, sw=2**40)
HUGE_WINDOW.update(oh=1, ow=1)


@pytest.mark.parametrize(
    "args,status",
    [
        ({"oh": 4}, EINVAL),  # neither the floor (2) nor the ceil mode (3) size
        ({"ow": 1}, EINVAL),
        ({"sh": 0}, EINVAL),
        ({"kw": -2}, EINVAL),
        ({"ph": 2}, EINVAL),  # padding of a whole kernel
        ({"pw": -1}, EINVAL),
        ({"h": 1, "kh": 3, "ph": 0, "oh": 1}, EINVAL),  # the kernel beyond the input
        ({"average": 2}, EINVAL),
        ({"include_pad": -1}, EINVAL),
        ({"divisor": -3}, EINVAL),
        ({"dh": 2}, EINVAL),  # pooling has no dilation
        ({"isa": 3}, EINVAL),
        ({"x": None}, EINVAL),
        ({"h": BIG, "oh": BIG // 2}, ESIZE),  # the last window's end overflows
        ({"kh": 2**62 + 1, "ph": 2**62, "oh": 1}, ESIZE),  # the padded height wraps
        ({"c": BIG}, ESIZE),
        ({"n": 2**40, "h": 2**20, "w": 2**20, "oh": 2**19, "ow": 2**19}, ESIZE),
        (HUGE_WINDOW, ESIZE),
    ],
)
def test_pool_refuses(args: dict, status: int) -> None:
    assert pool(**args) == status


def test_pool_refuses_overlapping_buffers_and_a_null_spec() -> None:
    x = buffer(count=1024)
    assert pool(x=ptr(x), y=ptr(x) + 64) == EINVAL
    assert lib.bnn_pool2d(None, ptr(SRC), ptr(DST), 0, 1) == EINVAL


# ---- bnn_prelu ----------------------------------------------------------------------------


def test_prelu_accepts_a_valid_call_in_place() -> None:
    x, slope = np.array([-2.0, 3.0], np.float32), np.array([0.5, 0.5], np.float32)
    assert lib.bnn_prelu(ptr(x), 1, 2, None, ptr(slope), None, ptr(x), 1) == 0
    assert x.tolist() == [-1.0, 3.0]


@pytest.mark.parametrize(
    "rows,c,shifts,status",
    [(-1, 2, 0, EINVAL), (1, 0, 0, EINVAL), (1, 2, 1, EINVAL), (BIG, 2, 0, ESIZE),
     (2**32, 2**32, 0, ESIZE)],
)  # fmt: skip
def test_prelu_refuses(rows: int, c: int, shifts: int, status: int) -> None:
    x, slope = buffer(), buffer()
    shift_in = ptr(AUX) if shifts else None  # a shift_in without its shift_out
    assert lib.bnn_prelu(ptr(x), rows, c, shift_in, ptr(slope), None, ptr(x), 1) == status


def test_prelu_refuses_null_and_overlapping_buffers() -> None:
    x, slope = buffer(), buffer()
    assert lib.bnn_prelu(ptr(x), 1, 2, None, None, None, ptr(x), 1) == EINVAL
    assert lib.bnn_prelu(None, 1, 2, None, ptr(slope), None, ptr(x), 1) == EINVAL
    assert lib.bnn_prelu(ptr(x), 2, 8, None, ptr(slope), None, ptr(x) + 4, 1) == EINVAL


# ---- bnn_transpose ---------------------------------------------------------------------


def test_transpose_accepts_a_valid_call_and_nothing_to_do() -> None:
    x, y = np.arange(6, dtype=np.float32), buffer(count=6)
    assert lib.bnn_transpose(ptr(x), 1, 2, 3, ptr(y), 1) == 0
    assert y.tolist() == [0, 3, 1, 4, 2, 5]
    assert lib.bnn_transpose(ptr(x), 0, BIG, BIG, ptr(y), 1) == 0


@pytest.mark.parametrize(
    "n,rows,cols,status",
    [(-1, 2, 2, EINVAL), (1, -2, 2, EINVAL), (1, 2, -2, EINVAL), (1, 2**32, 2**32, ESIZE),
     (BIG, 2, 1, ESIZE)],
)  # fmt: skip
def test_transpose_refuses(n: int, rows: int, cols: int, status: int) -> None:
    assert lib.bnn_transpose(ptr(SRC), n, rows, cols, ptr(DST), 1) == status


def test_transpose_refuses_null_and_overlapping_buffers() -> None:
    x = buffer()
    assert lib.bnn_transpose(None, 1, 2, 2, ptr(x), 1) == EINVAL
    assert lib.bnn_transpose(ptr(x), 1, 2, 2, ptr(x), 1) == EINVAL
    assert lib.bnn_transpose(ptr(x), 1, 4, 4, ptr(x) + 8, 1) == EINVAL


# ---- bnn_float_conv2d --------------------------------------------------------------------


def fconv(n=1, h=4, w=4, c=2, o=3, oh=2, ow=2, kh=3, kw=3, sh=1, sw=1, ph=0, pw=0, **rest):
    """bnn_float_conv2d of a 4x4x2 input, 3x3 kernel, 3 outputs, with the arguments given."""
    x, y = rest.pop("x", ptr(SRC)), rest.pop("y", ptr(DST))
    geometry = window(
        n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw, rest.pop("dh", 1), rest.pop("dw", 1)
    )
    panels = rest.pop("panels", ptr(AUX))
    return lib.bnn_float_conv2d(
        ctypes.byref(geometry), x, panels, None, o, y, rest.pop("isa", 1), 1
    )


def test_float_conv_accepts_a_valid_call() -> None:
    """Valid arguments pass the checks: the result is computed, or BNN_EISA on a CPU
    without AVX2 and FMA."""
    assert fconv() in (0, EISA)
    assert fconv(ph=1, pw=1, oh=4, ow=4, dh=2, dw=2, sh=1, sw=1, h=6, w=6) in (0, EISA)
    assert fconv(isa=0) == EISA  # the portable path has no float convolution


# A 1x1 kernel on a 2x2 input padded to 2**32 x 2**32: the padded copy's size wraps to 0.
WRAPPING_PADDING = dict(h=2, w=2, ph=WRAP, pw=WRAP, kh=1, kw=1, oh=2**32, ow=2**32)


@pytest.mark.parametrize(
    "args,status",
    [
        ({"oh": 1}, EINVAL),  # the geometry gives 2
        ({"ow": 3}, EINVAL),
        ({"sh": 0}, EINVAL),
        ({"dw": 0}, EINVAL),
        ({"ph": -1}, EINVAL),
        ({"o": 0}, EINVAL),
        ({"kh": 5, "oh": 1}, EINVAL),  # the kernel beyond the padded input
        ({"dh": 2, "oh": 1}, EINVAL),  # the dilated kernel spans 5 of 4 rows
        ({"isa": 7}, EINVAL),
        ({"x": None}, EINVAL),
        ({"panels": None}, EINVAL),
        (WRAPPING_PADDING, ESIZE),
        ({"kh": BIG, "dh": 2}, ESIZE),
        ({"h": BIG, "ph": 1}, ESIZE),
        ({"c": BIG}, ESIZE),
        ({"o": BIG, "oh": 2}, ESIZE),
        ({"kh": 1, "kw": 1, "oh": 4, "ow": 4, "c": 2**61}, ESIZE),
    ],
)
def test_float_conv_refuses(args: dict, status: int) -> None:
    assert fconv(**args) == status


def test_float_conv_refuses_overlapping_buffers_and_a_null_window() -> None:
    x = buffer(count=4096)
    assert fconv(x=ptr(x), y=ptr(x) + 4) == EINVAL
    assert lib.bnn_float_conv2d(None, ptr(SRC), ptr(AUX), None, 3, ptr(DST), 1, 1) == EINVAL


# ---- bnn_parallel_callback ---------------------------------------------------------------


def test_parallel_callback_ignores_a_null_callback() -> None:
    lib.bnn_parallel_callback(4, _library.CALLBACK())
    members: list[int] = []
    lib.bnn_parallel_callback(1, _library.CALLBACK(lambda tid, nt: members.append(nt)))
    assert members == [1]
