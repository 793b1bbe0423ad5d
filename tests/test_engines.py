"""The peer engines (ONNX Runtime, OpenVINO) tested in a process of their own.

Their native thread pools stay alive after use, and a PyTorch DataLoader forking its
workers later in the same process can then crash it, so the cases in ``tests/engines/``
run in a child pytest; this test fails with the child's output when any case fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "engines").glob("*_cases.py"))


@pytest.mark.parametrize("cases", CASES)
def test_engine_cases_pass_in_their_own_process(cases: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cases],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode == 5 or (result.returncode == 0 and "passed" not in summary):
        pytest.skip(f"{cases}: {summary or 'nothing ran'}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
