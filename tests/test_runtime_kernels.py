"""Binary kernels of bnn_runtime: every ISA path (each forced in turn, skipping those the
CPU lacks, plus the NumPy reference) must match torch's convolution of the signs
exactly, float outputs bit for bit and packed outputs bit for bit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnn_runtime import _library, dispatch, kernels, reference


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The reference convolutions are tiny: threads would only add synchronisation."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sign(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t >= 0, 1.0, -1.0).double()


def torch_conv(x_sign, w_sign, stride, padding, pad_value, groups) -> torch.Tensor:
    """Integer dot products (NCHW, float64) of the signed input and weights."""
    if pad_value == 0:
        return F.conv2d(x_sign, w_sign, stride=stride, padding=padding, groups=groups)
    (ph, pw) = padding
    x_pad = F.pad(x_sign, (pw, pw, ph, ph), value=float(pad_value))
    return F.conv2d(x_pad, w_sign, stride=stride, groups=groups)


def affine(rng: np.random.Generator, o: int, ties: bool) -> tuple[np.ndarray, ...]:
    """scale, bias, next_threshold. With ``ties`` they are small integers, so that
    scale * dot + bias + threshold is exactly 0 for many outputs (sign(0) = +1)."""
    if ties:
        scale = rng.choice([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0], o)
        bias = rng.integers(-3, 4, o)
        thr = rng.integers(-3, 4, o)
    else:
        scale = rng.standard_normal(o) * 0.37
        bias = rng.standard_normal(o) * 3.3
        thr = rng.standard_normal(o)
    return tuple(np.asarray(v, dtype=np.float32) for v in (scale, bias, thr))


def float_input(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random activations including exact zeros of both signs."""
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, flat.size // 8)] = 0.0
    flat[rng.integers(0, flat.size, flat.size // 8)] = -0.0
    return x


# (batch, height, width, in channels, out channels, kernel, stride, padding, groups)
CONV_CASES = [
    (1, 5, 7, 3, 5, 3, 1, 1, 1),
    (2, 9, 6, 65, 70, 3, 2, 1, 1),
    (1, 8, 7, 130, 17, 5, 1, 2, 1),
    (1, 6, 6, 63, 129, 1, 1, 0, 1),
    (2, 7, 5, 12, 12, 3, 1, 1, 12),
    (1, 7, 9, 130, 20, 1, 2, 0, 2),
    (1, 5, 5, 96, 48, 3, 1, 1, 3),
    (1, 6, 5, 128, 64, 3, 1, 0, 2),
    (1, 4, 4, 64, 64, 3, 1, 0, 1),
    (1, 3, 3, 8, 16, 3, 1, 3, 4),
    (3, 6, 5, 40, 24, (1, 3), (2, 1), (0, 1), 1),
    (1, 7, 7, 512, 40, 3, 1, 1, 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[:6])))
def test_conv2d_matches_torch(isa: str, case: tuple) -> None:
    n, h, w, c, o, k, stride, padding, groups = case
    kh, kw = (k, k) if isinstance(k, int) else k
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    rng = np.random.default_rng(c * 1000 + o)
    x = float_input(rng, (n, h, w, c))
    in_thr = (rng.standard_normal(c) * 0.5).astype(np.float32)
    in_thr[: c // 4] = -x.reshape(-1, c)[0, : c // 4]  # exact x + threshold == 0
    weight = rng.standard_normal((o, c // groups, kh, kw)).astype(np.float32)
    w_packed = kernels.pack_weights(weight)
    x_t = torch.from_numpy(x).permute(0, 3, 1, 2)
    x_sign = sign(x_t + torch.from_numpy(in_thr)[:, None, None])
    w_sign = sign(torch.from_numpy(weight))
    x_packed = kernels.pack_activations(x, in_thr)

    for pad_value in (0, 1, -1):
        dot = torch_conv(x_sign, w_sign, (sh, sw), (ph, pw), pad_value, groups)
        dot = dot.permute(0, 2, 3, 1).float().numpy()
        for ties in (False, True):
            scale, bias, next_thr = affine(rng, o, ties)
            y_ref = scale * dot + bias
            bits_ref = reference.pack_bits(y_ref + next_thr >= 0)
            for packed_in in (False, True):
                opts = dict(
                    in_channels=c, kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                    pad_value=pad_value, groups=groups, scale=scale, bias=bias,
                    input_threshold=None if packed_in else in_thr,
                )  # fmt: skip
                xin = x_packed if packed_in else x
                what = f"pad_value={pad_value} ties={ties} packed_in={packed_in}"
                y = kernels.binary_conv2d(xin, w_packed, output="float", **opts)
                assert y.dtype == np.float32 and y.shape == y_ref.shape
                assert np.array_equal(y, y_ref), what
                bits = kernels.binary_conv2d(
                    xin, w_packed, output="packed", next_threshold=next_thr, **opts
                )
                assert bits.dtype == np.uint64 and np.array_equal(bits, bits_ref), what


@pytest.mark.parametrize("n,c,o", [(1, 3, 5), (4, 65, 130), (3, 130, 64), (2, 512, 1000)])
def test_linear_matches_torch(isa: str, n: int, c: int, o: int) -> None:
    rng = np.random.default_rng(n * c + o)
    x = float_input(rng, (n, c))
    in_thr = (rng.standard_normal(c) * 0.5).astype(np.float32)
    weight = rng.standard_normal((o, c)).astype(np.float32)
    w_packed = kernels.pack_weights(weight)
    dot = (sign(torch.from_numpy(x + in_thr)) @ sign(torch.from_numpy(weight)).T).float()
    for ties in (False, True):
        scale, bias, next_thr = affine(rng, o, ties)
        y_ref = scale * dot.numpy() + bias
        for xin, thr in ((x, in_thr), (kernels.pack_activations(x, in_thr), None)):
            opts = dict(in_features=c, scale=scale, bias=bias, input_threshold=thr)
            y = kernels.binary_linear(xin, w_packed, **opts)
            assert y.shape == (n, o) and np.array_equal(y, y_ref)
            bits = kernels.binary_linear(
                xin, w_packed, output="packed", next_threshold=next_thr, **opts
            )
            assert np.array_equal(bits, reference.pack_bits(y_ref + next_thr >= 0))


def test_counts_beyond_16_bits(isa: str) -> None:
    """70,000 input features, every one a mismatch for the first output: counts that
    overflow 16 bits must still be exact (64 outputs, enough for the AVX2 nibble path)."""
    c = 70_000
    rng = np.random.default_rng(7)
    weight = rng.standard_normal((64, c)).astype(np.float32)
    x = -weight[:1] - np.float32(0.5) * np.sign(weight[:1])  # the opposite sign everywhere
    dot = sign(torch.from_numpy(x)) @ sign(torch.from_numpy(weight)).T
    y = kernels.binary_linear(x, kernels.pack_weights(weight), in_features=c)
    assert y[0, 0] == -c and np.array_equal(y, dot.float().numpy())


def test_packed_output_with_non_finite_parameters(isa: str) -> None:
    """Infinite or NaN scale, bias or threshold give the bits of the float transform
    (NaN compares false: -1)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 4, 5, 30)).astype(np.float32)
    weight = rng.standard_normal((16, 30, 3, 3)).astype(np.float32)
    scale = np.ones(16, np.float32)
    bias = np.zeros(16, np.float32)
    thr = np.zeros(16, np.float32)
    scale[[0, 1]] = [np.inf, -np.inf]
    bias[[2, 3]] = [np.nan, -np.inf]
    thr[4] = np.inf
    y = kernels.binary_conv2d(x, kernels.pack_weights(weight), in_channels=30, padding=1,
                              scale=scale, bias=bias)  # fmt: skip
    bits = kernels.binary_conv2d(x, kernels.pack_weights(weight), in_channels=30, padding=1,
                                 scale=scale, bias=bias, output="packed",
                                 next_threshold=thr)  # fmt: skip
    assert np.array_equal(bits, reference.pack_bits(y + thr >= 0))


def test_defaults_are_unit_scale_zero_bias(isa: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 4, 70)).astype(np.float32)
    weight = rng.standard_normal((9, 70, 3, 3)).astype(np.float32)
    y = kernels.binary_conv2d(x, kernels.pack_weights(weight), in_channels=70, padding=1)
    expected = F.conv2d(sign(torch.from_numpy(x).permute(0, 3, 1, 2)), sign(torch.tensor(weight)),
                        padding=1)  # fmt: skip
    assert np.array_equal(y, expected.permute(0, 2, 3, 1).float().numpy())


@pytest.mark.parametrize("c", [1, 3, 63, 64, 65, 130])
def test_pack_activations(isa: str, c: int) -> None:
    rng = np.random.default_rng(c)
    x = float_input(rng, (2, 3, c))
    x[0, 0, 0] = np.nan  # NaN + threshold >= 0 is false: -1
    thr = rng.standard_normal(c).astype(np.float32)
    thr[0] = -x[1, 0, 0]
    for t in (None, thr):
        packed = kernels.pack_activations(x, t)
        assert packed.shape == (2, 3, reference.words(c)) and packed.dtype == np.uint64
        v = x + t if t is not None else x
        assert np.array_equal(kernels.unpack_activations(packed, c), np.where(v >= 0, 1, -1))
        padding_bits = packed[..., -1] >> np.uint64(c % 64) if c % 64 else np.uint64(0)
        assert np.all(padding_bits == 0)


def test_bit_layout() -> None:
    """Bit i of word k is channel 64k+i; 1 is +1; weights are [O, KH, KW, words]."""
    x = -np.ones((1, 1, 1, 130), dtype=np.float32)
    x[..., [0, 63, 64, 129]] = 0.0
    words = kernels.pack_activations(x)
    assert words.tolist() == [[[[1 | 1 << 63, 1, 2]]]]
    w = -np.ones((2, 70, 1, 3), dtype=np.float32)
    w[1, 69, 0, 2] = 1.0
    packed = kernels.pack_weights(w)
    assert packed.shape == (2, 1, 3, 2)
    assert packed[1, 0, 2].tolist() == [0, 1 << 5] and not packed[0].any()
    assert kernels.pack_weights(np.ones((3, 65))).tolist() == [[2**64 - 1, 1]] * 3


def test_prepared_layers_match_one_shot_calls(isa: str) -> None:
    """A layer object is prepared once (it copies its arrays) and called repeatedly with
    float or packed inputs of any size."""
    rng = np.random.default_rng(11)
    weight = rng.standard_normal((20, 70, 3, 3)).astype(np.float32)
    w_packed = kernels.pack_weights(weight)
    scale = rng.standard_normal(20).astype(np.float32)
    opts = dict(in_channels=70, stride=2, padding=1, scale=scale)
    layer = kernels.BinaryConv2d(w_packed, **opts)
    expected = []
    inputs = [rng.standard_normal(s).astype(np.float32) for s in ((1, 9, 8, 70), (3, 5, 6, 70))]
    for x in inputs:
        expected.append(kernels.binary_conv2d(x, w_packed, **opts))
    w_packed[:] = 0
    scale[:] = 0
    for x, y in zip(inputs, expected, strict=True):
        assert np.array_equal(layer(x), y)
        assert np.array_equal(layer(kernels.pack_activations(x)), y)
    assert layer.output_size(9, 8) == (5, 4)

    linear = kernels.BinaryLinear(kernels.pack_weights(weight[:, :, 0, 0]), in_features=70,
                                  output="packed")  # fmt: skip
    x = rng.standard_normal((5, 70)).astype(np.float32)
    assert np.array_equal(linear(x), linear(kernels.pack_activations(x)))
    assert linear(x).shape == (5, 1)


def test_stray_padding_bits_are_ignored(isa: str) -> None:
    """Bits beyond the channels (set here on purpose) never change a result."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 6, 6, 70)).astype(np.float32)
    w_packed = kernels.pack_weights(rng.standard_normal((10, 35, 3, 3)))
    x_packed = kernels.pack_activations(x)
    opts = dict(in_channels=70, padding=1, pad_value=1, groups=2)
    clean = kernels.binary_conv2d(x_packed, w_packed, **opts)
    x_dirty, w_dirty = x_packed.copy(), w_packed.copy()
    x_dirty[..., -1] |= np.uint64(0xFFFF) << np.uint64(48)
    w_dirty[..., -1] |= np.uint64(1) << np.uint64(63)
    assert np.array_equal(kernels.binary_conv2d(x_dirty, w_dirty, **opts), clean)


def test_threads_do_not_change_results(isa: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 9, 100)).astype(np.float32)
    w_packed = kernels.pack_weights(rng.standard_normal((72, 100, 3, 3)))
    runs = [
        kernels.binary_conv2d(x, w_packed, in_channels=100, padding=1, output="packed", threads=t)
        for t in (1, 2, 3)
    ]
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


def test_thread_count_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    if _library.load() is None:
        pytest.skip("the library is not built: always one thread")
    monkeypatch.setenv(kernels.ENV_THREADS, "3")
    assert kernels.default_threads() == 3
    monkeypatch.delenv(kernels.ENV_THREADS)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert kernels.default_threads() == 5
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert kernels.default_threads() == len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="threads"):
        kernels.pack_activations(np.zeros((2, 3), np.float32), threads=0)


def test_library_is_built_and_dispatches() -> None:
    assert _library.load() is not None, "the C library was not built: pip install -e ."
    isas = kernels.available_isas()
    assert isas[0] == "portable"
    assert kernels.isa() == isas[-1]


def test_isa_switch_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kernels.ENV_ISA, "sse9")
    with pytest.raises(ValueError, match="sse9"):
        kernels.isa()
    missing = [name for name in _library.ISAS if name not in kernels.available_isas()]
    if missing:
        monkeypatch.setenv(kernels.ENV_ISA, missing[0])
        with pytest.raises(RuntimeError, match=missing[0]):
            kernels.binary_linear(np.zeros((1, 4), np.float32), np.zeros((2, 1), np.uint64),
                                  in_features=4)  # fmt: skip


def test_argument_errors() -> None:
    w = np.zeros((4, 3, 3, 1), np.uint64)
    x = np.zeros((1, 5, 5, 8), np.float32)
    with pytest.raises(ValueError, match="weights_packed"):
        kernels.binary_conv2d(x, w.astype(np.int64), in_channels=8)
    with pytest.raises(ValueError, match="input_threshold"):
        kernels.binary_conv2d(kernels.pack_activations(x), w, in_channels=8,
                              input_threshold=np.zeros(8, np.float32))  # fmt: skip
    with pytest.raises(ValueError, match="next_threshold"):
        kernels.binary_conv2d(x, w, in_channels=8, next_threshold=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="kernel_size"):
        kernels.binary_conv2d(x, w, in_channels=8, kernel_size=5)
    with pytest.raises(ValueError, match="scale"):
        kernels.binary_conv2d(x, w, in_channels=8, scale=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="pad_value"):
        kernels.binary_conv2d(x, w, in_channels=8, pad_value=2)
    with pytest.raises(ValueError, match="groups"):
        kernels.binary_conv2d(x, w, in_channels=8, groups=3)
    with pytest.raises(ValueError, match="larger"):
        kernels.binary_conv2d(x[:, :2], w, in_channels=8)


def test_missing_library_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kernels.ENV_ISA, raising=False)
    monkeypatch.setattr(_library, "library_path", lambda: None)
    _library.load.cache_clear()
    dispatch._supported.cache_clear()
    dispatch._resolve.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="NumPy reference"):
            assert kernels.isa() == "numpy"
        assert kernels.available_isas() == []
        w = kernels.pack_weights(np.ones((2, 3)))
        y = kernels.binary_linear(np.ones((1, 3), np.float32), w, in_features=3)
        assert y.tolist() == [[3.0, 3.0]]
    finally:
        _library.load.cache_clear()
        dispatch._supported.cache_clear()
        dispatch._resolve.cache_clear()


def test_runtime_needs_no_torch() -> None:
    """The runtime imports and runs in a process where importing torch fails."""
    code = textwrap.dedent(
        """
        import sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is hidden")

        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        from bnn_runtime import kernels

        x = np.ones((1, 4, 4, 70), np.float32)
        w = kernels.pack_weights(np.ones((8, 70, 3, 3), np.float32))
        y = kernels.binary_conv2d(x, w, in_channels=70, padding=1)
        assert y[0, 1, 1, 0] == 630.0 and y[0, 0, 0, 0] == 280.0, y[0, :, :, 0]
        assert kernels.isa() in kernels.available_isas()
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
