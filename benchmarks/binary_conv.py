"""Packed XNOR-popcount convolution against torch's float32 convolution, measured in one
run: the four binary 3x3 layer shapes of ResNet-18 at batch 1 (64x56x56, 128x28x28,
256x14x14, 512x7x7; in = out channels, stride 1, padding 1).

Baseline: the faster of torch float32 conv2d in NCHW and in channels_last. Kernel: a
prepared layer (bnn_runtime.kernels.BinaryConv2d, weights laid out once, as an
inference engine holds them) run two ways: from the float NHWC input (binarizing and
packing it is part of the time) to a float output, and from packed bits to packed bits
(what a run of binary layers does); plus the one-shot call binary_conv2d from float
input, which prepares the weights on every call. Both sides use the same number of
threads. Peer: OpenVINO's own XNOR-popcount operator (opset1 BinaryConvolution on the CPU
plugin, built in benchmarks/openvino_binary.py) from the float NCHW input (its model's
layout) to the float output with the same scale and bias, compiled with the same number
of inference threads and the latency hint; it is timed only where its output equals
the kernel's and torch's, and a missing openvino package is a one-line note. Methods are
interleaved round by round; each figure is the median over rounds of the per-round
median call time. Targets: >= 10x torch in aggregate and >= 7x on every layer from
float input; 15x packed to packed; >= 3x OpenVINO in aggregate from float input::

    python benchmarks/binary_conv.py --rounds 15
    python benchmarks/binary_conv.py --isa avx2
    python benchmarks/binary_conv.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import openvino_binary  # benchmarks/openvino_binary.py, beside this script
import torch
import torch.nn.functional as F
from timing import per_call  # benchmarks/timing.py, beside this script

from bnn_runtime import kernels

LAYERS = [(64, 56), (128, 28), (256, 14), (512, 7)]
OPENVINO = "OpenVINO"


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


@dataclass
class Layer:
    """One layer shape's timed methods, and what became of the OpenVINO peer: the CPU
    plugin's kernel for it, or the note saying why it is not timed."""

    methods: dict[str, Callable[[], object]]
    openvino_kernel: str | None = None
    note: str | None = None


def openvino_peer(
    name: str, x: torch.Tensor, w: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
    references: dict[str, np.ndarray], threads: int,
) -> tuple[Callable[[], object] | None, str]:  # fmt: skip
    """OpenVINO's BinaryConvolution for one layer and the CPU plugin's kernel for it, or
    None and the reason when its NCHW output differs from one of ``references``."""
    size = x.shape[-1]
    model = openvino_binary.binary_conv_model(w.numpy(), scale.numpy(), bias.numpy(), size)
    compiled = openvino_binary.compile_cpu(model, threads)
    x_nchw = x.numpy()
    out = compiled(x_nchw)[0]
    for source, expected in references.items():
        if not np.array_equal(out, expected):
            differ = out != expected
            return None, (
                f"OpenVINO BinaryConvolution differs from {source} on layer {name}: "
                f"{differ.sum()} of {differ.size} outputs, largest difference "
                f"{np.abs(out - expected).max():g}; not timed"
            )
    return openvino_binary.infer_call(compiled, x_nchw), openvino_binary.binary_primitive(compiled)


def layer_methods(channels: int, size: int, threads: int) -> Layer:
    """The ways of running one layer, after checking that the kernel agrees with torch's
    convolution of the signs (and OpenVINO, where installed, with both)."""
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

    name = f"{channels}x{size}x{size}"
    expected = F.conv2d(sign(x), sign(w), padding=1) * scale[:, None, None] + bias[:, None, None]
    ours = to_float(x_nhwc)
    if not np.array_equal(ours, expected.permute(0, 2, 3, 1).numpy()):
        raise SystemExit(f"kernel output differs from torch for layer {name}")

    with torch.no_grad():
        layer = Layer(
            {
                "torch NCHW": lambda: F.conv2d(x, w, padding=1),
                "torch channels_last": lambda: F.conv2d(x_cl, w_cl, padding=1),
                "kernel float": lambda: to_float(x_nhwc),
                "kernel packed": lambda: to_packed(x_packed),
                "one-shot": lambda: kernels.binary_conv2d(x_nhwc, w_packed, **opts),
            }
        )
    if openvino_binary.available():
        references = {"torch": expected.numpy(), "the kernel": ours.transpose(0, 3, 1, 2)}
        peer, detail = openvino_peer(name, x, w, scale, bias, references, threads)
        if peer is None:
            layer.note = detail
        else:
            layer.methods[OPENVINO] = peer
            layer.openvino_kernel = detail
    return layer


def layer_figures(name: str, med: dict[str, float], layer: Layer, best: float) -> dict[str, object]:
    """The JSON fields of one layer (or of the aggregate) from its median milliseconds per
    method; ``best`` is the torch figure the kernel is compared with."""
    openvino_ms = med.get(OPENVINO)
    return {
        "layer": name,
        "torch_nchw_ms": med["torch NCHW"],
        "torch_channels_last_ms": med["torch channels_last"],
        "torch_best_ms": best,
        "kernel_float_ms": med["kernel float"],
        "kernel_packed_ms": med["kernel packed"],
        "one_shot_ms": med["one-shot"],
        "openvino_ms": openvino_ms,
        "openvino_kernel": layer.openvino_kernel,
        "openvino_note": layer.note,
        "speedup_float_vs_torch": best / med["kernel float"],
        "speedup_packed_vs_torch": best / med["kernel packed"],
        "speedup_one_shot_vs_torch": best / med["one-shot"],
        "speedup_float_vs_openvino": (
            None if openvino_ms is None else openvino_ms / med["kernel float"]
        ),
    }


