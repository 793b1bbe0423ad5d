"""The kernel library on a CPU without any x86 code path: built with an AArch64 cross
compiler and run under qemu's user-mode emulation, its portable paths must agree with a
naive C reference (tests/native/aarch64_check.c). Skipped where the cross compiler or
qemu is not installed (Debian: gcc-aarch64-linux-gnu, qemu-user)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPILER = "aarch64-linux-gnu-gcc"
EMULATOR = "qemu-aarch64"
SYSROOT = Path("/usr/aarch64-linux-gnu")


@pytest.mark.skipif(
    shutil.which(COMPILER) is None or shutil.which(EMULATOR) is None or not SYSROOT.is_dir(),
    reason=f"needs {COMPILER} and {EMULATOR} (Debian: gcc-aarch64-linux-gnu, qemu-user)",
)
def test_portable_paths_on_aarch64(tmp_path: Path) -> None:
    runtime = ROOT / "runtime" / "bnn_runtime"
    sources = sorted(str(p) for p in runtime.glob("_kernels*.c"))
    binary = tmp_path / "aarch64_check"
    flags = ["-O3", "-ffp-contract=off", "-fno-trapping-math", "-pthread", "-Wall", "-Werror"]
    subprocess.run(
        [COMPILER, *flags, f"-I{runtime / 'include'}", "-o", str(binary),
         str(ROOT / "tests" / "native" / "aarch64_check.c"), *sources, "-lm"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result = subprocess.run(
        [EMULATOR, "-L", str(SYSROOT), str(binary)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "portable 1 avx2 0 avx512 0" in result.stdout
    assert "all equal" in result.stdout
