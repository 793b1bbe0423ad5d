"""What validating an untrusted ``.bnnpack`` costs: the complete check of Bi-Real
ResNet-18's graph and tensors (``bnn_runtime.validate.check``) and the whole read
(SHA-256, header, tensor entries, validation) against the whole load (the read, then
every layer prepared) and one batch-1 inference of the same network, measured in one
run.

Validation happens once per load, never per call; the target is that it stays a small
fraction of a single inference. Figures are medians over ``--repeats`` calls::

    python benchmarks/load_validation.py --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import per_call  # benchmarks/timing.py, beside this script

from bnn.deploy import export
from bnn_core.registries import create_model
from bnn_runtime import format as bnnpack
from bnn_runtime import validate
from bnn_runtime.executor import load

SHAPE = (3, 224, 224)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "resnet18_bireal.bnnpack"
        export(create_model("resnet18_bireal", binarize=True).eval(), path, SHAPE)
        pack = bnnpack.read(path)
        specs = pack.specs
        checked = per_call(lambda: validate.check(path, pack.graph, specs), args.repeats)
        read = per_call(lambda: bnnpack.read(path), max(3, args.repeats // 3))
        loading = per_call(lambda: load(path, threads=args.threads), max(3, args.repeats // 3))
        network = load(path, threads=args.threads)
        x = np.random.default_rng(0).standard_normal((1, *SHAPE), dtype=np.float32)
        network(x)
        inference = per_call(lambda: network(x), args.repeats)
    print(f"Bi-Real ResNet-18, {len(pack.graph.nodes)} nodes, {len(specs)} tensors, "
          f"{args.threads} threads")  # fmt: skip
    print(f"validation            {checked * 1e3:8.3f} ms")
    print(f"whole read            {read * 1e3:8.3f} ms  (SHA-256, header, entries, validation)")
    print(f"whole load            {loading * 1e3:8.3f} ms  (read, then every layer prepared)")
    print(f"one inference (N=1)   {inference * 1e3:8.3f} ms")
    print(f"validation / inference {checked / inference:7.2%}")
    print(f"whole read / inference {read / inference:7.2%}")


if __name__ == "__main__":
    main()
