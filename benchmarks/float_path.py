"""Where the packed Bi-Real ResNet-18 spends its time outside the binary layers: the
float 7x7 stem convolution against the CPU's multiply-add peak and against PyTorch, and
the executor's per-node overhead, measured in one run.

Stem: the 3->64 7x7 convolution (stride 2, padding 3) of a 1x3x224x224 input as the
runtime computes it (``bnn_runtime.float_ops.conv2d`` on channels-last data), in GFLOP/s
(one multiply-add counts two) and as a fraction of the peak, beside ``torch.conv2d`` of
the same shape on the same number of threads. The peak is measured: a loop of
independent vector FMAs (16 floats with AVX-512, 8 with AVX2) is compiled at run time
with the system C compiler and run on every thread at once; without a compiler the
peak is assumed to be threads x vector width x 2 FMA units x 2 flops x the clock that
``/proc/cpuinfo`` reports, and the output says so.

Overhead: the whole network's batch-1 time against the sum of the time inside its steps
(the rest is the executor's loop and the input and output layout changes), and the
same network on a 1x3x32x32 input, where the arithmetic of most nodes is negligible:
the median node time there is the Python overhead of one node (the wrapper code and the
foreign call around the kernel), and that times the node count is its share of the
batch-1 224x224 time::

    python benchmarks/float_path.py --calls 30 --threads 2 [--json]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timing import per_call  # benchmarks/timing.py, beside this script

from bnn.deploy import export
from bnn_core.registries import create_model
from bnn_runtime import blas, dispatch, float_ops, kernels
from bnn_runtime.executor import Network, load

SHAPE = (3, 224, 224)
TINY = (3, 32, 32)
STEM = {"out": 64, "kernel": 7, "stride": 2, "padding": 3}
#: Independent accumulators of the FMA loop: more than FMA latency x units, so the loop
#: is bound by throughput.
CHAINS = 12
FMA_SOURCE = """
#include <immintrin.h>
#include <stdint.h>
#define CHAINS {chains}
float fma_loop(int64_t iterations) {{
    {vector} acc[CHAINS];
    {vector} m = {set1}(0.9999999f), b = {set1}(1e-7f);
    for (int k = 0; k < CHAINS; k++) acc[k] = {set1}((float)k);
    for (int64_t i = 0; i < iterations; i++) {{
        for (int k = 0; k < CHAINS; k++) acc[k] = {fmadd}(acc[k], m, b);
    }}
    float total = 0.0f, lanes[{width}];
    for (int k = 0; k < CHAINS; k++) {{
        {store}(lanes, acc[k]);
        for (int j = 0; j < {width}; j++) total += lanes[j];
    }}
    return total;
}}
"""
VECTORS = {
    "avx512": {"vector": "__m512", "set1": "_mm512_set1_ps", "fmadd": "_mm512_fmadd_ps",
               "store": "_mm512_storeu_ps", "width": 16, "flags": ["-mavx512f", "-mfma"]},
    "avx2": {"vector": "__m256", "set1": "_mm256_set1_ps", "fmadd": "_mm256_fmadd_ps",
             "store": "_mm256_storeu_ps", "width": 8, "flags": ["-mavx2", "-mfma"]},
}  # fmt: skip


def fma_peak(threads: int, folder: Path) -> dict[str, Any]:
    """The CPU's float32 FMA peak in GFLOP/s on ``threads`` threads: measured by a loop
    compiled at run time, or assumed from the clock when no compiler (or no AVX2) is
    available; ``how`` says which."""
    widest = next((isa for isa in ("avx512", "avx2") if isa in dispatch.available_isas()), None)
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if widest is None or compiler is None:
        return _assumed_peak(threads, 16 if widest == "avx512" else 8)
    vector = VECTORS[widest]
    source, library = folder / "fma.c", folder / "fma.so"
    source.write_text(FMA_SOURCE.format(chains=CHAINS, **vector))
    subprocess.run(
        [compiler, "-O3", "-shared", "-fPIC", *vector["flags"], str(source), "-o", str(library)],
        check=True,
    )
    loop = ctypes.CDLL(str(library)).fma_loop
    loop.argtypes, loop.restype = [ctypes.c_int64], ctypes.c_float
    iterations = 20_000_000
    loop(iterations // 10)
    best = 0.0
    for _ in range(3):  # ctypes releases the GIL, so the threads run the loop at once
        workers = [threading.Thread(target=loop, args=(iterations,)) for _ in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
        best = max(best, threads * iterations * CHAINS * vector["width"] * 2 / elapsed / 1e9)
    return {"gflops": best, "how": f"measured: {widest} FMA loop on {threads} threads"}


def _assumed_peak(threads: int, width: int) -> dict[str, Any]:
    """threads x width x 2 FMA units x 2 flops x the reported clock."""
    megahertz = 0.0
    with Path("/proc/cpuinfo").open() as info:
        for line in info:
            if line.startswith("cpu MHz"):
                megahertz = max(megahertz, float(line.split(":")[1]))
    gflops = threads * width * 2 * 2 * megahertz / 1e3
    return {
        "gflops": gflops,
        "how": f"assumed: {threads} threads x {width} floats x 2 FMA units x 2 flops x "
        f"{megahertz:.0f} MHz",
    }


def stem(threads: int, calls: int) -> dict[str, Any]:
    """The stem convolution in the runtime and in PyTorch: ms and GFLOP/s."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((STEM["out"], SHAPE[0], STEM["kernel"], STEM["kernel"]))
    weight = weight.astype(np.float32)
    bias = rng.standard_normal(STEM["out"]).astype(np.float32)
    x = rng.standard_normal((1, *SHAPE), dtype=np.float32)
    matrix = float_ops.conv_weight_matrix(weight, 1)
    panels = float_ops.column_panels(matrix[0])
    nhwc = float_ops.channels_last(x)
    geometry = ((STEM["kernel"],) * 2, (STEM["stride"],) * 2, (STEM["padding"],) * 2, (1, 1))

    def ours() -> np.ndarray:
        return float_ops.conv2d(nhwc, matrix, bias, *geometry, threads, panels)

    tensor, weights, biases = (torch.from_numpy(a) for a in (x, weight, bias))

    def theirs() -> torch.Tensor:
        return torch.conv2d(tensor, weights, biases, STEM["stride"], STEM["padding"])

    with torch.no_grad(), blas.limited(1):
        expected = theirs().numpy()
        got = float_ops.channels_first(ours())
        ours_s, theirs_s = [], []
        for _ in range(5):
            ours_s.append(per_call(ours, calls))
            theirs_s.append(per_call(theirs, calls))
    out = expected.shape[2] * expected.shape[3]
    flops = 2 * STEM["out"] * out * SHAPE[0] * STEM["kernel"] ** 2
    ms = {"runtime": statistics.median(ours_s) * 1e3, "torch": statistics.median(theirs_s) * 1e3}
    return {
        "flops": flops,
        "runtime_ms": ms["runtime"],
        "torch_ms": ms["torch"],
        "runtime_gflops": flops / ms["runtime"] / 1e6,
        "torch_gflops": flops / ms["torch"] / 1e6,
        "max_abs_diff": float(np.abs(got - expected).max()),
    }


