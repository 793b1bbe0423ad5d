"""Fake installed distributions: a package plus a ``.dist-info`` folder on ``sys.path``,
discovered by ``importlib.metadata`` exactly like a pip-installed plugin."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_distribution(
    site: Path, dist_name: str, module: str, code: str, version: str = "1.0.0"
) -> Path:
    """Create package ``module`` with ``code`` and a dist-info declaring it as the
    ``bnn_core.plugins`` entry point named ``dist_name``; returns ``site``."""
    package = site / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(code))
    info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n"
    )
    (info / "entry_points.txt").write_text(f"[bnn_core.plugins]\n{dist_name} = {module}\n")
    return site
