"""A plugin distribution under ``plugins/`` installed for real, for the tests that check
it as a user would have it: pip builds a copy of its source (so the tree gets no
``build/`` or ``*.egg-info``) into a throwaway ``site`` folder, offline and without its
dependencies (they are in the project's environment), and commands run with that folder
on ``PYTHONPATH``, outside the source tree, so only the installed copy can be imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
PIP_OFFLINE = ("--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check")
#: Environment variables that would change which plugins load.
SWITCHES = (
    "BNN_PLUGINS",
    "BNN_DISABLED_PLUGINS",
    "BNN_DISABLE_PLUGIN_AUTOLOAD",
    "BNN_STRICT_PLUGINS",
)


@dataclass
class Installed:
    """Where the plugin was installed and the environment that makes it visible."""

    site: Path
    env: dict[str, str]

    def run(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run ``python argv...`` with the plugin on the path (and ``env`` set), in the
        folder above the site."""
        return subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            cwd=self.site.parent,
            timeout=300,
        )

    def bnn(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run the ``bnn`` command."""
        return self.run("-m", "bnn", *argv, **env)


def install_plugin(name: str, root: Path) -> Installed:
    """Install ``plugins/<name>`` under ``root`` (``root/site``)."""
    source = root / "source"
    shutil.copytree(
        PLUGINS / name,
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*_cache"),
    )
    site = root / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", *PIP_OFFLINE, "--target", str(site), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return Installed(site, env)
