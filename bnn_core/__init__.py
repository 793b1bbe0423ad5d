"""bnn_core: the small framework bnn plugins depend on.

It holds the registries, the plugin hooks, the BConfig schema, the binarizer protocol,
the binary layer wrappers and the conversion engine. Only ``hookimpl`` is imported
eagerly; everything else loads on first access, so plugin modules and ``bnn --help``
stay fast (torch is imported only when a torch-based name is used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bnn_core.hookspecs import ENTRY_POINT_GROUP, hookimpl, hookspec

_LAZY = {
    "BConfig": "bnn_core.bconfig",
    "Binarizer": "bnn_core.binarizer",
    "BinarizerFactory": "bnn_core.binarizer",
    "Identity": "bnn_core.binarizer",
    "ValueSet": "bnn_core.binarizer",
    "BinaryLayerMixin": "bnn_core.layers",
    "prepare_binary_model": "bnn_core.engine",
    "convert": "bnn_core.engine",
    "explain": "bnn_core.engine",
    "plan_binarization": "bnn_core.engine",
    "BnnError": "bnn_core.errors",
    "ConfigError": "bnn_core.errors",
    "UnknownNameError": "bnn_core.errors",
    "DuplicateNameError": "bnn_core.errors",
    "PluginError": "bnn_core.errors",
    "LayerMatchError": "bnn_core.errors",
    "load_plugins": "bnn_core.plugins",
    "plugin_infos": "bnn_core.plugins",
    "apply_progress": "bnn_core.progress",
    "resolve_bconfig": "bnn_core.bconfig",
    "register_plugin": "bnn_core.plugins",
    "get_plugin_manager": "bnn_core.plugins",
}
_REGISTRY_API = [
    f"{verb}_{kind}"
    for kind in ("binarizer", "model", "dataset", "block", "loss", "metric", "callback")
    for verb in ("register", "get", "create", "is")
] + [
    "list_binarizers",
    "list_models",
    "list_datasets",
    "list_blocks",
    "list_losses",
    "list_metrics",
    "list_callbacks",
    "register_optimizer",
    "get_optimizer",
    "list_optimizers",
    "is_optimizer",
    "register_bconfig",
    "get_bconfig",
    "list_bconfigs",
    "is_bconfig",
    "register_layer",
    "get_layer",
    "list_layers",
    "is_layer",
    "layer_map",
    "register_lowering",
    "get_lowering",
    "list_lowerings",
    "is_lowering",
    "lowering_map",
    "lowering_for",
]
_LAZY.update(dict.fromkeys(_REGISTRY_API, "bnn_core.registries"))

__all__ = ["ENTRY_POINT_GROUP", "hookimpl", "hookspec", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bnn_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from bnn_core.bconfig import BConfig
    from bnn_core.binarizer import Binarizer, BinarizerFactory, Identity, ValueSet
    from bnn_core.engine import convert, explain, plan_binarization, prepare_binary_model
    from bnn_core.errors import (
        BnnError,
        ConfigError,
        DuplicateNameError,
        LayerMatchError,
        PluginError,
        UnknownNameError,
    )
    from bnn_core.layers import BinaryLayerMixin
    from bnn_core.plugins import get_plugin_manager, load_plugins, plugin_infos, register_plugin
    from bnn_core.registries import (
        create_binarizer,
        create_dataset,
        create_model,
        get_binarizer,
        get_dataset,
        get_layer,
        get_model,
        is_binarizer,
        is_dataset,
        is_layer,
        is_model,
        layer_map,
        list_binarizers,
        list_datasets,
        list_layers,
        list_models,
        register_binarizer,
        register_dataset,
        register_layer,
        register_model,
    )
