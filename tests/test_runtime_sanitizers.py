"""The C kernel library under AddressSanitizer and UndefinedBehaviorSanitizer: the library
is built with -fsanitize=address,undefined (every report fatal), and the runtime's kernel,
fusion, float and C-argument tests run against that build, in a subprocess with the
compiler's ASan runtime preloaded into Python, on every kernel path this CPU has (the
tests force each one in turn); then a few hundred mutated ``.bnnpack`` files of the
fuzzer (tests/fuzzing/bnnpack.py) are loaded and run on it. Any out-of-bounds access,
use after free, signed overflow or misaligned access in the C code then fails the test
with the sanitizer's report."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzzing.bnnpack import run_cases

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime" / "bnn_runtime"
COMPILER = shutil.which("gcc")
# runtime/setup.py's flags with -O1 for -O3 (sanitizer reports stay precise), plus the sanitizers.
FLAGS = [
    "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all", "-ffp-contract=off", "-fno-trapping-math",
    "-fvisibility=hidden", "-pthread",
]  # fmt: skip
# CPython keeps its interned objects until exit by design: leaks are not ours. Reports go
# to files (pytest captures the standard error of a test that then dies with it).
ASAN_OPTIONS = "detect_leaks=0"
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1"
# Every exported entry point and every kernel path (the NumPy reference runs no C).
SELECTION = [
    "tests/test_runtime_c_arguments.py",
    "tests/test_runtime_kernels.py",
    "tests/test_runtime_fusion.py",
    "tests/test_runtime_float.py",
    "tests/test_runtime_threads.py",
    "-k",
    "not numpy and not start_late",
]

# Mutated files run on the sanitized library, and the seed of the fixed selection.
FUZZ_CASES = 300
FUZZ_SEED = 2

# Runs pytest with bnn_runtime loading the library named by the first argument.
DRIVER = """
import sys
from pathlib import Path

import pytest

from bnn_runtime import _library, dispatch

_library.library_path = lambda: Path(sys.argv[1])
assert _library.load() is not None
print("kernel paths:", " ".join(dispatch.available_isas()))
sys.exit(pytest.main(sys.argv[2:]))
"""

# Reads one float past the end of a heap array through the library: a build or a
# preload that does not catch it would let every other check here pass vacuously.
CANARY = """
import sys
from pathlib import Path

import numpy as np

from bnn_runtime import _library

_library.library_path = lambda: Path(sys.argv[1])
x, y = np.zeros(4096, np.float32), np.zeros(4097, np.float32)
_library.load().bnn_transpose(x.ctypes.data, 1, 1, 4097, y.ctypes.data, 1)
"""


def asan_runtime() -> Path | None:
    """The compiler's shared ASan runtime, or None (gcc prints the bare name when it has
    none)."""
    if COMPILER is None:
        return None
    found = subprocess.run(
        [COMPILER, "-print-file-name=libasan.so"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return Path(found) if os.path.isabs(found) and Path(found).is_file() else None


RUNTIME_LIB = asan_runtime()
pytestmark = pytest.mark.skipif(
    RUNTIME_LIB is None, reason="needs gcc with its AddressSanitizer runtime (libasan.so)"
)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library built with the sanitizers."""
    library = tmp_path_factory.mktemp("sanitized") / "_libkernels_sanitized.so"
    sources = sorted(str(p) for p in RUNTIME.glob("_kernels*.c"))
    subprocess.run(
        [COMPILER, *FLAGS, "-shared", "-fPIC", "-o", str(library), *sources, "-lm"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return library


def sanitizer_env(reports: Path) -> dict[str, str]:
    """The environment of a Python process on the sanitized library, whose sanitizer
    reports go to files reports.<pid>."""
    env = {
        **os.environ,
        "ASAN_OPTIONS": f"{ASAN_OPTIONS}:log_path={reports}",
        "UBSAN_OPTIONS": f"{UBSAN_OPTIONS}:log_path={reports}",
        "LD_PRELOAD": str(RUNTIME_LIB),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("BNN_RUNTIME_ISA", None)
    return env


def written_reports(reports: Path) -> str:
    """Every sanitizer report written under the prefix `reports`."""
    return "".join(p.read_text(errors="replace") for p in sorted(reports.parent.glob("*.*")))


def test_the_sanitized_build_catches_an_overflow(library: Path, tmp_path: Path) -> None:
    reports = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-c", CANARY, str(library)],
        cwd=ROOT, env=sanitizer_env(reports), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    written = written_reports(reports)
    assert result.returncode != 0
    assert "heap-buffer-overflow" in written, result.stderr[-3000:]
    assert "bnn_transpose" in written


def test_kernel_tests_pass_under_sanitizers(library: Path, tmp_path: Path) -> None:
    reports = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(library), "-q", "-p", "no:cacheprovider", *SELECTION],
        cwd=ROOT, env=sanitizer_env(reports), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    written = written_reports(reports)
    assert not written, written[:8000]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and "error" not in summary, summary
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 250, summary


def test_fuzzed_files_run_cleanly_under_sanitizers(library: Path, tmp_path: Path) -> None:
    """The fuzzer reads each child's output for sanitizer reports, so they are not sent to
    files here; a report, a crash or a hang is a failure of its case."""
    env = {
        "LD_PRELOAD": str(RUNTIME_LIB),
        "ASAN_OPTIONS": ASAN_OPTIONS,
        "UBSAN_OPTIONS": UBSAN_OPTIONS,
    }
    report = run_cases(FUZZ_CASES, FUZZ_SEED, library, env, keep_failures=tmp_path)
    assert sum(report.outcomes.values()) == FUZZ_CASES
    assert report.outcomes["accepted"], report.summary()  # some files reach the kernels
    assert not report.failures, report.summary()
