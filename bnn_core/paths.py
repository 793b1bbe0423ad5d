"""Paths written in configuration (a data root, a shard folder): ``~`` and
``$VARIABLES`` expanded, an unset variable an error rather than a literal ``$DATA``."""

from __future__ import annotations

import importlib.util
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


def installed_folder(package: str, folder: str) -> Path | None:
    """``folder`` inside the installed ``package``, found without importing it (model
    bridges read a library's source to list its models while keeping start-up free of
    torch); ``None`` when the package or the folder is not there."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = Path(location) / folder
        if found.is_dir():
            return found
    return None