def overhead(network: Network, calls: int) -> dict[str, Any]:
    """The executor's time outside its steps at 224x224, and the per-node time at 32x32."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, *SHAPE), dtype=np.float32)
    tiny = rng.standard_normal((1, *TINY), dtype=np.float32)
    for _ in range(3):
        network(x), network(tiny)
    whole = per_call(lambda: network(x), calls)
    profiled, inside = [], []
    for _ in range(calls):
        start = time.perf_counter()
        _, timings = network.run(x, profile=True)
        profiled.append(time.perf_counter() - start)
        inside.append(sum(timing.seconds for timing in timings))
    tiny_whole = per_call(lambda: network(tiny), calls * 4)
    per_node: dict[str, list[float]] = {}
    for _ in range(calls * 4):
        for timing in network.run(tiny, profile=True)[1]:
            per_node.setdefault(timing.name, []).append(timing.seconds)
    node_seconds = [statistics.median(values) for values in per_node.values()]
    per_node_us = statistics.median(node_seconds) * 1e6
    nodes = len(node_seconds)
    return {
        "whole_ms": whole * 1e3,
        "profiled_ms": statistics.median(profiled) * 1e3,
        "inside_steps_ms": statistics.median(inside) * 1e3,
        "steps": nodes,
        "tiny_whole_us": tiny_whole * 1e6,
        "overhead_per_node_us": per_node_us,
        "overhead_share": nodes * per_node_us / 1e3 / (whole * 1e3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30, help="calls per timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        peak = fma_peak(args.threads, Path(folder))
        path = Path(folder) / "resnet18_bireal.bnnpack"
        export(create_model("resnet18_bireal", binarize=True).eval(), path, SHAPE)
        network = load(path, threads=args.threads)
    figures = {
        "threads": args.threads,
        "isa": kernels.isa(),
        "peak_gflops": peak["gflops"],
        "peak": peak["how"],
        "stem": stem(args.threads, args.calls),
        "overhead": overhead(network, args.calls),
    }
    for side in ("runtime", "torch"):
        figures["stem"][f"{side}_of_peak"] = figures["stem"][f"{side}_gflops"] / peak["gflops"]
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    report(figures)


def report(figures: dict[str, Any]) -> None:
    """The figures as a table."""
    conv, spent = figures["stem"], figures["overhead"]
    print(
        f"float path of Bi-Real ResNet-18, batch 1, {figures['threads']} threads, kernels: "
        f"{figures['isa']}; FMA peak {figures['peak_gflops']:.0f} GFLOP/s ({figures['peak']})"
    )
    print(f"\n  stem 3->64 7x7/2 on 224x224 ({conv['flops'] / 1e6:.0f} MFLOP)")
    print(f"  {'':16} {'ms':>8} {'GFLOP/s':>9} {'of peak':>8}")
    for side, label in (("runtime", "packed runtime"), ("torch", "torch.conv2d")):
        print(
            f"  {label:16} {conv[side + '_ms']:8.3f} {conv[side + '_gflops']:9.1f} "
            f"{conv[side + '_of_peak']:8.1%}"
        )
    print(f"  (largest difference from torch: {conv['max_abs_diff']:.2g})")
    print(f"\n  executor ({spent['steps']} steps)")
    rows = [
        ("whole network, 224x224", f"{spent['whole_ms']:.3f} ms"),
        ("  profiled call", f"{spent['profiled_ms']:.3f} ms"),
        ("  inside its steps", f"{spent['inside_steps_ms']:.3f} ms"),
        ("  outside them", f"{spent['profiled_ms'] - spent['inside_steps_ms']:.3f} ms"),
        ("whole network, 32x32", f"{spent['tiny_whole_us']:.1f} µs"),
        ("Python overhead per node", f"{spent['overhead_per_node_us']:.1f} µs"),
        ("  share of the 224x224 call", f"{spent['overhead_share']:.1%}"),
    ]
    for label, value in rows:
        print(f"  {label:28} {value:>12}")


if __name__ == "__main__":
    main()
