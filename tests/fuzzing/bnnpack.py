"""A structure-aware fuzzer of ``.bnnpack`` files: mutated copies of real exported
networks (:mod:`tests.fuzzing.seeds`, edits in :mod:`tests.fuzzing.mutations`) are
loaded and run by ``bnn_runtime`` in child processes (:mod:`tests.fuzzing.driver`).

What a case must do. Loading a mutated file either raises
:class:`~bnn_runtime.errors.RuntimeFormatError` (outcome ``rejected``) or returns a
network. An accepted network is run on a random input of its declared shape, and once
more at another height and width for image inputs; each run may raise
:class:`~bnn_runtime.errors.RuntimeInputError` (``input-refused``) and otherwise must

* give bit-identical outputs on two runs of the same input in one process (values read
  from outside a tensor's memory tend to change between allocations), and
* equal, within float tolerance, the output of the NumPy reference path
  (``BNN_RUNTIME_ISA=numpy``) on the same loaded network, so a kernel reading memory it
  should not, or computing something other than the file says, shows up as a
  difference; ``mismatch-nonfinite`` marks differences where NaN or infinities are
  involved (hostile tensor values), ``mismatch`` the others.

Everything else is a failure: ``load-error`` / ``run-error`` (any other exception,
MemoryError and RecursionError included), ``bad-input-shape`` (a network accepted with
a non-positive input dimension), ``unstable``, ``mismatch``, ``crash`` (the process
died: a signal, a non-zero exit, a sanitizer report), ``sanitizer`` (a sanitizer report
from a process that kept running) and ``hang`` (no result within the time limit).

Cases run in batches, one child process per batch. The child limits its address space
(``RLIMIT_AS``) itself, as its first action, since a ``preexec_fn`` is unsafe while the
runner's worker threads are alive; under AddressSanitizer (``asan`` in ``LD_PRELOAD``)
it does not, and ASan's own allocation limits apply instead. When a batch process dies
or hangs, the file in flight is rerun alone; if it passes alone, the files before it
in that batch are rerun one per process to find the one that damaged the process.
Every case is reproducible from ``(seed, case id)`` alone, and each failing file is
kept with a text file describing its mutations and what went wrong.
"""

from __future__ import annotations

import json
import os
import random
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzzing import driver
from tests.fuzzing.mutations import Parts, mutate, read_seed
from tests.fuzzing.seeds import seed_files

ROOT = Path(__file__).resolve().parents[2]
DRIVER_SOURCE = Path(driver.__file__).read_text()
#: Outcomes that are not failures.
PASSING = ("rejected", "accepted", "input-refused")
MEMORY_LIMIT = 2 << 30
#: Kernel paths the cases run on ("": the fastest one), where the CPU has them.
ISAS = ("", "", "portable", "avx2", "avx512")
#: Elements of the largest input a case runs (larger declared inputs are not run).
MAX_INPUT_ELEMENTS = 1 << 22
#: Extra seconds a child gets to start (imports) before its first case's clock starts.
STARTUP_SECONDS = 20.0
ASAN_DEFAULTS = {
    "allocator_may_return_null": "1",
    "max_allocation_size_mb": "2048",
    "detect_leaks": "0",
    "abort_on_error": "1",
}
SANITIZER_PATTERN = re.compile(
    r"ERROR: (Address|Leak|Memory|Thread|UndefinedBehavior)Sanitizer|runtime error: "
)


@dataclass
class Case:
    """One mutated file: its id, seed network, path on disk and the edits made."""

    id: int
    seed_name: str
    path: Path
    mutations: list[str]
    input_seed: int
    threads: int
    isa: str = ""

    def description(self) -> str:
        """The seed network, the edits (one per line) and how the file was run."""
        path = self.isa or "the fastest"
        replay = f" --env BNN_RUNTIME_ISA={self.isa}" if self.isa else ""
        return "\n".join([
            f"seed network {self.seed_name}",
            *self.mutations,
            f"run on {path} kernel path, {self.threads} thread(s); replay with scripts/"
            f"fuzz_bnnpack.py{replay} --threads {self.threads} --replay {self.path.name}",
        ])  # fmt: skip


