"""The registries of every kind, and plugin discovery that fills them: entry points in
``bnn_core.plugins`` loaded lazily (on the first lookup of any registry), once, through
pluggy.

A plugin that fails to import or to register is recorded as broken with its error and
the others still load; the first command that uses the registries then prints one
warning line on stderr naming it (``BNN_STRICT_PLUGINS=1`` makes it fatal instead).
Environment switches:

* ``BNN_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry point except those in ``BNN_PLUGINS``;
* ``BNN_PLUGINS=a,b``: load only these entry points;
* ``BNN_DISABLED_PLUGINS=a,b``: skip these.

Names in the switches match an entry-point name or a distribution name (so
``BNN_DISABLED_PLUGINS=bnn-core`` disables all built-ins). The framework's own layer map
(plugin ``bnn_core``) is always registered.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pluggy

from bnn_core import builtin, hookspecs
from bnn_core.errors import PluginError
from bnn_core.registry import (
    _REFERENCE,
    Entry,
    Registry,
    normalize_name,
    qualified_name,
    resolve_reference,
    snake_case,
)

CORE_DISTRIBUTION = "bnn-core"
CORE_PLUGIN = "bnn_core"

HOOKS = {
    "binarizer": "bnn_register_binarizers",
    "layer": "bnn_register_layers",
    "model": "bnn_register_models",
    "dataset": "bnn_register_datasets",
    "bconfig": "bnn_register_bconfigs",
    "block": "bnn_register_blocks",
    "optimizer": "bnn_register_optimizers",
    "lowering": "bnn_register_lowerings",
    "loss": "bnn_register_losses",
    "metric": "bnn_register_metrics",
    "callback": "bnn_register_callbacks",
}
#: The kinds of component, one registry and one hook each.
KINDS = tuple(HOOKS)
#: The hook that registers iopath path handlers (no registry: handlers are keyed by prefix).
PATH_HANDLER_HOOK = "bnn_register_path_handlers"
#: The prefixes bnn's own download handler serves; a plugin cannot take them over.
BUILTIN_PREFIXES = ("http://", "https://")


@dataclass
class PluginInfo:
    """What ``bnn list-plugins`` shows for one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    status: str = "loaded"  # loaded | broken | disabled
    error: str | None = None
    registered: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the schema of ``bnn list-plugins --json``)."""
        return asdict(self)


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.manager: pluggy.PluginManager | None = None
        self.infos: dict[str, PluginInfo] = {}
        self.path_handlers: list[tuple[str, Any]] = []
        self.loaded = False


_STATE = _State()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _name_set(value: str | None) -> set[str]:
    return {normalize_name(v) for v in (value or "").split(",") if v.strip()}


def strict_mode() -> bool:
    """Whether a broken plugin is fatal (``BNN_STRICT_PLUGINS=1``)."""
    return _truthy(os.environ.get("BNN_STRICT_PLUGINS"))


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide pluggy manager, with all plugins discovered and registered."""
    load_plugins()
    assert _STATE.manager is not None
    return _STATE.manager


def plugin_infos() -> list[PluginInfo]:
    """Every plugin seen (loaded, broken or disabled), built-ins first. Loading plugins for
    this listing prints no warning: the listing shows the broken ones itself."""
    load_plugins(warn=False)
    return sorted(_STATE.infos.values(), key=lambda i: (not i.builtin, i.name))


def load_plugins(strict: bool | None = None, *, warn: bool = True) -> None:
    """Discover and register plugins once per process (later loads do nothing).

    Broken plugins and names claimed twice raise :class:`PluginError` in strict mode;
    otherwise, with ``warn``, they are reported by one line on stderr, once per process
    (``bnn list-plugins``, which shows them in full, loads with ``warn=False``)."""
    with _STATE.lock:
        if _STATE.loaded:
            return
        _STATE.loaded = True
        for registry in REGISTRIES.values():
            registry.mark_ready()
        _STATE.manager = _new_manager()
        _register(
            PluginInfo(CORE_PLUGIN, builtin.__name__, CORE_DISTRIBUTION, _version(), True), builtin
        )
        for entry_point in _selected_entry_points():
            _load_entry_point(entry_point)
    problems = [i for i in _STATE.infos.values() if i.status == "broken"]
    conflicts = _conflict_lines()
    if (strict if strict is not None else strict_mode()) and (problems or conflicts):
        lines = [f"plugin {i.name!r}: {i.error}" for i in problems] + conflicts
        raise PluginError("Plugin loading failed (strict mode): " + "; ".join(lines) + ".")
    if warn and (problems or conflicts):
        _warn(problems, conflicts)


#: The registry of each kind; the first lookup in any of them loads the plugins.
REGISTRIES: dict[str, Registry] = {kind: Registry(kind, load_plugins) for kind in KINDS}


