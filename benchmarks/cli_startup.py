"""Start-up time of the fast commands against importing torch, in the same environment.

``bnn --help`` and ``bnn list-plugins`` must not import torch. This measures their wall
time against ``python -c "import torch"``, interleaved, and prints medians and ratios
(target: list-plugins <= 0.15 x import torch)::

    python benchmarks/cli_startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BNN = str(Path(sys.executable).with_name("bnn"))
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "bnn --help": [BNN, "--help"],
    "bnn list-plugins": [BNN, "list-plugins"],
}


def wall_time(argv: list[str]) -> float:
    """Seconds one run of ``argv`` takes, from spawn to exit."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for argv in COMMANDS.values():  # warm the file cache once
        wall_time(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            times[name].append(wall_time(argv))
    baseline = statistics.median(times["import torch"])
    print(f"{'command':<20} {'median s':>9} {'ratio to import torch':>22}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<20} {median:>9.3f} {median / baseline:>22.3f}")


if __name__ == "__main__":
    main()
