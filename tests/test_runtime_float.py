"""The runtime's float operations and its thread team: pooling, PReLU and the NCHW/NHWC
transpositions in the compiled library against PyTorch or NumPy (and against the NumPy
fallback used without the library), and the team under concurrent callers, failing tasks
and fork()."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnn_runtime import _library, float_ops, kernels, parallel, steps

pytestmark = pytest.mark.skipif(_library.load() is None, reason="the library is not built")

POOLS = [
    # kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    ((3, 3), (2, 2), (1, 1), False, True, None),
    ((3, 3), (2, 2), (1, 1), True, False, None),
    ((2, 2), (2, 2), (0, 0), True, True, None),
    ((3, 2), (1, 2), (1, 0), False, False, None),
    ((3, 3), (2, 1), (1, 1), True, True, 4),
    ((1, 1), (2, 2), (0, 0), False, True, None),
]


def nhwc(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


def pools(x: np.ndarray, case, threads: int) -> tuple[np.ndarray, np.ndarray]:
    kernel, stride, padding, ceil_mode, include_pad, divisor = case
    maximum = float_ops.max_pool2d(x, kernel, stride, padding, ceil_mode, threads)
    average = float_ops.avg_pool2d(
        x, kernel, stride, padding, ceil_mode, include_pad, divisor, threads
    )
    return maximum, average


@pytest.mark.parametrize("case", POOLS)
@pytest.mark.parametrize("threads", [1, 3])
def test_pooling_matches_torch_and_the_numpy_fallback(isa, case, threads, monkeypatch):
    kernel, stride, padding, ceil_mode, include_pad, divisor = case
    x = torch.randn(2, 70, 13, 10)
    x[0, 3, 4, 4] = float("nan")
    x[1, :, 0, 0] = float("-inf")
    expected_max = F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode)
    expected_avg = F.avg_pool2d(
        x, kernel, stride, padding, ceil_mode, include_pad, divisor_override=divisor
    )
    maximum, average = pools(nhwc(x), case, threads)
    np.testing.assert_array_equal(maximum, nhwc(expected_max))
    np.testing.assert_allclose(average, nhwc(expected_avg), rtol=1e-6, atol=1e-6)
    assert np.isnan(maximum).sum() == torch.isnan(expected_max).sum().item() > 0

    # Values that cancel in the sums: the two paths round alike only if they add the
    # taps in the same order.
    cancelling = nhwc(x * torch.where(torch.rand(x.shape) < 0.3, 1e30, 1.0))
    big_average = pools(cancelling, case, threads)[1]

    monkeypatch.setattr(_library, "load", lambda: None)
    fallback_max, fallback_avg = pools(nhwc(x), case, threads)
    np.testing.assert_array_equal(fallback_max, maximum)
    np.testing.assert_array_equal(fallback_avg, average)
    np.testing.assert_array_equal(pools(cancelling, case, threads)[1], big_average)


@pytest.mark.parametrize(
    "shape", [(1, 3, 224, 224), (2, 3, 5, 7), (2, 70, 9, 5), (3, 1, 1, 33), (1, 64, 1, 1)]
)
@pytest.mark.parametrize("threads", [1, 2])
def test_layout_changes_match_numpy(shape, threads, monkeypatch):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    last = float_ops.channels_last(x, threads)
    assert last.flags.c_contiguous and last.dtype == np.float32
    np.testing.assert_array_equal(last, x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(float_ops.channels_first(last, threads), x)
    half = x.astype(np.float16)
    np.testing.assert_array_equal(
        float_ops.channels_last(half, threads), half.astype(np.float32).transpose(0, 2, 3, 1)
    )
    monkeypatch.setattr(_library, "load", lambda: None)
    np.testing.assert_array_equal(float_ops.channels_last(x, threads), last)
    np.testing.assert_array_equal(float_ops.channels_first(last, threads), x)


def test_pooling_window_beyond_its_padding_falls_back_to_numpy():
    x = np.arange(2 * 5 * 5 * 3, dtype=np.float32).reshape(2, 5, 5, 3)
    assert float_ops._native_pool(x, (2, 2), (1, 1), (2, 2), (8, 8), 0, False, None, 1) is None
    assert float_ops._native_pool(x, (3, 3), (1, 1), (1, 1), (5, 5), 0, False, None, 1) is not None


@pytest.mark.parametrize("op", ["prelu", "rprelu"])
@pytest.mark.parametrize("reuse", [False, True])
def test_prelu_matches_torch(isa, op, reuse):
    rng = np.random.default_rng(0)
    channels = 37
    x = rng.standard_normal((2, 9, 11, channels)).astype(np.float32)
    x[0, 0, 0, :3] = [0.0, -0.0, np.nan]
    slope = rng.uniform(-2, 2, channels).astype(np.float32)  # negative and steep slopes too
    tensors = {
        "slope": slope,
        "shift_in": rng.standard_normal(channels).astype(np.float32),
        "shift_out": rng.standard_normal(channels).astype(np.float32),
    }
    step = steps.PLANNERS[op]({}, tensors.get, 2)
    t = torch.from_numpy(x.copy())
    if op == "rprelu":
        t = t + torch.from_numpy(tensors["shift_in"])
    expected = F.prelu(t.permute(0, 3, 1, 2), torch.from_numpy(slope)).permute(0, 2, 3, 1)
    if op == "rprelu":
        expected = expected + torch.from_numpy(tensors["shift_out"])
    source = x.copy()
    got = step([source], reuse)
    assert (got is source) == reuse
    np.testing.assert_array_equal(got, expected.numpy())


def test_prelu_with_one_slope_for_every_channel():
    x = np.linspace(-3, 3, 2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    step = steps.PLANNERS["prelu"]({}, {"slope": np.array([0.25], np.float32)}.get, 1)
    np.testing.assert_array_equal(step([x], False), np.where(x > 0, x, np.float32(0.25) * x))


def test_parallel_tasks_run_on_several_threads_and_raise_their_errors():
    seen: list[int] = []
    barrier = threading.Barrier(3, timeout=10)

    def task() -> None:
        seen.append(threading.get_ident())
        barrier.wait()  # only returns if all three run at the same time

    parallel.run([task, task, task])
    assert len(set(seen)) == 3

    def failing() -> None:
        raise ValueError("band 2 failed")

    done: list[int] = []
    with pytest.raises(ValueError, match="band 2 failed"):
        parallel.run([lambda: done.append(0), failing, lambda: done.append(2)])
    assert sorted(done) == [0, 2]


def test_concurrent_callers_share_the_team_and_get_the_same_results():
    rng = np.random.default_rng(1)
    w = kernels.pack_weights(rng.standard_normal((96, 80, 3, 3)))
    layer = kernels.BinaryConv2d(w, in_channels=80, padding=1, threads=2)
    inputs = [rng.standard_normal((1, 17, 15, 80)).astype(np.float32) for _ in range(8)]
    expected = [layer(x) for x in inputs]
    results: dict[int, np.ndarray] = {}

    def call(index: int) -> None:
        for _ in range(5):
            results[index] = layer(inputs[index])

    callers = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    for index, y in enumerate(expected):
        np.testing.assert_array_equal(results[index], y)


def _run_layer_in_child(queue) -> None:
    rng = np.random.default_rng(2)
    w = kernels.pack_weights(rng.standard_normal((64, 64, 3, 3)))
    x = rng.standard_normal((1, 20, 20, 64)).astype(np.float32)
    queue.put(kernels.binary_conv2d(x, w, in_channels=64, padding=1, threads=2))


def test_team_works_in_a_forked_child():
    rng = np.random.default_rng(2)
    w = kernels.pack_weights(rng.standard_normal((64, 64, 3, 3)))
    x = rng.standard_normal((1, 20, 20, 64)).astype(np.float32)
    expected = kernels.binary_conv2d(x, w, in_channels=64, padding=1, threads=2)  # team started
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_run_layer_in_child, args=(queue,))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(got, expected)


CONVS = [
    # in, out, kernel, stride, padding, dilation, height, width, bias
    (3, 64, (7, 7), (2, 2), (3, 3), (1, 1), 29, 31, True),
    (5, 20, (3, 2), (1, 2), (1, 0), (2, 1), 11, 9, False),
    (70, 37, (1, 1), (1, 1), (0, 0), (1, 1), 7, 5, True),
    (16, 16, (3, 3), (2, 1), (2, 1), (1, 2), 6, 13, True),
]


@pytest.mark.parametrize("case", CONVS)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_compiled_float_convolution_matches_torch(isa, case, threads):
    c, o, kernel, stride, padding, dilation, h, w, with_bias = case
    x = torch.randn(2, c, h, w)
    weight = torch.randn(o, c, *kernel)
    bias = torch.randn(o) if with_bias else None
    expected = F.conv2d(x, weight, bias, stride, padding, dilation)
    matrix = float_ops.conv_weight_matrix(weight.numpy(), 1)
    panels = float_ops.column_panels(matrix[0])
    assert panels.shape == (-(-o // 16), matrix.shape[1], 16)
    geometry = (kernel, stride, padding, dilation)
    b = None if bias is None else bias.numpy()
    native = float_ops._native_conv(nhwc(x), panels, b, o, expected.shape[2:], *geometry, threads)
    # the portable path and the NumPy reference leave float convolutions to NumPy
    assert (native is None) == (isa in ("portable", "numpy"))
    got = float_ops.conv2d(nhwc(x), matrix, b, *geometry, threads, panels)
    np.testing.assert_allclose(got, nhwc(expected), rtol=1e-4, atol=1e-4)
    if native is not None:
        np.testing.assert_array_equal(got, native)
        # whichever thread computes a tile, it is the same arithmetic
        alone = float_ops._native_conv(nhwc(x), panels, b, o, expected.shape[2:], *geometry, 1)
        np.testing.assert_array_equal(native, alone)
        numpy_result = float_ops.conv2d(nhwc(x), matrix, b, *geometry, threads)
        np.testing.assert_allclose(native, numpy_result, rtol=1e-4, atol=1e-4)


def test_planned_steps_keep_each_input_shape_apart(isa):
    """The geometry and per-channel vectors a step keeps from one call are those of that
    call's input shape: alternating shapes give what PyTorch gives for each."""
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    attrs = {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1], "dilation": [1, 1]}
    conv = steps.PLANNERS["conv2d"]({**attrs, "groups": 1}, {"weight": weight}.get, 2)
    pool = steps.PLANNERS["max_pool2d"]({**attrs, "ceil_mode": True}, {}.get, 2)
    slope = np.array([-0.5], np.float32)
    prelu = steps.PLANNERS["prelu"]({}, {"slope": slope}.get, 2)
    for size, channels in [(9, 3), (14, 4), (9, 3), (5, 4)]:
        x = torch.from_numpy(rng.standard_normal((1, channels, size, size), dtype=np.float32))
        if channels == 3:
            expected = F.conv2d(x, torch.from_numpy(weight), None, 2, 1)
            np.testing.assert_allclose(conv([nhwc(x)], False), nhwc(expected), atol=1e-5)
        expected = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
        np.testing.assert_array_equal(pool([nhwc(x)], False), nhwc(expected))
        expected = F.prelu(x, torch.from_numpy(slope))
        np.testing.assert_array_equal(prelu([nhwc(x)], False), nhwc(expected))


def misaligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` starting 16 bytes past a 64-byte boundary."""
    buffer = np.empty(a.size + 32, dtype=np.float32)
    start = (-(buffer.ctypes.data // 4) + 4) % 16
    copy = buffer[start : start + a.size].reshape(a.shape)
    copy[...] = a
    assert copy.ctypes.data % 64 == 16
    return copy


@pytest.mark.parametrize(
    "case",
    [
        # in, out, kernel, stride, padding, dilation, height, width: 720 output pixels
        # (misaligned panels are copied) with a group of 4 panels and one of 1, partly used
        (3, 70, (7, 7), (2, 2), (3, 3), (1, 1), 40, 36),
        # 2 panels, the last partly used, a dilated kernel and a short last tile
        (16, 21, (3, 3), (2, 1), (2, 1), (1, 2), 6, 13),
    ],
)
def test_avx512_float_convolution_equals_the_avx2_one_bit_for_bit(case, monkeypatch):
    if not {"avx2", "avx512"} <= set(kernels.available_isas()):
        pytest.skip("this CPU cannot run both paths")
    c, o, kernel, stride, padding, dilation, h, w = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, h, w, c)).astype(np.float32)
    matrix = float_ops.conv_weight_matrix(rng.standard_normal((o, c, *kernel)), 1)
    bias = rng.standard_normal(o).astype(np.float32)
    out = [
        float_ops.conv_output_size(size, k, s, p, d)
        for size, k, s, p, d in zip((h, w), kernel, stride, padding, dilation, strict=True)
    ]
    results = []
    for path in ("avx2", "avx512"):
        monkeypatch.setenv(kernels.ENV_ISA, path)
        for panels in (
            float_ops.column_panels(matrix[0]),
            misaligned(float_ops.column_panels(matrix[0])),
        ):
            for threads in (1, 2):
                y = float_ops._native_conv(
                    x, panels, bias, o, out, kernel, stride, padding, dilation, threads
                )
                results.append(y)
    for y in results[1:]:
        np.testing.assert_array_equal(y.view(np.uint32), results[0].view(np.uint32))
    torch_y = F.conv2d(
        torch.from_numpy(x).permute(0, 3, 1, 2),
        torch.from_numpy(matrix[0].T.reshape(o, *kernel, c)).permute(0, 3, 1, 2),
        torch.from_numpy(bias), stride, padding, dilation,
    )  # fmt: skip
    np.testing.assert_allclose(results[0], nhwc(torch_y), rtol=1e-4, atol=1e-4)
