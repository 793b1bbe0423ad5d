"""The kernels' thread team (runtime/bnn_runtime/_kernels_threads.c) hands a job out in
chunks that any member may claim. Every compiled kernel must then give the same bits on
1, 2 and 4 threads, and on more threads than this machine has cores, on every kernel
path; every part of a Python callback must run exactly once; and a caller whose workers
are held back (a test build's hook pauses each worker before it claims work) must
compute the whole job itself instead of waiting for them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bnn_runtime import _library, float_ops, int8_steps, kernels
from tests.conftest import KERNEL_PATHS

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime" / "bnn_runtime"
COMPILER = shutil.which("gcc") or shutil.which("cc")
THREADS = (2, 4, 7)

pytestmark = pytest.mark.skipif(_library.load() is None, reason="the C library is not built")


@pytest.fixture(params=[path for path in KERNEL_PATHS if path != "numpy"])
def compiled(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A compiled kernel path, forced (the NumPy reference has no threads to check;
    skipped where the CPU lacks the path)."""
    name = request.param
    if name not in kernels.available_isas():
        pytest.skip(f"this CPU cannot run the {name} path")
    monkeypatch.setenv(kernels.ENV_ISA, name)
    return name


def same_on_every_team(run: Callable[[int], np.ndarray]) -> None:
    """``run(threads)`` gives the single thread's bits on every team size, twice over."""
    alone = run(1)
    for threads in THREADS + THREADS:
        result = run(threads)
        assert result.dtype == alone.dtype and result.shape == alone.shape
        assert result.tobytes() == alone.tobytes(), f"{threads} threads differ from one"


@pytest.mark.parametrize(
    ("c", "o", "size", "stride", "groups", "output", "packed_input"),
    [
        (64, 64, 28, 1, 1, "float", False),
        (96, 128, 17, 2, 1, "packed", False),
        (128, 128, 14, 1, 1, "packed", True),
        (40, 20, 24, 1, 4, "packed", True),  # 5 channels a group: bits OR-ed into shared words
    ],
)
def test_binary_convolution_is_identical_on_every_team(
    compiled, c, o, size, stride, groups, output, packed_input
):
    rng = np.random.default_rng(c + o + size)
    weights = kernels.pack_weights(rng.standard_normal((o, c // groups, 3, 3)))
    x = rng.standard_normal((2, size, size, c)).astype(np.float32)
    layer_input = kernels.pack_activations(x, threads=1) if packed_input else x
    scale = (rng.standard_normal(o) * 0.37).astype(np.float32)
    if output == "float":
        extra = {"slope": rng.standard_normal(o).astype(np.float32)}
    else:
        extra = {"next_threshold": rng.standard_normal(o).astype(np.float32)}

    def run(threads: int) -> np.ndarray:
        layer = kernels.BinaryConv2d(
            weights, in_channels=c, stride=stride, padding=1, groups=groups,
            scale=scale,
            bias=np.linspace(-3, 3, o, dtype=np.float32), output=output, threads=threads,
            **extra,
        )  # fmt: skip
        return layer(layer_input)

    same_on_every_team(run)


def test_packing_and_float_operations_are_identical_on_every_team(compiled):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 30, 30, 64)).astype(np.float32)
    x[0, 0, 0, :8] = 0.0
    same_on_every_team(lambda t: kernels.pack_activations(x, threads=t))
    same_on_every_team(lambda t: float_ops.max_pool2d(x, (3, 3), (2, 2), (1, 1), False, t))
    same_on_every_team(
        lambda t: float_ops.avg_pool2d(x, (3, 3), (1, 1), (1, 1), True, False, None, t)
    )
    same_on_every_team(lambda t: float_ops.channels_last(x, t))
    same_on_every_team(lambda t: float_ops.channels_first(x, t))
    lib = _library.load()
    slope, shift_in, shift_out = (rng.standard_normal(64).astype(np.float32) for _ in range(3))

    def prelu(threads: int) -> np.ndarray:
        y = np.empty_like(x)
        status = lib.bnn_prelu(
            x.ctypes.data, x.size // 64, 64, shift_in.ctypes.data, slope.ctypes.data,
            shift_out.ctypes.data, y.ctypes.data, threads,
        )  # fmt: skip
        assert status == 0
        return y

    same_on_every_team(prelu)


def test_float_convolution_is_identical_on_every_team(compiled):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 40, 40, 3)).astype(np.float32)
    weight = rng.standard_normal((40, 3, 7, 7)).astype(np.float32)
    matrix = float_ops.conv_weight_matrix(weight, 1)
    panels = float_ops.column_panels(matrix[0])
    bias = rng.standard_normal(40).astype(np.float32)
    same_on_every_team(
        lambda t: float_ops.conv2d(x, matrix, bias, (7, 7), (2, 2), (3, 3), (1, 1), t, panels)
    )


