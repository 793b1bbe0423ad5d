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
from bnn_runtime import _library, dispatch, int8_steps, kernels
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
