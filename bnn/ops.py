"""The binarizer classes under the seed library's import path (``bnn.ops``).

Each name is looked up in the binarizer registry on first access, like any plugin's
binarizer, so the app never imports the built-in plugin by name and ``import bnn.ops``
stays light (torch loads with the first class used).
"""

from __future__ import annotations

from typing import Any

from bnn_core.registries import get_binarizer

#: Public class name -> registry name.
_REGISTERED = {
    "AdvancedInputBinarizer": "advanced_input",
    "ApproxSign": "approx_sign",
    "BasicInputBinarizer": "basic_input",
    "BasicScaleBinarizer": "basic_scale",
    "InputBiasBinarizer": "input_bias",
    "SteSign": "ste_sign",
    "StochasticInputBinarizer": "stochastic_input",
    "XNORWeightBinarizer": "xnor_weight",
}
#: The framework's own classes, from bnn_core.
_CORE = ("Binarizer", "Identity")

__all__ = sorted([*_REGISTERED, *_CORE])


def __getattr__(name: str) -> Any:
    if name in _CORE:
        from bnn_core import binarizer

        value = getattr(binarizer, name)
    elif name in _REGISTERED:
        value = get_binarizer(_REGISTERED[name])
    else:
        raise AttributeError(f"module 'bnn.ops' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
