"""Build models without allocating their weights, to check configs quickly."""

from __future__ import annotations

from typing import Any

import torch


def build_on_meta(spec: Any) -> torch.nn.Module:
    """Build ``spec`` (a ModelSpec) on the meta device: shapes and names, no memory;
    falls back to the CPU for builders that do not support it."""
    try:
        with torch.device("meta"):
            return spec.build()
    except (NotImplementedError, RuntimeError):
        return spec.build()
