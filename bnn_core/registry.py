"""A small name registry, one instance per kind of component (binarizer, model, ...).

Entries may hold the object itself or a lazy ``"package.module:attribute"`` reference
written by a plugin, so listing what is installed never imports heavy modules such as
torch. Names are lower snake_case; lookups ignore case and treat ``-`` like ``_``.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bnn_core.errors import DuplicateNameError, PluginError, UnknownNameError

IN_PROCESS = "<in-process>"
_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def normalize_name(name: str) -> str:
    """Return the canonical form of a registry name: lower case, ``-`` and spaces as ``_``."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"a registry name must be a non-empty string, got {name!r}")
    return re.sub(r"[-\s]+", "_", name.strip()).lower()


def snake_case(name: str) -> str:
    """``ConvTranspose2d`` -> ``conv_transpose2d``, ``XNORWeight`` -> ``xnor_weight``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring on one line (the summary shown in listings)."""
    paragraph = (doc or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split())


def qualified_name(obj: Any) -> str:
    """Return ``module:qualname`` for a class or function (the lazy-reference syntax); an
    object without a qualified name is described by its class."""
    if not hasattr(obj, "__qualname__"):
        obj = type(obj)
    return f"{obj.__module__}:{obj.__qualname__}"


def resolve_reference(reference: str) -> Any:
    """Import ``package.module:attribute`` as written by plugin code (never by a config)."""
    module_name, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


@dataclass
class Entry:
    """One registered component: its name, where it comes from and how to load it."""

    kind: str
    name: str
    target: Any
    provider: str = IN_PROCESS
    aliases: tuple[str, ...] = ()
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        """The ``module:attribute`` this entry points to, without importing it."""
        return self.target if isinstance(self.target, str) else qualified_name(self.target)

    def load(self) -> Any:
        """Return the registered object, importing it on first use."""
        if isinstance(self.target, str):
            try:
                self.target = resolve_reference(self.target)
            except Exception as exc:  # a plugin's broken reference must not be a traceback
                raise PluginError(
                    f"{self.kind} {self.name!r} registered by {self.provider!r} cannot be "
                    f"loaded from {self.target!r}: {type(exc).__name__}: {exc}. The plugin is "
                    "broken or incompatible; reinstall it or disable it with "
                    f"BNN_DISABLED_PLUGINS={self.provider}."
                ) from exc
        return self.target

    @property
    def summary(self) -> str:
        """One line describing the entry: the given description or the docstring's first line."""
        if self.description:
            return self.description
        if isinstance(self.target, str):
            return ""
        return first_paragraph(getattr(self.target, "__doc__", None))