@dataclass
class Failure:
    """A failing case: its outcome, the error or detail, and where its file was kept."""

    case: Case
    outcome: str
    detail: str
    kept: Path | None = None

    def __str__(self) -> str:
        edits = "; ".join(self.case.mutations)
        return (
            f"case {self.case.id} [{self.outcome}] {self.detail} <- {self.case.seed_name}: {edits}"
        )


@dataclass
class FuzzReport:
    """Counts per outcome, rejections per message class, the failures and timing."""

    cases: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    kept_in: Path | None = None

    @property
    def failed(self) -> bool:
        """Whether any case failed."""
        return bool(self.failures)

    def failure_classes(self) -> Counter[str]:
        """Failures grouped by outcome and error message class."""
        return Counter(f"{f.outcome}: {message_class(f.detail)}" for f in self.failures)

    def summary(self, top: int = 15) -> str:
        """A plain-text table of the run."""
        rate = self.cases / self.seconds if self.seconds else 0.0
        crashes = self.outcomes["crash"] + self.outcomes["sanitizer"]
        rows = [
            ("cases", f"{self.cases}"),
            ("cases/s", f"{rate:.1f}"),
            ("accepted", f"{self.outcomes['accepted']}"),
            ("input refused", f"{self.outcomes['input-refused']}"),
            ("rejected", f"{self.outcomes['rejected']}"),
            ("crashes", f"{crashes}"),
            ("hangs", f"{self.outcomes['hang']}"),
            ("other failures", f"{len(self.failures) - crashes - self.outcomes['hang']}"),
        ]
        lines = [f"{name:<16}{value:>10}" for name, value in rows]
        lines.append(f"\nrejections by message class (top {top} of {len(self.rejections)}):")
        lines += [f"{count:>8}  {text}" for text, count in self.rejections.most_common(top)]
        if self.failures:
            lines.append(f"\nfailures by class ({len(self.failures)} cases):")
            lines += [f"{count:>8}  {text}" for text, count in self.failure_classes().most_common()]
            if self.kept_in is not None:
                lines.append(f"failing files and their descriptions are in {self.kept_in}")
        return "\n".join(lines)


