"""The compiled int8 kernels (``bnn_qgemm``): every path this CPU runs, forced with
``BNN_RUNTIME_ISA``, equals the NumPy reference bit for bit, at the extremes of the
7-bit activations and int8 weights and with depths that leave a tail; whole int8
networks give identical outputs on every path; hostile arguments get a status code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnn.deploy import export
from bnn_core.registries import create_model
from bnn_runtime import _library, dispatch, int8_reference, int8_steps, kernels
from bnn_runtime.executor import load
from bnn_runtime.int8_steps import Packed
from tests.networks import Everything
from tests.packing import randomise

lib = _library.load()
pytestmark = pytest.mark.skipif(lib is None, reason="the kernel library was not built")
PATHS = dispatch.available_isas() if lib is not None else []
EINVAL, EISA, ESIZE = _library.EINVAL, _library.EISA, _library.ESIZE


def reference(a, weight, zero_point, multiplier, bias):
    """The module's arithmetic on 7-bit rows, with direct int64 sums."""
    acc = (a.astype(np.int64) - zero_point) @ weight.astype(np.int64).T
    y = acc.astype(np.float32) * multiplier
    return y if bias is None else y + bias


SHAPES = [(1, 1, 1), (3, 31, 5), (4, 32, 4), (7, 33, 9), (5, 147, 64), (2, 300, 3), (0, 8, 2)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("m", "k", "o"), SHAPES)
def test_every_path_equals_the_reference(path, m, k, o, monkeypatch):
    monkeypatch.setenv(kernels.ENV_ISA, path)
    rng = np.random.default_rng(k * 31 + o)
    a = rng.integers(0, 128, (m, k), dtype=np.uint8)
    weight = rng.integers(-128, 128, (o, k), dtype=np.int8)
    multiplier = rng.uniform(1e-4, 1e-2, o).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    for zero_point, with_bias in ((0, False), (61, True), (127, True)):
        b = bias if with_bias else None
        got = int8_steps.qgemm(a, Packed(weight), zero_point, multiplier, b, threads=2)
        np.testing.assert_array_equal(got, reference(a, weight, zero_point, multiplier, b))


@pytest.mark.parametrize("path", PATHS)
def test_extreme_values_do_not_saturate(path, monkeypatch):
    monkeypatch.setenv(kernels.ENV_ISA, path)
    k = 4096
    a = np.full((2, k), 127, dtype=np.uint8)
    weight = np.stack([np.full(k, -128, np.int8), np.full(k, 127, np.int8)])
    one = np.ones(2, dtype=np.float32)
    got = int8_steps.qgemm(a, Packed(weight), 0, one, None, threads=1)
    np.testing.assert_array_equal(got, [[127 * -128 * k, 127 * 127 * k]] * 2)


NETWORKS = {
    "everything": (Everything, (4, 13, 11)),
    "bireal": (
        lambda: randomise(create_model("resnet8_bireal", binarize=True, width=16)),
        (1, 20, 20),
    ),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_int8_networks_are_identical_on_every_path(name, tmp_path, monkeypatch):
    build, shape = NETWORKS[name]
    torch.manual_seed(0)
    path = tmp_path / "q.bnnpack"
    calibration = [torch.randn(4, *shape) for _ in range(2)]
    export(build().eval(), path, shape, float_layers="int8", calibration=calibration)
    x = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32) * 2
    outputs = {}
    for isa in [*PATHS, dispatch.REFERENCE_ISA]:
        monkeypatch.setenv(kernels.ENV_ISA, isa)
        outputs[isa] = load(path, threads=2)(x)
    for isa in PATHS:
        np.testing.assert_array_equal(outputs[isa], outputs[dispatch.REFERENCE_ISA], err_msg=isa)


A = np.zeros(4096, dtype=np.uint8)
W = np.zeros(4096, dtype=np.int8)
S = np.zeros(4096, dtype=np.int32)
F = np.ones(4096, dtype=np.float32)
Y = np.zeros(4096, dtype=np.float32)


def qgemm(m=2, k=8, o=3, zero_point=0, *, a=None, w=None, sums=None, mult=None, y=None, isa=0):
    def address(array, given):
        return given if given is not None else array.ctypes.data

    return lib.bnn_qgemm(
        address(A, a), m, k, address(W, w), o, address(S, sums), zero_point, address(F, mult),
        None, address(Y, y), isa, 1,
    )  # fmt: skip


