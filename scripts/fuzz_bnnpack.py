"""Fuzz the ``.bnnpack`` loader and runtime with mutated exported networks: the long
run of the fuzzer whose fast slice is ``tests/test_fuzz_bnnpack.py``
(``tests/fuzzing/bnnpack.py`` documents what each case must do)::

    python scripts/fuzz_bnnpack.py --cases 10000 --seed 7 --workers 2 --keep-failures fails/
    python scripts/fuzz_bnnpack.py --cases 2000 --library build/_libkernels_asan.so \\
        --env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libasan.so.8
    python scripts/fuzz_bnnpack.py --replay fails/case-123.bnnpack   # check kept files again

It prints a summary (cases, accepted, rejected by message class, crashes, hangs, other
failures, cases per second) and exits with status 1 if any case failed. Needs PyTorch
to export the seed networks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzzing.bnnpack import PASSING, check_files, run_cases


def _environment(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise SystemExit(f"fuzz_bnnpack: --env takes NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer (or replay kept files) and return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("::")[0].strip())
    parser.add_argument("--cases", type=int, default=10_000, help="mutated files to try")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations")
    parser.add_argument("--workers", type=int, default=2, help="parallel child processes")
    parser.add_argument("--library", type=Path, help="kernel library to load instead")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE",
        help="environment variable of the child processes (repeatable)",
    )  # fmt: skip
    parser.add_argument("--keep-failures", type=Path, help="directory for failing files")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per file")
    parser.add_argument("--batch-size", type=int, default=25, help="files per child process")
    parser.add_argument("--replay", type=Path, nargs="+", help="check these files instead")
    parser.add_argument("--threads", type=int, default=1, help="kernel threads (--replay)")
    args = parser.parse_args(argv)
    env = _environment(args.env)
    if args.replay:
        results = check_files(args.replay, args.library, env, args.timeout, args.threads)
        for path, result in zip(args.replay, results, strict=True):
            detail = result.get("message", "")
            error = (
                f"{result['error']} at {result.get('where', '?')}: " if "error" in result else ""
            )
            print(f"{path}: {result['outcome']} {error}{detail}")
        return int(any(result["outcome"] not in PASSING for result in results))
    report = run_cases(
        args.cases,
        args.seed,
        args.library,
        env,
        args.workers,
        keep_failures=args.keep_failures,
        timeout=args.timeout,
        batch_size=args.batch_size,
    )
    print(report.summary())
    if report.failures:
        print("\nfailing cases:")
        for failure in report.failures:
            print(f"  {failure}"[:600])
    return int(report.failed)


if __name__ == "__main__":
    sys.exit(main())
