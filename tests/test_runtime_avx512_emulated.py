"""The AVX-512 path's C code, checked on every x86-64 CPU with AVX2: the kernel library
is built with that path's intrinsics computed in plain C (tests/native/avx512_emulation.h),
and the runtime's kernel, fusion, float and whole-network tests run against that build
with the avx512 path forced. On a CPU with AVX-512 the same tests also run on the real
instructions (tests/test_runtime_kernels.py and the others); here they would skip."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bnn_runtime import kernels

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime" / "bnn_runtime"
COMPILER = shutil.which("gcc") or shutil.which("cc")
# runtime/setup.py's flags, plus what a shared object built by hand needs.
FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fvisibility=hidden", "-pthread"]

# The tests that force each kernel path, and those that run whole exported networks.
SELECTION = [
    "tests/test_runtime_kernels.py",
    "tests/test_runtime_fusion.py",
    "tests/test_runtime_float.py",
    "tests/test_export.py",
    "tests/test_int8_kernels.py",
    "-k",
    "avx512 or zoo_model_runs or exchange_packed_bits or rprelu_bireal",
]

# Runs pytest with bnn_runtime loading the library named by the first argument.
DRIVER = """
import sys
from pathlib import Path

import pytest

from bnn_runtime import _library, dispatch

_library.library_path = lambda: Path(sys.argv[1])
assert "avx512" in dispatch.available_isas(), dispatch.available_isas()
sys.exit(pytest.main(sys.argv[2:]))
"""


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64")
    or COMPILER is None
    or "avx2" not in kernels.available_isas(),
    reason="needs an x86-64 CPU with AVX2 (the avx512 path's float operations use it) "
    "and a C compiler",
)
def test_avx512_path_with_emulated_intrinsics(tmp_path: Path) -> None:
    library = tmp_path / "_libkernels_avx512_emulated.so"
    sources = sorted(str(p) for p in RUNTIME.glob("_kernels*.c"))
    subprocess.run(
        [COMPILER, *FLAGS, "-shared", "-fPIC", "-DBNN_AVX512_EMULATION",
         f"-I{ROOT / 'tests' / 'native'}", "-o", str(library), *sources, "-lm"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    env = {**os.environ, "BNN_RUNTIME_ISA": "avx512", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(library), "-q", "-p", "no:cacheprovider", *SELECTION],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "skipped" not in summary, summary
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 70, summary
