"""The export lowerings that plugins registered, looked up by module type.

One :class:`Lowerings` snapshot of the ``lowering`` registry serves a whole export: a
module type's lowering is that of the nearest class in its MRO with one. Binarizer
lowerings (:class:`~bnn_core.lowering.BinarizerLowering`) and module lowerings
(functions ``lower(ctx, module)``) share the registry; each lookup returns only the
kind it asks for.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from torch import nn

from bnn_core.lowering import BinarizerLowering, ModuleLowering
from bnn_core.registries import lowering_map
from bnn_core.registry import qualified_name

#: How to add a missing lowering; ends every "no lowering" error.
HOW_TO_ADD = (
    "A plugin adds one with the bnn_register_lowerings hook "
    '(see docs/deploy.md, "Adding a lowering")'
)


class Lowerings:
    """The registered lowerings at one moment (plugins are loaded on creation)."""

    def __init__(self, mapping: dict[type, Any] | None = None) -> None:
        self.mapping = lowering_map() if mapping is None else mapping
        self.find = cache(self._find)

    def _find(self, module_type: type) -> Any | None:
        for base in module_type.__mro__:
            if base in self.mapping:
                return self.mapping[base]
        return None

    def module(self, module_type: type) -> ModuleLowering | None:
        """The module lowering of ``module_type``, or None (none, or a binarizer's)."""
        lowering = self.find(module_type)
        if isinstance(lowering, BinarizerLowering) or not callable(lowering):
            return None
        return lowering

    def binarizer(self, module_type: type) -> BinarizerLowering | None:
        """The binarizer lowering of ``module_type``, or None."""
        lowering = self.find(module_type)
        return lowering if isinstance(lowering, BinarizerLowering) else None

    def layer_names(self) -> str:
        """The module types with a module lowering, for error messages."""
        names = {
            t.__name__
            for t, lowering in self.mapping.items()
            if callable(lowering) and not isinstance(lowering, BinarizerLowering)
        }
        return ", ".join(sorted(names, key=str.lower))


def missing_module_lowering(where: str, module: nn.Module, lowerings: Lowerings) -> str:
    """The error text for a leaf module no lowering covers."""
    return (
        f"{where} is not supported by the packed runtime: no export lowering is registered "
        f"for {qualified_name(type(module))} or a base class of it. Layers with a lowering: "
        f"{lowerings.layer_names()}. {HOW_TO_ADD}"
    )
