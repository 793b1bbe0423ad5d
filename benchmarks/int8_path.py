"""The int8 stem of Bi-Real ResNet-18 against the float one: the 3->64 7x7 convolution
(stride 2, padding 3) of a 1x3x224x224 input, as an int8 export runs it
(``bnn_runtime.int8_steps.qconv2d``: quantize, convolve in int8, requantize) and as the
float export runs it (``bnn_runtime.float_ops.conv2d``), on the same channels-last input
and the same number of threads, each timing the median of five rounds of ``--calls``
calls. The int8 output is checked against the NumPy reference
(``bnn_runtime.int8_reference.qconv2d``), which it must equal bit for bit::

    python benchmarks/int8_path.py --calls 30 --threads 2 [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

import numpy as np
from timing import per_call  # benchmarks/timing.py, beside this script

from bnn_runtime import blas, float_ops, int8_reference, int8_steps, kernels

SHAPE = (3, 224, 224)
OUT, KERNEL, STRIDE, PADDING = 64, 7, 2, 3
#: The input's calibrated scale and zero point (a standard-normal input clipped near 4).
SCALE, ZERO_POINT = 8.0 / 127, 64


def stem(threads: int, calls: int) -> dict[str, Any]:
    """Milliseconds of the int8 and the float stem, and whether int8 equals its reference."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((OUT, SHAPE[0], KERNEL, KERNEL)).astype(np.float32)
    bias = rng.standard_normal(OUT).astype(np.float32)
    x = float_ops.channels_last(rng.standard_normal((1, *SHAPE), dtype=np.float32))
    geometry = ((KERNEL,) * 2, (STRIDE,) * 2, (PADDING,) * 2, (1, 1))

    matrix = float_ops.conv_weight_matrix(weight, 1)
    panels = float_ops.column_panels(matrix[0])

    def floats() -> np.ndarray:
        return float_ops.conv2d(x, matrix, bias, *geometry, threads, panels)

    weight_scale = np.abs(weight).max(axis=(1, 2, 3)) / 127
    qweight = np.rint(weight / weight_scale[:, None, None, None]).astype(np.int8)
    stored = {"weight_scale": weight_scale.astype(np.float32), "bias": bias}
    attrs = {
        "input_scale": SCALE,
        "input_zero_point": ZERO_POINT,
        "kernel_size": geometry[0],
        "stride": geometry[1],
        "padding": geometry[2],
        "dilation": geometry[3],
        "groups": 1,
    }
    step = int8_steps.qconv2d(attrs, qweight, stored.get, threads)

    def int8() -> np.ndarray:
        return step([x], False)

    inverse = int8_reference.inverse_scale(SCALE)
    multiplier = int8_reference.multipliers(SCALE, stored["weight_scale"])
    expected = int8_reference.qconv2d(
        x, qweight, multiplier, bias, inverse, ZERO_POINT, *geometry, groups=1
    )
    with blas.limited(1):
        exact = bool(np.array_equal(int8(), expected))
        rounds: dict[str, list[float]] = {"int8": [], "float": []}
        for _ in range(5):
            rounds["int8"].append(per_call(int8, calls))
            rounds["float"].append(per_call(floats, calls))
    ms = {side: statistics.median(times) * 1e3 for side, times in rounds.items()}
    return {"int8_ms": ms["int8"], "float_ms": ms["float"], "int8_exact": exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30, help="calls per timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = {"threads": args.threads, "isa": kernels.isa(), **stem(args.threads, args.calls)}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"stem 3->64 7x7/2 on 224x224, batch 1, {figures['threads']} threads, kernels: "
        f"{figures['isa']}"
    )
    print(f"  int8   {figures['int8_ms']:8.3f} ms (equals the NumPy reference: "
          f"{'yes' if figures['int8_exact'] else 'NO'})")  # fmt: skip
    print(f"  float  {figures['float_ms']:8.3f} ms")
    print(f"  int8 / float  {figures['int8_ms'] / figures['float_ms']:.2f}")


if __name__ == "__main__":
    main()