class Registry:
    """Maps names of one kind to entries; fills itself from plugins on first use.

    ``on_first_use`` is called once, before the first lookup, so plugins are loaded
    lazily; the registries of :mod:`bnn_core.plugins` pass the plugin loader.
    """

    def __init__(self, kind: str, on_first_use: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._conflicts: dict[str, list[Entry]] = {}
        self._on_first_use = on_first_use
        self._ready = on_first_use is None

    def mark_ready(self) -> None:
        """Skip the first-use callback (called when plugin loading starts)."""
        self._ready = True

    def _ensure_ready(self) -> None:
        if not self._ready:
            self._ready = True
            assert self._on_first_use is not None
            self._on_first_use()

    def add(self, entry: Entry, *, replace: bool = False, record_conflicts: bool = False) -> Entry:
        """Add an entry. A name (or alias) taken by another provider raises
        :class:`DuplicateNameError`, or is recorded as a conflict when ``record_conflicts``
        (plugin discovery uses this so one bad plugin does not break the others).
        """
        if entry.target is None:
            raise TypeError(f"cannot register None as {self.kind} {entry.name!r}")
        if isinstance(entry.target, str) and not _REFERENCE.match(entry.target):
            raise ValueError(
                f"{self.kind} {entry.name!r}: a lazy reference must look like "
                f"'package.module:attribute', got {entry.target!r}"
            )
        entry.name = normalize_name(entry.name)
        if replace:
            self.remove(entry.name)
        keys = [entry.name, *(normalize_name(a) for a in entry.aliases)]
        taken = {key: owner for key in keys if (owner := self._lookup_key(key)) is not None}
        same = taken.get(entry.name)
        if same is not None and (same.reference, same.provider) == (
            entry.reference,
            entry.provider,
        ):
            return same
        if taken and not record_conflicts:
            key, owner = next(iter(taken.items()))
            raise DuplicateNameError(self.kind, key, [_describe(owner), _describe(entry)])
        for key, owner in taken.items():
            self._conflicts.setdefault(key, [owner]).append(entry)
        if entry.name not in taken:
            self._entries[entry.name] = entry
            for alias in keys[1:]:
                if alias not in taken:
                    self._aliases.setdefault(alias, entry.name)
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` and its aliases (used by tests and by ``replace=True``)."""
        key = normalize_name(name)
        entry = self._entries.pop(self._aliases.get(key, key), None)
        if entry is not None:
            self._aliases = {a: n for a, n in self._aliases.items() if n != entry.name}
        self._conflicts.pop(key, None)

    def _lookup_key(self, key: str) -> Entry | None:
        return self._entries.get(key) or self._entries.get(self._aliases.get(key, ""))

    def entry(self, name: str) -> Entry:
        """Return the entry for ``name`` (or an alias), raising a helpful error if absent."""
        self._ensure_ready()
        key = normalize_name(name)
        if key in self._conflicts:
            raise DuplicateNameError(self.kind, key, [_describe(e) for e in self._conflicts[key]])
        entry = self._lookup_key(key)
        if entry is None:
            raise UnknownNameError(self.kind, name, self._entries)
        return entry

    def get(self, name: str) -> Any:
        """Return the object registered as ``name``."""
        return self.entry(name).load()

    def contains(self, name: str) -> bool:
        """Whether ``name`` (or an alias) is registered and unambiguous."""
        self._ensure_ready()
        try:
            key = normalize_name(name)
        except TypeError:
            return False
        return key not in self._conflicts and self._lookup_key(key) is not None

    def names(self, pattern: str | None = None) -> list[str]:
        """Sorted canonical names, filtered by an fnmatch ``pattern`` (``*``, ``?``, ``[...]``)."""
        self._ensure_ready()
        names = sorted(self._entries)
        if pattern:
            wanted = normalize_name(pattern)
            names = [n for n in names if fnmatch.fnmatchcase(n, wanted)]
        return names

    def entries(self, pattern: str | None = None) -> list[Entry]:
        """Entries whose names match ``pattern``, sorted by name."""
        return [self._entries[n] for n in self.names(pattern)]

    def conflicts(self) -> dict[str, list[Entry]]:
        """Names claimed by several plugins; looking one up raises DuplicateNameError."""
        self._ensure_ready()
        return dict(self._conflicts)

    def name_of(self, obj: Any) -> str | None:
        """Reverse lookup: the canonical name under which ``obj`` is registered, if any."""
        self._ensure_ready()
        reference = qualified_name(obj) if hasattr(obj, "__qualname__") else None
        for entry in self._entries.values():
            if entry.target is obj or (reference is not None and entry.reference == reference):
                return entry.name
        return None

    def type_map(self, key: str) -> dict[type, Any]:
        """``{type: registered object}`` for a kind whose entries are keyed by a type held
        in ``metadata[key]`` (a class or a lazy reference), such as the layer swap map.
        A name or a type claimed by two providers raises :class:`DuplicateNameError`
        naming both."""
        for name, entries in self.conflicts().items():
            raise DuplicateNameError(self.kind, name, [_describe(e) for e in entries])
        mapping: dict[type, Any] = {}
        owners: dict[type, Entry] = {}
        for entry in self.entries():
            target = entry.load()
            claimed = entry.metadata[key]
            if isinstance(claimed, str):
                claimed = entry.metadata[key] = resolve_reference(claimed)
            if claimed in owners:
                first = owners[claimed]
                raise DuplicateNameError(
                    self.kind,
                    claimed.__qualname__,
                    [f"{e.provider} ({e.name}: {e.reference})" for e in (first, entry)],
                )
            owners[claimed] = entry
            mapping[claimed] = target
        return mapping

    def reset(self) -> None:
        """Forget every entry; plugins are loaded again on the next lookup."""
        self._entries.clear()
        self._aliases.clear()
        self._conflicts.clear()
        self._ready = self._on_first_use is None


def _describe(entry: Entry) -> str:
    return f"{entry.provider} ({entry.reference})"
