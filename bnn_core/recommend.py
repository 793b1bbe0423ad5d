"""How a model builder declares its recommended binarization; torch-free, so plugins
whose modules must not import torch (such as the torchvision bridge) can use it."""

from __future__ import annotations

from typing import Any


def recommended_binarization(
    bconfig: Any,
    custom_config_layers_name: dict[str, Any] | None = None,
    ignore_layers_name: list[str] | None = None,
) -> Any:
    """Decorator for model builders: how the model is best binarized (which binarizers,
    which layers stay float), used by ``create_model(name, binarize=True)`` and by
    ``binarize: default`` in configs. Values are what a config file would hold."""
    declaration = {
        "bconfig": bconfig,
        "custom_config_layers_name": custom_config_layers_name or {},
        "ignore_layers_name": ignore_layers_name or [],
    }

    def mark(builder: Any) -> Any:
        builder.binarization = declaration
        return builder

    return mark
