"""Where a run's settings come from, in increasing precedence: the defaults, an
environment file (``-u NAME`` reads ``configs/env_NAME.yaml``, the seed library's
per-user files), the recipe, ``--set key.path=value`` overrides, then explicit flags
(``--seed``, ``--exp-name``, ``--device``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bnn_core.config import load_yaml
from bnn_core.errors import ConfigError
from bnn_core.safe_yaml import load_text

#: The seed library's environment-file keys and the recipe keys they set.
ENV_KEYS = {
    ("PROJECT", "ROOT"): ("project_root",),
    ("HARDWARE", "WORKERS"): ("data", "workers"),
    ("TRAINING", "EPOCHS"): ("training", "epochs"),
    ("TRAINING", "BATCH_SIZE"): ("data", "batch_size"),
    ("EXPERIMENT", "DIR"): ("output", "dir"),
}


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` layered over ``base``: nested mappings merge, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """``("a", "b"), 1`` -> ``{"a": {"b": 1}}``."""
    for key in reversed(path):
        value = {key: value}
    return value


def parse_set(assignments: list[str]) -> dict[str, Any]:
    """``["training.epochs=3", "model.width=32"]`` -> nested overrides; values are YAML."""
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip() or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects key.path=value, got {assignment!r}")
        value = load_text(raw, f"the value of --set {key.strip()}")
        overrides = merge(overrides, nested(tuple(key.strip().split(".")), value))
    return overrides


def env_file(name_or_path: str, search: Path | None = None) -> Path:
    """The environment file for ``-u NAME`` (``configs/env_NAME.yaml``) or ``--env PATH``."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"}:
        return candidate
    folder = (search or Path.cwd()) / "configs"
    path = folder / f"env_{name_or_path}.yaml"
    if not path.is_file():
        found = sorted(p.stem.removeprefix("env_") for p in folder.glob("env_*.yaml"))
        known = f" Known users: {', '.join(found)}." if found else ""
        raise ConfigError(
            f"no environment file for user {name_or_path!r}: {path} is missing.{known}"
        )
    return path


def env_overrides(path: Path) -> tuple[dict[str, Any], Path | None]:
    """Recipe keys set by a seed-style environment file, and its ``PROJECT.ROOT``."""
    data = load_yaml(path)
    overrides: dict[str, Any] = {}
    root: Path | None = None
    for (section, key), target in ENV_KEYS.items():
        block = data.get(section) or {}
        if not isinstance(block, Mapping):
            raise ConfigError(
                f"{path}: {section} must be a mapping of settings, got {type(block).__name__}"
            )
        value = block.get(key)
        if value is None:
            continue
        if target == ("project_root",):
            root = Path(str(value)).expanduser()
        elif target == ("output", "dir"):  # one folder per experiment inside it
            overrides = merge(overrides, nested(target, str(Path(str(value)) / "{name}")))
        else:
            overrides = merge(overrides, nested(target, value))
    return overrides, root
