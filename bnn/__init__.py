"""bnn: binary neural networks for PyTorch.

The stable API is re-exported here and loaded lazily (``import bnn`` does not import
torch until a torch-based name is used)::

    from bnn import BConfig, prepare_binary_model, convert
    from bnn.ops import BasicInputBinarizer, XNORWeightBinarizer
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import bnn_core

__version__ = "0.2.0"

_LAZY = {name: "bnn_core" for name in bnn_core.__all__}
_LAZY["Identity"] = "bnn_core.binarizer"

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from bnn_core import (
        BConfig,
        Binarizer,
        BinarizerFactory,
        Identity,
        convert,
        explain,
        prepare_binary_model,
        register_binarizer,
    )
