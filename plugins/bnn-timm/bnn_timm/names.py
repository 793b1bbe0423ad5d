"""The names of timm's models, read from the installed timm's source without importing it.

Importing timm imports torch and all of timm's model modules, which takes seconds; the
names are needed on every ``bnn`` command that loads plugins. timm marks each model's
builder with a bare ``@register_model`` decorator at the top level of a module in
``timm/models/`` and registers it under the function's name, which is the name
``timm.create_model`` accepts. One regular expression per file finds them: about 1,400
builders in about 120 files (4 MB) in under 10 ms, so the list is not cached. Names that
timm keeps only as deprecated aliases (``register_model_deprecations``) and pretrained
tags (``resnet50.a1_in1k``) are not listed: they name the same architectures.
"""

from __future__ import annotations

import re
from pathlib import Path

from bnn_core.paths import installed_folder

#: A top-level ``@register_model`` (at the start of a line), maybe other decorators, then
#: the builder's ``def``. Starting with a literal newline rather than ``^`` in MULTILINE
#: mode lets the regex engine skip to candidates, five times faster.
_BUILDER = re.compile(r"\n@register_model[ \t]*\r?\n(?:@[^\n]*\n)*def[ \t]+(\w+)")


def timm_models_dir() -> Path | None:
    """``timm/models`` of the installed timm, found without importing it."""
    return installed_folder("timm", "models")


def registered_builders(source: str) -> list[str]:
    """Names of the top-level functions of ``source`` decorated with ``@register_model``."""
    return _BUILDER.findall("\n" + source)


def timm_model_names() -> list[tuple[str, str]]:
    """``(name, module)`` of every model builder of the installed timm, sorted by name;
    empty when timm is not installed. Private modules (``_builder.py``, ...) hold no
    models and are skipped."""
    models = timm_models_dir()
    if models is None:
        return []
    found: dict[str, str] = {}
    for path in sorted(models.glob("*.py")):
        if path.name.startswith("_"):
            continue
        source = path.read_text(encoding="utf-8")
        if "@register_model" in source:
            for name in registered_builders(source):
                found[name] = path.stem  # a later module overrides, as in timm's registry
    return sorted(found.items())
