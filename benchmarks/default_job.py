"""The default job end to end: wall time and test accuracy of ``bnn train
recipes/default.yaml`` (binary LeNet-5 on the embedded Fashion-MNIST subset), over several
runs with different seeds (targets: >= 85 % test accuracy in <= 3 minutes on 2 cores)::

    python benchmarks/default_job.py --runs 3
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BNN = str(Path(sys.executable).with_name("bnn"))


def run_once(seed: int, folder: Path) -> tuple[float, float, float]:
    """(wall seconds, best test accuracy, final test accuracy) of one run."""
    output = folder / f"seed{seed}"
    command = [
        BNN,
        "train",
        str(ROOT / "recipes" / "default.yaml"),
        "--seed",
        str(seed),
        "--quiet",
        "--set",
        f'output.dir="{output}"',
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    with open(output / "metrics.csv") as handle:
        accuracies = [float(row["eval_acc"]) for row in csv.DictReader(handle)]
    return wall, max(accuracies), accuracies[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.runs):
            wall, best, final = run_once(seed, Path(folder))
            results.append((wall, best, final))
            print(f"seed {seed}: {wall:6.1f} s, best {best:.2%}, final {final:.2%}", flush=True)
    walls, bests, finals = zip(*results, strict=True)
    print(
        f"median of {args.runs}: {statistics.median(walls):.1f} s wall, best accuracy "
        f"{statistics.median(bests):.2%}, final {statistics.median(finals):.2%}"
    )


if __name__ == "__main__":
    main()
