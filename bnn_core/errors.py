"""Exceptions raised by bnn.

Every error a user can cause by input (a config, a name, a file) derives from
:class:`BnnError`, so the CLI can print it as one paragraph and exit with status 2
instead of showing a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BnnError(Exception):
    """Base class of all errors caused by user input or installed plugins."""


class ConfigError(BnnError, ValueError):
    """A configuration (YAML file, BConfig, recipe) is malformed or invalid."""


class UnknownNameError(BnnError, LookupError):
    """A registry lookup used a name that nothing registered."""

    def __init__(self, kind: str, name: str, available: Iterable[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        close = difflib.get_close_matches(str(name).lower(), self.available, n=3, cutoff=0.6)
        self.suggestions = close
        parts = [f"Unknown {kind} {name!r}."]
        if close:
            parts.append("Did you mean " + " or ".join(repr(c) for c in close) + "?")
        parts.append(_available_sentence(kind, self.available))
        parts.append(
            f"If {name!r} comes from a plugin, that plugin may be missing or broken: "
            "run `bnn list-plugins --all` to see what is installed."
        )
        if hint:
            parts.append(hint)
        super().__init__(" ".join(parts))


class DuplicateNameError(BnnError, ValueError):
    """Two providers registered the same name for the same kind."""

    def __init__(self, kind: str, name: str, providers: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.providers = list(providers)
        first, *others = self.providers
        listed = " and ".join(repr(p) for p in [first, *others])
        super().__init__(
            f"The {kind} name {name!r} is registered by more than one provider: {listed}. "
            "Names must be unique; uninstall one of the plugins or disable it with "
            "BNN_DISABLED_PLUGINS=<plugin>."
        )


class PluginError(BnnError, RuntimeError):
    """A plugin failed to import or to register its components (fatal in strict mode)."""


class LayerMatchError(BnnError, ValueError):
    """A layer name or pattern given to the conversion engine matched no layer."""


def plural(kind: str) -> str:
    """The plural of a registry kind as the CLI spells it (``loss`` -> ``losses``)."""
    return kind + ("es" if kind.endswith("s") else "s")


def _available_sentence(kind: str, available: list[str]) -> str:
    if not available:
        return f"No {kind} is registered at all."
    shown = ", ".join(available[:12])
    more = f" and {len(available) - 12} more" if len(available) > 12 else ""
    kinds = plural(kind)
    return f"Registered {kinds}: {shown}{more} (`bnn list {kinds}` shows them all)."