def test_int8_matrix_product_is_identical_on_every_team(compiled):
    rng = np.random.default_rng(7)
    a = rng.integers(0, 128, (300, 147), dtype=np.uint8)
    weight = int8_steps.Packed(rng.integers(-127, 128, (72, 147)))
    multiplier = rng.uniform(1e-4, 1e-2, 72).astype(np.float32)
    bias = rng.standard_normal(72).astype(np.float32)
    same_on_every_team(lambda t: int8_steps.qgemm(a, weight, 3, multiplier, bias, t))


@pytest.mark.parametrize("parts", [1, 2, 3, 8, 17])
def test_every_part_of_a_callback_runs_once(parts):
    calls: list[tuple[int, int]] = []
    callback = _library.CALLBACK(lambda part, team: calls.append((part, team)))
    _library.load().bnn_parallel_callback(parts, callback)
    assert sorted(calls) == [(part, parts) for part in range(parts)]


def test_callers_on_several_threads_each_get_their_whole_job():
    """Jobs from several Python threads at once: one holds the team, the others run on
    their own threads; every part of every job runs once."""
    lib = _library.load()
    seen: list[list[int]] = [[] for _ in range(4)]
    callbacks = [
        _library.CALLBACK(lambda part, team, mine=mine: mine.append(part)) for mine in seen
    ]

    def caller(index: int) -> None:
        for _ in range(50):
            lib.bnn_parallel_callback(3, callbacks[index])

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for parts in seen:
        assert sorted(parts) == sorted(list(range(3)) * 50)


# Runs with the hooked library (argv[1]): its workers sleep 0.4 s before claiming work.
DELAYED = """
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bnn_runtime import _library, kernels

_library.library_path = lambda: Path(sys.argv[1])
lib = _library.load()
assert lib is not None
rng = np.random.default_rng(0)
weights = kernels.pack_weights(rng.standard_normal((64, 64, 3, 3)))
x = rng.standard_normal((1, 56, 56, 64)).astype(np.float32)
alone = kernels.BinaryConv2d(weights, in_channels=64, padding=1, threads=1)(x)
team = kernels.BinaryConv2d(weights, in_channels=64, padding=1, threads=2)
start = time.perf_counter()
for _ in range(5):
    assert team(x).tobytes() == alone.tobytes()
kernel_s = time.perf_counter() - start
runners = []
callback = _library.CALLBACK(lambda part, parts: runners.append(threading.get_ident()))
start = time.perf_counter()
lib.bnn_parallel_callback(4, callback)
callback_s = time.perf_counter() - start
assert runners == [threading.get_ident()] * 4, runners
time.sleep(0.6)  # the workers wake up after their jobs have ended and must claim nothing
assert team(x).tobytes() == alone.tobytes()
print(f"{kernel_s:.3f} {callback_s:.3f}")
"""


@pytest.mark.skipif(COMPILER is None, reason="needs a C compiler")
def test_a_caller_does_not_wait_for_workers_that_start_late(tmp_path: Path) -> None:
    """With every worker paused 0.4 s before it claims, five layers on two threads and a
    four-part callback finish well within one pause: the caller takes every chunk."""
    library = tmp_path / "_libkernels_delayed.so"
    sources = sorted(str(p) for p in RUNTIME.glob("_kernels*.c"))
    subprocess.run(
        [COMPILER, "-O1", "-shared", "-fPIC", "-pthread", "-ffp-contract=off",
         "-DBNN_TEST_HOOKS", *sources, "-o", str(library)],
        check=True, cwd=RUNTIME,
    )  # fmt: skip
    env = {**os.environ, "BNN_TEST_WORKER_DELAY_US": "400000", "PYTHONPATH": str(ROOT)}
    env.pop("BNN_RUNTIME_ISA", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DELAYED), str(library)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    kernel_s, callback_s = (float(v) for v in done.stdout.split())
    assert kernel_s < 0.4 and callback_s < 0.4, done.stdout
