"""bnn.runtime: the former home of the packed runtime, now the bnn-runtime distribution.

``bnn.runtime`` and every ``bnn.runtime.<module>`` are the very module objects of
:mod:`bnn_runtime` and ``bnn_runtime.<module>`` (aliases, not copies), so existing imports,
attribute patches and ``isinstance`` checks keep working. New code imports ``bnn_runtime``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

import bnn_runtime

_ALIAS = __name__ + "."
_TARGET = bnn_runtime.__name__ + "."


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``bnn.runtime.<module>`` to the already imported ``bnn_runtime.<module>``."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_ALIAS):
            return None
        real = importlib.import_module(_TARGET + fullname[len(_ALIAS) :])
        spec = importlib.util.spec_from_loader(fullname, self)
        if spec is not None:
            spec.loader_state = (real, real.__spec__)
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return spec.loader_state[0]

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias spec on the module; give it back its own.
        module.__spec__ = module.__spec__.loader_state[1]


if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())
for _name, _module in list(sys.modules.items()):
    if _name.startswith(_TARGET):
        sys.modules.setdefault(_ALIAS + _name[len(_TARGET) :], _module)
sys.modules[__name__] = bnn_runtime