def _conflict_lines() -> list[str]:
    return [
        f"{kind} {name!r} registered by " + " and ".join(e.provider for e in entries)
        for kind, registry in REGISTRIES.items()
        for name, entries in registry.conflicts().items()
    ]


def _warn(problems: list[PluginInfo], conflicts: list[str]) -> None:
    """The one line that reports broken plugins and duplicate names outside strict mode."""
    parts = [
        f"plugin {i.name!r} is broken ({(i.error or '').partition(': ')[0]})" for i in problems
    ]
    parts += [f"{line} (unusable until one is disabled)" for line in conflicts]
    print(
        "bnn: warning: "
        + "; ".join(parts)
        + ". Run `bnn list-plugins` for details; BNN_STRICT_PLUGINS=1 makes this an error.",
        file=sys.stderr,
    )


def reset_plugins() -> None:
    """Forget all plugins and registrations; the next lookup discovers them again (and
    warns again about broken ones)."""
    with _STATE.lock:
        _STATE.loaded = False
        _STATE.manager = None
        _STATE.infos.clear()
        _STATE.path_handlers.clear()
        for registry in REGISTRIES.values():
            registry.reset()


def register_plugin(plugin: object, name: str | None = None) -> PluginInfo:
    """Register an in-process plugin object (a module or an instance with hook
    implementations) as if it had been installed, and return what it registered."""
    load_plugins()
    plugin_name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    module = getattr(plugin, "__name__", type(plugin).__module__)
    info = PluginInfo(plugin_name, module)
    _register(info, plugin)
    if info.status == "broken":
        raise PluginError(f"Plugin {plugin_name!r} could not be registered: {info.error}")
    return info