def message_class(message: str) -> str:
    """``message`` with paths, quoted names and numbers blanked, so errors that differ
    only in the node or value they name count as one class."""
    text = re.sub(r"\S*\.bnnpack:?", "FILE", message.splitlines()[0] if message else "")
    text = re.sub(r"(?<!\w)'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"-?\d[\d,_.e+-]*", "N", text)
    text = re.sub(r"\[[^\]]*\]", "[…]", text)
    return text[:110]


def child_environment(env: dict[str, str] | None) -> tuple[dict[str, str], int]:
    """The environment of the driver processes (``env`` over this process's, the
    repository importable, OpenBLAS on one thread, ASan's allocation limits under
    ``LD_PRELOAD`` of an ASan runtime, the user's ASan options winning) and their
    address-space limit in bytes (0: none, under ASan)."""
    merged = {**os.environ, **(env or {})}
    merged["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), merged.get("PYTHONPATH")]))
    merged.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "asan" not in merged.get("LD_PRELOAD", ""):
        return merged, MEMORY_LIMIT
    items = merged.get("ASAN_OPTIONS", "").split(":")
    options = {**ASAN_DEFAULTS, **dict(item.split("=", 1) for item in items if "=" in item)}
    merged["ASAN_OPTIONS"] = ":".join(f"{key}={value}" for key, value in options.items())
    return merged, 0


class _Runner:
    """Shared state of one :func:`run_cases` call."""

    def __init__(
        self, seed: int, library: Path | None, env: dict[str, str] | None, timeout: float
    ) -> None:
        self.seed = seed
        self.library = library
        self.timeout = timeout
        self._seeds: dict[str, Parts] = {}
        self.env, self.memory_limit = child_environment(env)

    def load_seeds(self) -> None:
        """Export (once per process) and read the seed files; call before the worker
        threads start, as exporting registers plugins and traces models."""
        self._seeds.update((name, read_seed(p)) for name, p in seed_files().items())

    def case(self, index: int, directory: Path) -> Case:
        rng = random.Random(f"bnnpack-fuzz:{self.seed}:{index}")
        name = rng.choice(sorted(self._seeds))
        path = directory / f"case-{index}.bnnpack"
        mutations = mutate(rng, self._seeds[name], path)
        threads, isa = rng.choice([1, 1, 2]), rng.choice(ISAS)
        return Case(index, name, path, mutations, rng.getrandbits(32), threads, isa)

    def process(
        self, cases: list[Case], directory: Path
    ) -> tuple[dict[int, dict[str, Any]], Case | None, dict[str, Any]]:
        """Run ``cases`` in one child: the results of the cases that finished, the case
        in flight when the child died or hung (None if it ended cleanly), and what
        happened to it."""
        job = directory / f"job-{cases[0].id}.json"
        job.write_text(json.dumps({
            "library": str(self.library) if self.library else None,
            "memory_limit": self.memory_limit,
            "max_elements": MAX_INPUT_ELEMENTS,
            "cases": [{"id": c.id, "path": str(c.path), "input_seed": c.input_seed,
                       "threads": c.threads, "isa": c.isa} for c in cases],
        }))  # fmt: skip
        child = subprocess.Popen(
            [sys.executable, "-c", DRIVER_SOURCE, str(job)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        by_id = {c.id: c for c in cases}
        results: dict[int, dict[str, Any]] = {}
        in_flight: Case | None = None
        noise: list[str] = []
        deadline = time.monotonic() + self.timeout + STARTUP_SECONDS
        buffer = b""
        hung = started = False
        with selectors.DefaultSelector() as selector:
            assert child.stdout is not None
            selector.register(child.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    hung = True
                    break
                if not selector.select(left):
                    continue
                chunk = os.read(child.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    if not text.startswith(driver.MARK):
                        noise.append(text)
                        continue
                    record = json.loads(text[len(driver.MARK) :])
                    if record["event"] == "start":
                        in_flight, noise, started = by_id[record["id"]], [], True
                        deadline = time.monotonic() + self.timeout
                        continue
                    report = "\n".join(noise)
                    if SANITIZER_PATTERN.search(report):
                        record = {"outcome": "sanitizer", "message": _excerpt(report)}
                    results[record["id"]] = record
                    in_flight = None
        if hung:
            os.killpg(child.pid, signal.SIGKILL)
        status = child.wait()
        child.stdout.close()
        tail = "\n".join([*noise, buffer.decode(errors="replace")])
        if hung:
            victim = in_flight or next((c for c in cases if c.id not in results), cases[-1])
            return (
                results,
                victim,
                {"outcome": "hang", "message": f"no result after {self.timeout:g} s"},
            )
        if status == 0 and in_flight is None and len(results) == len(cases):
            return results, None, {}
        if not started:
            raise RuntimeError(f"the fuzz driver failed before its first case:\n{tail[-3000:]}")
        victim = in_flight or next((c for c in cases if c.id not in results), cases[-1])
        how = f"signal {_signal_name(-status)}" if status < 0 else f"exit status {status}"
        return results, victim, {"outcome": "crash", "message": f"{how}: {_excerpt(tail)}"}

    def batch(self, cases: list[Case], directory: Path) -> list[tuple[Case, dict[str, Any]]]:
        """Run ``cases`` (in one process unless one dies); returns each with its result."""
        results: dict[int, dict[str, Any]] = {}
        pending = list(cases)
        while pending:
            done, victim, how = self.process(pending, directory)
            results.update(done)
            if victim is None:
                break
            position = pending.index(victim)
            lone, again, alone = self.process([victim], directory)
            if again is not None:
                results[victim.id] = alone
            else:
                culprits = 0
                for case in pending[:position]:
                    _, broken, result = self.process([case], directory)
                    if broken is not None:
                        results[case.id], culprits = result, culprits + 1
                if culprits:
                    results[victim.id] = lone[victim.id]
                else:
                    how["message"] = "only after other files in one process: " + how["message"]
                    results[victim.id] = how
            pending = pending[position + 1 :]
        return [(c, results[c.id]) for c in cases]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _excerpt(text: str, limit: int = 1500) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if SANITIZER_PATTERN.search(line):
            return "\n".join(lines[index : index + 12])[:limit]
    return "\n".join(lines[-12:])[-limit:]


def run_cases(
    count: int,
    seed: int,
    library: Path | None = None,
    env: dict[str, str] | None = None,
    workers: int = 2,
    *,
    keep_failures: Path | None = None,
    timeout: float = 10.0,
    batch_size: int = 25,
) -> FuzzReport:
    """Fuzz ``bnn_runtime`` with ``count`` mutated files (cases ``0 .. count-1`` of
    ``seed``) in ``workers`` parallel child processes. ``library`` replaces the
    compiled kernel library (a sanitizer build, say); ``env`` adds environment
    variables of the children (``LD_PRELOAD``, ``ASAN_OPTIONS``, ``BNN_RUNTIME_ISA``).
    Failing files are copied with a description into ``keep_failures`` (default: a new
    temporary directory, made only when something fails)."""
    runner = _Runner(seed, library, env, timeout)
    runner.load_seeds()
    report = FuzzReport(cases=count)
    start = time.monotonic()
    batches = [list(range(i, min(i + batch_size, count))) for i in range(0, count, batch_size)]
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="bnnpack-fuzz-") as scratch:

        def work(indices: list[int]) -> list[tuple[Case, dict[str, Any]]]:
            directory = Path(scratch) / f"batch-{indices[0]}"
            directory.mkdir()
            results = runner.batch([runner.case(i, directory) for i in indices], directory)
            for case, result in results:
                if result["outcome"] not in PASSING:
                    with lock:
                        if report.kept_in is None:
                            report.kept_in = keep_failures or Path(
                                tempfile.mkdtemp(prefix="bnnpack-failures-")
                            )
                        _keep(case, result, report.kept_in)
            shutil.rmtree(directory)
            return results

        with ThreadPoolExecutor(max(1, workers)) as pool:
            for results in pool.map(work, batches):
                for case, result in results:
                    _count(report, case, result)
    report.seconds = time.monotonic() - start
    report.failures.sort(key=lambda f: f.case.id)
    return report


def check_files(
    paths: list[Path],
    library: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 10.0,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """The driver's result for each of ``paths`` (a kept failure, or a seed), run with
    ``threads`` threads and checked as a fuzz case is: ``result["outcome"]`` is one of
    :data:`PASSING` or a failure."""
    runner = _Runner(0, library, env, timeout)
    cases = [Case(i, path.name, path, [], i, threads) for i, path in enumerate(paths)]
    with tempfile.TemporaryDirectory(prefix="bnnpack-check-") as scratch:
        return [result for _, result in runner.batch(cases, Path(scratch))]


def _count(report: FuzzReport, case: Case, result: dict[str, Any]) -> None:
    outcome = result["outcome"]
    report.outcomes[outcome] += 1
    detail = result.get("message", "")
    if "error" in result:
        detail = f"{result['error']} at {result.get('where', '?')}: {detail}"
    if outcome == "rejected":
        report.rejections[message_class(result.get("message", ""))] += 1
    elif outcome not in PASSING:
        report.failures.append(Failure(case, outcome, detail, case.path))


def _keep(case: Case, result: dict[str, Any], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / case.path.name
    shutil.copyfile(case.path, target)
    case.path = target
    text = f"{case.description()}\n\noutcome: {result['outcome']}\n{json.dumps(result, indent=2)}\n"
    target.with_suffix(".txt").write_text(text)
