"""Shared fixtures: isolation of the process-wide plugin state between tests, and the
runtime's kernel paths forced one at a time."""

from __future__ import annotations

import pytest

from bnn_core.plugins import reset_plugins
from bnn_runtime import kernels

#: Every kernel path of the runtime, the NumPy reference included.
KERNEL_PATHS = ["portable", "avx2", "avx512", "numpy"]

PLUGIN_ENV = (
    "BNN_PLUGINS",
    "BNN_DISABLED_PLUGINS",
    "BNN_DISABLE_PLUGIN_AUTOLOAD",
    "BNN_STRICT_PLUGINS",
)


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch):
    """Forget every plugin and in-process registration before and after the test, so
    registrations and environment switches made by the test do not leak."""
    for name in PLUGIN_ENV:
        monkeypatch.delenv(name, raising=False)
    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture(params=KERNEL_PATHS)
def isa(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Force one kernel path through BNN_RUNTIME_ISA (skipped where the CPU lacks it)."""
    name = request.param
    if name != "numpy" and name not in kernels.available_isas():
        pytest.skip(f"this CPU cannot run the {name} path")
    monkeypatch.setenv(kernels.ENV_ISA, name)
    assert kernels.isa() == name
    return name