def test_qgemm_accepts_a_valid_call():
    assert qgemm() == 0
    assert qgemm(m=0) == 0


@pytest.mark.parametrize(
    ("args", "status"),
    [
        ({"m": -1}, EINVAL),
        ({"k": 0}, EINVAL),
        ({"k": 65537}, EINVAL),
        ({"o": 0}, EINVAL),
        ({"zero_point": 128}, EINVAL),
        ({"zero_point": -1}, EINVAL),
        ({"isa": 3}, EINVAL),
        ({"isa": -1}, EINVAL),
        ({"m": np.iinfo(np.int64).max}, ESIZE),
        ({"o": 2**62, "k": 4}, ESIZE),
    ],
)
def test_qgemm_refuses(args, status):
    assert qgemm(**args) == status


def test_qgemm_refuses_null_and_overlapping_buffers_and_8_bit_activations():
    for name in ("a", "w", "sums", "mult", "y"):
        assert qgemm(**{name: 0}) == EINVAL
    assert qgemm(y=A.ctypes.data) == EINVAL
    assert qgemm(y=F.ctypes.data) == EINVAL
    assert qgemm(y=S.ctypes.data) == EINVAL
    assert qgemm(y=W.ctypes.data) == EINVAL
    high = np.zeros(16, dtype=np.uint8)
    high[13] = 128
    out = np.full(6, -1.0, dtype=np.float32)
    assert qgemm(m=2, k=8, o=3, a=high.ctypes.data, y=out.ctypes.data) == EINVAL
    assert np.all(out == -1.0)


def test_panel_widths_of_the_paths():
    widths = {name: lib.bnn_qgemm_width(code) for code, name in enumerate(_library.ISAS)}
    assert widths["portable"] == 1
    for name in PATHS:
        assert widths[name] in (1, 8, 16)
    assert lib.bnn_qgemm_width(len(_library.ISAS)) == EINVAL


@pytest.mark.skipif(len(PATHS) == len(_library.ISAS), reason="this CPU runs every path")
def test_qgemm_refuses_a_path_this_cpu_lacks():
    for code, name in enumerate(_library.ISAS):
        if name not in PATHS:
            assert qgemm(isa=code) == EISA
            assert lib.bnn_qgemm_width(code) == EISA


# kernel, stride, padding, dilation, channels, outputs, height, width
CONVS = [
    ((7, 7), (2, 2), (3, 3), (1, 1), 3, 64, 23, 20),
    ((3, 3), (1, 1), (1, 1), (1, 1), 5, 9, 6, 7),
    ((3, 2), (2, 1), (0, 1), (2, 3), 4, 17, 9, 8),
    ((1, 1), (2, 2), (0, 0), (1, 1), 33, 3, 5, 5),
    ((2, 2), (1, 1), (1, 0), (1, 1), 1, 1, 2, 3),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "c", "o", "h", "w"), CONVS)
def test_qconv_on_every_path_equals_the_reference(
    path, kernel, stride, padding, dilation, c, o, h, w, monkeypatch
):
    monkeypatch.setenv(kernels.ENV_ISA, path)
    rng = np.random.default_rng(c * 7 + o)
    x = (rng.standard_normal((2, h, w, c)) * 3).astype(np.float32)
    x.flat[:4] = [np.nan, np.inf, -np.inf, -0.0]
    weight = rng.integers(-128, 128, (o, c, *kernel), dtype=np.int8)
    multiplier = rng.uniform(1e-4, 1e-2, o).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    rows = Packed(weight.transpose(0, 2, 3, 1).reshape(o, -1))
    geometry = (kernel, stride, padding, dilation)
    for zero_point, b in ((0, None), (61, bias), (127, bias)):
        inverse = int8_reference.inverse_scale(0.05)
        got = int8_steps.qconv(x, rows, inverse, zero_point, multiplier, b, geometry, threads=2)
        expected = int8_reference.qconv2d(
            x, weight, multiplier, b, inverse, zero_point, *geometry, 1
        )
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("path", PATHS)
def test_qconv_quantizes_as_the_reference(path, monkeypatch):
    """A 1x1 convolution by a weight of 1 returns each input's quantization step:
    halves go to the even neighbour, values beyond the range clamp, NaN is the zero point."""
    monkeypatch.setenv(kernels.ENV_ISA, path)
    halves = np.arange(-140, 140, dtype=np.float32) + np.float32(0.5)
    odd = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e30, -1e30, 0.49999997], np.float32)
    rng = np.random.default_rng(5)
    x = np.concatenate([halves, odd, rng.uniform(-150, 150, 2000).astype(np.float32)])
    one = Packed(np.ones((1, 1), dtype=np.int8))
    geometry = ((1, 1), (1, 1), (0, 0), (1, 1))
    for zero_point in (0, 13, 64, 127):
        for scale in (1.0, 0.1, 3.0):
            inverse = int8_reference.inverse_scale(scale)
            got = int8_steps.qconv(
                x.reshape(1, 1, -1, 1), one, inverse, zero_point, F[:1], None, geometry, 1
            )
            steps = int8_reference.quantize(x, inverse, zero_point).astype(np.float32)
            np.testing.assert_array_equal(got.ravel(), steps - zero_point)


