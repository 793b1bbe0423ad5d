"""Shared fixtures: isolation of the process-wide plugin state between tests."""

from __future__ import annotations

import pytest

from bnn_core.plugins import reset_plugins

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
