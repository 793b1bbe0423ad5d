"""Paths written in configuration (a data root, a shard folder): ``~`` and
``$VARIABLES`` expanded, an unset variable an error rather than a literal ``$DATA``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bnn_core.errors import ConfigError


def expand_path(value: str) -> Path:
    """``value`` with ``~`` and ``$VARIABLES`` expanded; an unset variable is an error
    (a root silently containing ``$DATA`` would only fail later, less clearly)."""
    expanded = os.path.expanduser(os.path.expandvars(value))
    unset = re.findall(r"\$\{?(\w+)", expanded)
    if unset:
        raise ConfigError(
            f"the path {value!r} uses the environment variable ${unset[0]}, which is not set"
        )
    return Path(expanded)