X = np.zeros(4096, dtype=np.float32)


def qconv(*, window=None, x=None, zero_point=0, panels=None, o=3, sums=None, mult=None, y=None,
          isa=0, **fields):  # fmt: skip
    """``bnn_qconv2d`` of a valid 1x4x4x2 call (3x3, padding 1) with some of its arguments
    or window fields replaced."""
    geometry = {"n": 1, "h": 4, "w": 4, "c": 2, "oh": 4, "ow": 4, "kh": 3, "kw": 3}
    geometry.update(stride_h=1, stride_w=1, pad_h=1, pad_w=1, dilation_h=1, dilation_w=1)
    geometry.update(fields)
    window = _library.Window(**geometry) if window is None else window

    def address(array, given):
        return given if given is not None else array.ctypes.data

    return lib.bnn_qconv2d(
        window, address(X, x), 1.0, zero_point, address(W, panels), o, address(S, sums),
        address(F, mult), None, address(Y, y), isa, 1,
    )  # fmt: skip


def test_qconv_accepts_a_valid_call():
    assert qconv() == 0
    assert qconv(n=2, h=5, w=3, oh=3, ow=2, stride_h=2, stride_w=2, dilation_w=2, pad_w=2) == 0


BIG = 2**62


@pytest.mark.parametrize(
    ("args", "status"),
    [
        ({"n": 0}, EINVAL),
        ({"h": -1}, EINVAL),
        ({"w": 0}, EINVAL),
        ({"c": 0}, EINVAL),
        ({"kh": 0}, EINVAL),
        ({"stride_w": 0}, EINVAL),
        ({"pad_h": -1}, EINVAL),
        ({"dilation_h": 0}, EINVAL),
        ({"oh": 5}, EINVAL),
        ({"ow": 3}, EINVAL),
        ({"kh": 7}, EINVAL),
        ({"o": 0}, EINVAL),
        ({"zero_point": 128}, EINVAL),
        ({"zero_point": -1}, EINVAL),
        ({"isa": 3}, EINVAL),
        ({"isa": -1}, EINVAL),
        ({"c": 7282, "ow": 4}, EINVAL),
        ({"n": BIG}, ESIZE),
        ({"h": BIG, "oh": BIG}, ESIZE),
        ({"pad_w": BIG, "ow": BIG + 2}, ESIZE),
        ({"pad_h": 2**63 - 3}, ESIZE),
        ({"dilation_w": BIG}, ESIZE),
        ({"o": BIG}, ESIZE),
        ({"c": BIG}, ESIZE),
    ],
)
def test_qconv_refuses(args, status):
    assert qconv(**args) == status


def test_qconv_refuses_null_and_overlapping_buffers():
    assert lib.bnn_qconv2d(None, X.ctypes.data, 1.0, 0, W.ctypes.data, 3, S.ctypes.data,
                           F.ctypes.data, None, Y.ctypes.data, 0, 1) == EINVAL  # fmt: skip
    for name in ("x", "panels", "sums", "mult", "y"):
        assert qconv(**{name: 0}) == EINVAL
    for array in (X, W, S, F):
        assert qconv(y=array.ctypes.data) == EINVAL