def paired_ratio(
    times: dict[tuple[int, int], dict[str, list[float]]], slow: str, fast: str, rounds: int
) -> float:
    """The median over rounds of one round's aggregate ``slow`` time over its aggregate
    ``fast`` time: both are measured within a fraction of a second of each other, so a
    slow spell of a shared machine weighs on both sides of each ratio."""
    return statistics.median(
        sum(per_method[slow][r] for per_method in times.values())
        / sum(per_method[fast][r] for per_method in times.values())
        for r in range(rounds)
    )


def print_table(rows: list[dict[str, object]]) -> None:
    """The figures as a table: milliseconds, and how many times faster the kernel is."""

    def ms(value: object) -> str:
        return f"{value:8.3f}" if isinstance(value, float) else f"{'-':>8}"

    def times(value: object) -> str:
        return f"{value:5.1f}x" if isinstance(value, float) else f"{'-':>6}"

    print(f"{'layer':>12} {'NCHW':>8} {'ch_last':>8} {'float>':>8} {'ratio':>6} "
          f"{'packed>':>8} {'ratio':>6} {'one-shot':>8} {'ratio':>6} {'OpenVINO':>8} "
          f"{'ratio':>6}   (ms; ratio = best torch / kernel, OpenVINO / kernel float)")  # fmt: skip
    for row in rows:
        print(
            f"{row['layer']:>12} {ms(row['torch_nchw_ms'])} {ms(row['torch_channels_last_ms'])} "
            f"{ms(row['kernel_float_ms'])} {times(row['speedup_float_vs_torch'])} "
            f"{ms(row['kernel_packed_ms'])} {times(row['speedup_packed_vs_torch'])} "
            f"{ms(row['one_shot_ms'])} {times(row['speedup_one_shot_vs_torch'])} "
            f"{ms(row['openvino_ms'])} {times(row['speedup_float_vs_openvino'])}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=5, help="calls per method per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--isa", choices=[*kernels.available_isas(), "auto"], default="auto")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.isa != "auto":
        os.environ[kernels.ENV_ISA] = args.isa
    torch.set_num_threads(args.threads)
    openvino_version = openvino_binary.version()

    layers = {layer: layer_methods(*layer, args.threads) for layer in LAYERS}
    for layer in layers.values():  # warm-up
        for fn in layer.methods.values():
            per_call(fn, 2)
    times: dict[tuple[int, int], dict[str, list[float]]] = {
        shape: {m: [] for m in layer.methods} for shape, layer in layers.items()
    }
    for _ in range(args.rounds):
        for shape, layer in layers.items():
            for name, fn in layer.methods.items():
                times[shape][name].append(per_call(fn, args.calls))

    rows = []
    totals: dict[str, float] = {}
    for (channels, size), per_method in times.items():
        med = {m: statistics.median(v) * 1e3 for m, v in per_method.items()}
        best = min(med["torch NCHW"], med["torch channels_last"])
        rows.append(layer_figures(f"{channels}x{size}x{size}", med, layers[channels, size], best))
        for m, value in med.items():
            totals[m] = totals.get(m, 0.0) + value
    if any(OPENVINO not in layer.methods for layer in layers.values()):
        totals.pop(OPENVINO, None)  # an aggregate of some layers only would mislead
    # The aggregate's torch figure is the sum of each layer's faster layout.
    best_sum = sum(row["torch_best_ms"] for row in rows)
    aggregate = layer_figures("aggregate", totals, Layer({}), best_sum)
    aggregate["speedup_float_vs_openvino_paired"] = (
        paired_ratio(times, OPENVINO, "kernel float", args.rounds) if OPENVINO in totals else None
    )
    notes = [layer.note for layer in layers.values() if layer.note]
    if openvino_version is None:
        notes.append("openvino is not installed: OpenVINO BinaryConvolution not measured")
    kernels_used = sorted({layer.openvino_kernel for layer in layers.values()} - {None})

    if args.json:
        figures = {
            "cpu": cpu_name(),
            "isa": kernels.isa(),
            "threads": args.threads,
            "rounds": args.rounds,
            "calls": args.calls,
            "torch": torch.__version__,
            "openvino": openvino_version,
            "openvino_kernels": kernels_used,
            "layers": rows,
            "aggregate": aggregate,
            "notes": notes,
        }
        print(json.dumps(figures, indent=2))
        return
    openvino = ""
    if openvino_version is not None:
        used = ", ".join(kernels_used) or "none"
        openvino = f"; OpenVINO {openvino_version} (CPU plugin kernel: {used})"
    print(
        f"CPU: {cpu_name()}; ISA path: {kernels.isa()} (available: "
        f"{', '.join(kernels.available_isas())}); threads: {args.threads}; torch "
        f"{torch.__version__}{openvino}; {args.rounds} rounds x {args.calls} calls"
    )
    for note in notes:
        print(note)
    print_table([*rows, aggregate])
    if aggregate["speedup_float_vs_openvino_paired"] is not None:
        print(
            "OpenVINO / kernel float in aggregate, median of the rounds' own ratios: "
            f"{aggregate['speedup_float_vs_openvino_paired']:.1f}x"
        )


if __name__ == "__main__":
    main()
