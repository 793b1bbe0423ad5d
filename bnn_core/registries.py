"""The registries of each kind and their public API (timm / torchvision style).

For every kind there is ``register_<kind>``, ``get_<kind>``, ``create_<kind>``,
``list_<kind>s`` and ``is_<kind>``. Plugins are loaded on the first call of any of
them. In-process registration is also a decorator::

    @register_binarizer("my_sign")
    class MySign(nn.Module): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from bnn_core.errors import DuplicateNameError
from bnn_core.registry import IN_PROCESS, Entry, Registry, resolve_reference, snake_case

T = TypeVar("T")


def _load_plugins() -> None:
    from bnn_core.plugins import load_plugins

    load_plugins()


KINDS = (
    "binarizer",
    "layer",
    "model",
    "dataset",
    "bconfig",
    "block",
    "optimizer",
    "lowering",
    "loss",
    "metric",
    "callback",
)
REGISTRIES: dict[str, Registry] = {kind: Registry(kind, _load_plugins) for kind in KINDS}


def mark_ready() -> None:
    """Tell every registry that plugin loading has started (avoids re-entry)."""
    for registry in REGISTRIES.values():
        registry.mark_ready()


def _register(kind: str) -> Callable[..., Any]:
    registry = REGISTRIES[kind]

    def register(
        name: str | Any,
        target: Any = None,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        description: str | None = None,
        replace: bool = False,
        **metadata: Any,
    ) -> Any:
        if not isinstance(name, str):  # register(obj): the name comes from the object
            name, target = getattr(name, "name", None) or snake_case(name.__name__), name

        def add(obj: T) -> T:
            registry._ensure_ready()
            entry = Entry(kind, name, obj, IN_PROCESS, tuple(aliases), description, metadata)
            registry.add(entry, replace=replace)
            return obj

        return add if target is None else add(target)

    register.__name__ = f"register_{kind}"
    register.__doc__ = (
        f"Register a {kind} under ``name`` (call directly or use as a decorator). "
        f"A name already taken raises DuplicateNameError unless ``replace=True``."
    )
    return register


def _create(kind: str) -> Callable[..., Any]:
    registry = REGISTRIES[kind]

    def create(name: str, **params: Any) -> Any:
        from bnn_core.params import validate_params

        target = registry.get(name)
        return target(**validate_params(target, params, f"{kind} {name!r}"))

    create.__name__ = f"create_{kind}"
    create.__doc__ = f"Build the {kind} registered as ``name`` with validated keyword options."
    return create


register_binarizer = _register("binarizer")
get_binarizer = REGISTRIES["binarizer"].get
create_binarizer = _create("binarizer")
list_binarizers = REGISTRIES["binarizer"].names
is_binarizer = REGISTRIES["binarizer"].contains

register_model = _register("model")
get_model = REGISTRIES["model"].get
list_models = REGISTRIES["model"].names
is_model = REGISTRIES["model"].contains


def create_model(name: str, binarize: Any = False, **options: Any) -> Any:
    """Build the model registered as ``name`` with validated options. ``binarize=True``
    (or ``"default"``) binarizes it as the model declares; a BConfig, mapping or method
    name (``"react"``) binarizes it with that config, keeping the declared float layers."""
    from bnn_core.config import binarization_for
    from bnn_core.params import validate_params

    builder = REGISTRIES["model"].get(name)
    model = builder(**validate_params(builder, options, f"model {name!r}"))
    if binarize is False or binarize is None:
        return model
    return binarization_for(builder, binarize).apply(model, inplace=True)


register_dataset = _register("dataset")
get_dataset = REGISTRIES["dataset"].get
create_dataset = _create("dataset")
list_datasets = REGISTRIES["dataset"].names
is_dataset = REGISTRIES["dataset"].contains

register_block = _register("block")
get_block = REGISTRIES["block"].get
create_block = _create("block")
list_blocks = REGISTRIES["block"].names
is_block = REGISTRIES["block"].contains

register_optimizer = _register("optimizer")
get_optimizer = REGISTRIES["optimizer"].get
list_optimizers = REGISTRIES["optimizer"].names
is_optimizer = REGISTRIES["optimizer"].contains

register_loss = _register("loss")
get_loss = REGISTRIES["loss"].get
create_loss = _create("loss")
list_losses = REGISTRIES["loss"].names
is_loss = REGISTRIES["loss"].contains

register_metric = _register("metric")
get_metric = REGISTRIES["metric"].get
create_metric = _create("metric")
list_metrics = REGISTRIES["metric"].names
is_metric = REGISTRIES["metric"].contains

register_callback = _register("callback")
get_callback = REGISTRIES["callback"].get
create_callback = _create("callback")
list_callbacks = REGISTRIES["callback"].names
is_callback = REGISTRIES["callback"].contains

register_bconfig = _register("bconfig")
list_bconfigs = REGISTRIES["bconfig"].names
is_bconfig = REGISTRIES["bconfig"].contains


def get_bconfig(name: str) -> Any:
    """The BConfig registered as ``name`` (a binarization method such as ``react``)."""
    from bnn_core.bconfig import BConfig

    value = REGISTRIES["bconfig"].get(name)
    if callable(value) and not isinstance(value, BConfig):
        value = value()
    return value if isinstance(value, BConfig) else BConfig.model_validate(value)


get_layer = REGISTRIES["layer"].get
list_layers = REGISTRIES["layer"].names
is_layer = REGISTRIES["layer"].contains


def register_layer(
    float_layer: Any, binary_layer: Any, *, name: str | None = None, replace: bool = False
) -> None:
    """Add a pair to the module-swap map: ``float_layer`` modules become ``binary_layer``."""
    from bnn_core.plugins import layer_entry

    registry = REGISTRIES["layer"]
    registry._ensure_ready()
    registry.add(layer_entry(float_layer, binary_layer, IN_PROCESS, name), replace=replace)


def layer_map() -> dict[type, type]:
    """The module-swap map ``{float class: binary class}``, binary classes mapping to
    themselves so that an already binarized model can be prepared again. Two plugins
    claiming the same float layer type is an error naming both."""
    registry = REGISTRIES["layer"]
    for name, entries in registry.conflicts().items():
        raise DuplicateNameError("layer", name, [f"{e.provider} ({e.reference})" for e in entries])
    mapping: dict[type, type] = {}
    owners: dict[type, Entry] = {}
    for entry in registry.entries():
        binary = entry.load()
        float_layer = entry.metadata["float_layer"]
        if isinstance(float_layer, str):
            float_layer = entry.metadata["float_layer"] = resolve_reference(float_layer)
        if float_layer in owners:
            first = owners[float_layer]
            raise DuplicateNameError(
                "layer",
                float_layer.__qualname__,
                [f"{e.provider} ({e.name}: {e.reference})" for e in (first, entry)],
            )
        owners[float_layer] = entry
        mapping[float_layer] = binary
        mapping[binary] = binary
    return mapping


get_lowering = REGISTRIES["lowering"].get
list_lowerings = REGISTRIES["lowering"].names
is_lowering = REGISTRIES["lowering"].contains


def register_lowering(
    module_type: Any, lowering: Any, *, name: str | None = None, replace: bool = False
) -> None:
    """Declare how modules of ``module_type`` (and its subclasses) export."""
    from bnn_core.plugins import lowering_entry

    registry = REGISTRIES["lowering"]
    registry._ensure_ready()
    registry.add(lowering_entry(module_type, lowering, IN_PROCESS, name), replace=replace)


def lowering_map() -> dict[type, Any]:
    """``{module type: lowering}`` of every registered lowering. Two plugins claiming
    the same module type is an error naming both."""
    registry = REGISTRIES["lowering"]
    for name, entries in registry.conflicts().items():
        raise DuplicateNameError(
            "lowering", name, [f"{e.provider} ({e.reference})" for e in entries]
        )
    mapping: dict[type, Any] = {}
    owners: dict[type, Entry] = {}
    for entry in registry.entries():
        lowering = entry.load()
        module_type = entry.metadata["module_type"]
        if isinstance(module_type, str):
            module_type = entry.metadata["module_type"] = resolve_reference(module_type)
        if module_type in owners:
            first = owners[module_type]
            raise DuplicateNameError(
                "lowering",
                module_type.__qualname__,
                [f"{e.provider} ({e.name}: {e.reference})" for e in (first, entry)],
            )
        owners[module_type] = entry
        mapping[module_type] = lowering
    return mapping


def lowering_for(module_type: type) -> Any | None:
    """The lowering of ``module_type``'s nearest registered class in its MRO, or None."""
    mapping = lowering_map()
    for base in module_type.__mro__:
        if base in mapping:
            return mapping[base]
    return None