def _version() -> str | None:
    try:
        return metadata.version(CORE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def _selected_entry_points() -> list[metadata.EntryPoint]:
    only = _name_set(os.environ.get("BNN_PLUGINS"))
    disabled = _name_set(os.environ.get("BNN_DISABLED_PLUGINS"))
    autoload = not _truthy(os.environ.get("BNN_DISABLE_PLUGIN_AUTOLOAD"))
    found = sorted(metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=_sort_key)
    selected, seen, matched = [], set(), set()
    for entry_point in found:
        keys = {normalize_name(entry_point.name), normalize_name(_dist_name(entry_point) or "-")}
        if entry_point.name in seen:
            continue
        seen.add(entry_point.name)
        info = _info_for(entry_point)
        if keys & disabled or (only and not keys & only) or (not only and not autoload):
            info.status, info.error = "disabled", _why_disabled(keys, only, disabled)
            _STATE.infos[info.name] = info
            continue
        matched |= keys & only
        selected.append(entry_point)
    for missing in sorted(only - matched):
        _STATE.infos[missing] = PluginInfo(
            missing, "", status="broken", error="named in BNN_PLUGINS but not installed"
        )
    return selected


def _why_disabled(keys: set[str], only: set[str], disabled: set[str]) -> str:
    if keys & disabled:
        return "disabled by BNN_DISABLED_PLUGINS"
    if only:
        return "not named in BNN_PLUGINS"
    return "autoload disabled by BNN_DISABLE_PLUGIN_AUTOLOAD"


def _sort_key(entry_point: metadata.EntryPoint) -> tuple[bool, str]:
    return (_dist_name(entry_point) != CORE_DISTRIBUTION, entry_point.name)


def _dist_name(entry_point: metadata.EntryPoint) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _info_for(entry_point: metadata.EntryPoint) -> PluginInfo:
    dist = getattr(entry_point, "dist", None)
    dist_name = _dist_name(entry_point)
    return PluginInfo(
        name=entry_point.name,
        module=entry_point.value,
        distribution=dist_name,
        version=dist.version if dist is not None else None,
        builtin=dist_name is not None and normalize_name(dist_name) == "bnn_core",
    )


def _load_entry_point(entry_point: metadata.EntryPoint) -> None:
    info = _info_for(entry_point)
    try:
        plugin = entry_point.load()
    except Exception as exc:  # a broken plugin must not break the others
        _STATE.infos[info.name] = _broken(info, "failed to import", exc)
        return
    _register(info, plugin)


def _broken(info: PluginInfo, what: str, exc: BaseException) -> PluginInfo:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    info.status = "broken"
    info.error = f"{what}: {type(exc).__name__}: {exc}{where}"
    return info


def _register(info: PluginInfo, plugin: object) -> None:
    """Register ``plugin`` with pluggy and commit what its hooks register, atomically."""
    manager = _STATE.manager
    assert manager is not None
    _STATE.infos[info.name] = info
    try:
        unknown = _unknown_hooks(plugin)
        if unknown:
            raise PluginError(f"implements unknown hook(s) {', '.join(unknown)}")
        manager.register(plugin, name=info.name)
    except Exception as exc:
        _broken(info, "invalid plugin", exc)
        return
    staged: list[tuple[str, Entry]] = []
    handlers: list[Any] = []
    try:
        others = [p for n, p in manager.list_name_plugin() if n != info.name and p is not None]
        for kind, hook in HOOKS.items():
            caller = manager.subset_hook_caller(hook, remove_plugins=others)
            caller(register=_stager(kind, info.name, staged))
        caller = manager.subset_hook_caller(PATH_HANDLER_HOOK, remove_plugins=others)
        caller(register=_path_handler_stager(handlers))
    except Exception as exc:
        manager.unregister(name=info.name)
        _broken(info, "failed to register its components", exc)
        return
    for kind, entry in staged:
        REGISTRIES[kind].add(entry, record_conflicts=True)
        info.registered.setdefault(kind, []).append(entry.name)
    for handler in handlers:
        _STATE.path_handlers.append((info.name, handler))
        info.registered.setdefault("path_handler", []).append(_describe_handler(handler))


def path_handlers() -> list[tuple[tuple[str, ...], Any]]:
    """The iopath path handlers that plugins registered, loaded: ``(prefixes, handler)``
    each. A prefix claimed twice, or a handler that is not a ``PathHandler``, is a
    PluginError naming the plugin."""
    from iopath.common.file_io import PathHandler

    load_plugins()
    found: list[tuple[tuple[str, ...], Any]] = []
    owners = dict.fromkeys(BUILTIN_PREFIXES, "bnn's own http(s) download")
    for provider, registered in list(_STATE.path_handlers):
        try:
            handler = resolve_reference(registered) if isinstance(registered, str) else registered
            if isinstance(handler, type):
                handler = handler()
        except Exception as exc:  # the plugin's reference or constructor is broken
            raise PluginError(
                f"the path handler {registered!r} of plugin {provider!r} cannot be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(handler, PathHandler):
            raise PluginError(
                f"plugin {provider!r} registered {registered!r} as a path handler, which is not "
                "an iopath PathHandler"
            )
        prefixes = tuple(handler._get_supported_prefixes())
        for prefix in prefixes:
            if prefix in owners:
                raise PluginError(
                    f"the path prefix {prefix!r} is claimed by {owners[prefix]} and by plugin "
                    f"{provider!r}; disable one with BNN_DISABLED_PLUGINS=<plugin>"
                )
            owners[prefix] = f"plugin {provider!r}"
        found.append((prefixes, handler))
    return found


def _path_handler_stager(handlers: list[Any]) -> Callable[[Any], None]:
    def register_path_handler(handler: Any) -> None:
        if isinstance(handler, str) and not _REFERENCE.match(handler):
            raise ValueError(
                f"a lazy path handler reference must look like 'package.module:attribute', "
                f"got {handler!r}"
            )
        handlers.append(handler)

    return register_path_handler


def _describe_handler(handler: Any) -> str:
    """How ``bnn list-plugins`` names a path handler: its prefixes, or its reference."""
    if isinstance(handler, str):
        return handler
    if isinstance(handler, type):
        return qualified_name(handler)
    return ", ".join(handler._get_supported_prefixes())


def _unknown_hooks(plugin: object) -> list[str]:
    names = []
    for attribute in dir(plugin):
        if attribute.startswith("bnn_") and attribute not in hookspecs.__dict__:
            value = getattr(plugin, attribute, None)
            if callable(value) and hasattr(value, hookspecs.PROJECT_NAME + "_impl"):
                names.append(attribute)
    return names


def _stager(kind: str, provider: str, staged: list[tuple[str, Entry]]) -> Callable[..., None]:
    if kind == "layer":

        def register_layer(float_layer: Any, binary_layer: Any, *, name: str | None = None) -> None:
            staged.append((kind, layer_entry(float_layer, binary_layer, provider, name)))

        return register_layer

    if kind == "lowering":

        def register_lowering(module_type: Any, lowering: Any, *, name: str | None = None) -> None:
            staged.append((kind, lowering_entry(module_type, lowering, provider, name)))

        return register_lowering

    def register(
        name: str,
        target: Any,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        description: str | None = None,
        **extra: Any,
    ) -> None:
        staged.append(
            (kind, Entry(kind, name, target, provider, tuple(aliases), description, extra))
        )

    return register


def layer_entry(float_layer: Any, binary_layer: Any, provider: str, name: str | None) -> Entry:
    """Build the registry entry of one swap-map pair."""
    float_ref = float_layer if isinstance(float_layer, str) else None
    float_name = float_ref.rpartition(":")[2].rpartition(".")[2] if float_ref else None
    entry_name = name or snake_case(float_name or float_layer.__name__)
    return Entry("layer", entry_name, binary_layer, provider, metadata={"float_layer": float_layer})


def lowering_entry(module_type: Any, lowering: Any, provider: str, name: str | None) -> Entry:
    """Build the registry entry of one export lowering, named after its module type."""
    reference = module_type if isinstance(module_type, str) else qualified_name(module_type)
    return Entry(
        "lowering", name or reference, lowering, provider, metadata={"module_type": module_type}
    )
