"""Packed XNOR-popcount convolution against torch's float32 convolution, measured in one
run: the four binary 3x3 layer shapes of ResNet-18 at batch 1 (64x56x56, 128x28x28,
256x14x14, 512x7x7; in = out channels, stride 1, padding 1).

Baseline: the faster of torch float32 conv2d in NCHW and in channels_last. Kernel: a
prepared layer (bnn_runtime.kernels.BinaryConv2d, weights laid out once, as an
inference engine holds them) run two ways: from the float NHWC input (binarizing and
packing it is part of the time) to a float output, and from packed bits to packed bits
(what a run of binary layers does); plus the one-shot call binary_conv2d from float
input, which prepares the weights on every call. Both sides use the same number of
threads. Methods are interleaved round by round; each figure is the median over rounds
of the per-round median call time. Targets: >= 10x in aggregate and >= 7x on every
layer from float input; 15x packed to packed::

    python benchmarks/binary_conv.py --rounds 15
    python benchmarks/binary_conv.py --isa avx2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from timing import per_call  # benchmarks/timing.py, beside this script

from bnn_runtime import kernels

LAYERS = [(64, 56), (128, 28), (256, 14), (512, 7)]
METHODS = ("torch NCHW", "torch channels_last", "kernel float", "kernel packed", "one-shot")


def cpu_name() -> str:
    """The processor's model name (Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def layer_methods(channels: int, size: int, threads: int) -> dict[str, Callable[[], object]]:
    """The four ways of running one layer, after checking that the kernel agrees with
    torch's convolution of the signs."""
    gen = torch.Generator().manual_seed(channels)
    x = torch.randn(1, channels, size, size, generator=gen)
    w = torch.randn(channels, channels, 3, 3, generator=gen)
    scale = torch.rand(channels, generator=gen) + 0.5
    bias = torch.randn(channels, generator=gen)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    w_cl = w.contiguous(memory_format=torch.channels_last)

    x_nhwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())
    w_packed = kernels.pack_weights(w.numpy())
    x_packed = kernels.pack_activations(x_nhwc)
    opts = dict(in_channels=channels, kernel_size=3, padding=1, threads=threads,
                scale=scale.numpy(), bias=bias.numpy())  # fmt: skip
    to_float = kernels.BinaryConv2d(w_packed, **opts)
    to_packed = kernels.BinaryConv2d(w_packed, output="packed", **opts)

    def sign(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t >= 0, 1.0, -1.0)

    expected = F.conv2d(sign(x), sign(w), padding=1) * scale[:, None, None] + bias[:, None, None]
    if not np.array_equal(to_float(x_nhwc), expected.permute(0, 2, 3, 1).numpy()):
        raise SystemExit(f"kernel output differs from torch for layer {channels}x{size}x{size}")

    with torch.no_grad():
        return {
            "torch NCHW": lambda: F.conv2d(x, w, padding=1),
            "torch channels_last": lambda: F.conv2d(x_cl, w_cl, padding=1),
            "kernel float": lambda: to_float(x_nhwc),
            "kernel packed": lambda: to_packed(x_packed),
            "one-shot": lambda: kernels.binary_conv2d(x_nhwc, w_packed, **opts),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=5, help="calls per method per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--isa", choices=[*kernels.available_isas(), "auto"], default="auto")
    args = parser.parse_args()
    if args.isa != "auto":
        os.environ[kernels.ENV_ISA] = args.isa
    torch.set_num_threads(args.threads)
    print(
        f"CPU: {cpu_name()}; ISA path: {kernels.isa()} (available: "
        f"{', '.join(kernels.available_isas())}); threads: {args.threads}; torch "
        f"{torch.__version__}; {args.rounds} rounds x {args.calls} calls"
    )

    methods = {layer: layer_methods(*layer, args.threads) for layer in LAYERS}
    for fns in methods.values():  # warm-up
        for fn in fns.values():
            per_call(fn, 2)
    times: dict[tuple[int, int], dict[str, list[float]]] = {
        layer: {m: [] for m in METHODS} for layer in LAYERS
    }
    for _ in range(args.rounds):
        for layer, fns in methods.items():
            for name, fn in fns.items():
                times[layer][name].append(per_call(fn, args.calls))

    print(f"{'layer':>12} {'NCHW':>8} {'ch_last':>8} {'float>':>8} {'ratio':>6} "
          f"{'packed>':>8} {'ratio':>6} {'one-shot':>8} {'ratio':>6}"
          "   (ms; ratio = best torch / kernel)")  # fmt: skip
    totals = {"torch": 0.0, "kernel float": 0.0, "kernel packed": 0.0, "one-shot": 0.0}
    for (channels, size), per_method in times.items():
        med = {m: statistics.median(v) * 1e3 for m, v in per_method.items()}
        best = min(med["torch NCHW"], med["torch channels_last"])
        totals["torch"] += best
        totals["kernel float"] += med["kernel float"]
        totals["kernel packed"] += med["kernel packed"]
        totals["one-shot"] += med["one-shot"]
        print(
            f"{f'{channels}x{size}x{size}':>12} {med['torch NCHW']:8.3f} "
            f"{med['torch channels_last']:8.3f} {med['kernel float']:8.3f} "
            f"{best / med['kernel float']:5.1f}x {med['kernel packed']:8.3f} "
            f"{best / med['kernel packed']:5.1f}x {med['one-shot']:8.3f} "
            f"{best / med['one-shot']:5.1f}x"
        )
    print(
        f"{'aggregate':>12} {'':8} {totals['torch']:8.3f} {totals['kernel float']:8.3f} "
        f"{totals['torch'] / totals['kernel float']:5.1f}x {totals['kernel packed']:8.3f} "
        f"{totals['torch'] / totals['kernel packed']:5.1f}x {totals['one-shot']:8.3f} "
        f"{totals['torch'] / totals['one-shot']:5.1f}x"
    )


if __name__ == "__main__":
    main()
