"""The public registry API of each kind (timm / torchvision style).

For every kind there is ``register_<kind>``, ``get_<kind>``, ``create_<kind>``,
``list_<kind>s`` and ``is_<kind>``. Plugins are loaded on the first call of any of
them. In-process registration is also a decorator::

    @register_binarizer("my_sign")
    class MySign(nn.Module): ...

This module sits above the rest of the framework: ``create_model(..., binarize=...)``
and ``get_bconfig`` use the configuration schemas and the conversion engine, which are
imported when those functions are first called, so that importing the registry API
(``bnn list-plugins``, ``bnn --help``) does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from bnn_core.plugins import KINDS as KINDS
from bnn_core.plugins import REGISTRIES, layer_entry, lowering_entry
from bnn_core.registry import IN_PROCESS, Entry, snake_case

T = TypeVar("T")


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
        from bnn_core.params import validate_params  # pydantic, on the first create

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


def create_model(name: str, binarize: Any = False, pretrained: Any = None, **options: Any) -> Any:
    """Build the model registered as ``name`` with validated options. ``binarize=True``
    (or ``"default"``) binarizes it as the model declares; a BConfig, mapping or method
    name (``"react"``) binarizes it with that config, keeping the declared float layers.
    ``pretrained`` (a path, a URL with its SHA-256, or ``True`` for the weights the
    registration declares) loads weights into the model, after it is binarized; see
    :mod:`bnn_core.weights`."""
    from bnn_core.config import binarization_for
    from bnn_core.engine import binarize_with
    from bnn_core.params import validate_params

    builder = REGISTRIES["model"].get(name)
    model = builder(**validate_params(builder, options, f"model {name!r}"))
    if binarize is not False and binarize is not None:
        model = binarize_with(model, binarization_for(builder, binarize), inplace=True)
    if pretrained is not None and pretrained is not False:
        from bnn_core.weights import load_pretrained

        load_pretrained(model, pretrained, name)
    return model


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
    from bnn_core.bconfig import registered_bconfig

    return registered_bconfig(name)


get_layer = REGISTRIES["layer"].get
list_layers = REGISTRIES["layer"].names
is_layer = REGISTRIES["layer"].contains


def register_layer(
    float_layer: Any, binary_layer: Any, *, name: str | None = None, replace: bool = False
) -> None:
    """Add a pair to the module-swap map: ``float_layer`` modules become ``binary_layer``."""
    registry = REGISTRIES["layer"]
    registry._ensure_ready()
    registry.add(layer_entry(float_layer, binary_layer, IN_PROCESS, name), replace=replace)


def layer_map() -> dict[type, type]:
    """The module-swap map ``{float class: binary class}``, binary classes mapping to
    themselves so that an already binarized model can be prepared again. Two plugins
    claiming the same float layer type is an error naming both."""
    from bnn_core.layers import layer_map as swap_map

    return swap_map()


get_lowering = REGISTRIES["lowering"].get
list_lowerings = REGISTRIES["lowering"].names
is_lowering = REGISTRIES["lowering"].contains


def register_lowering(
    module_type: Any, lowering: Any, *, name: str | None = None, replace: bool = False
) -> None:
    """Declare how modules of ``module_type`` (and its subclasses) export."""
    registry = REGISTRIES["lowering"]
    registry._ensure_ready()
    registry.add(lowering_entry(module_type, lowering, IN_PROCESS, name), replace=replace)


def lowering_map() -> dict[type, Any]:
    """``{module type: lowering}`` of every registered lowering. Two plugins claiming
    the same module type is an error naming both."""
    return REGISTRIES["lowering"].type_map("module_type")


def lowering_for(module_type: type) -> Any | None:
    """The lowering of ``module_type``'s nearest registered class in its MRO, or None."""
    mapping = lowering_map()
    for base in module_type.__mro__:
        if base in mapping:
            return mapping[base]
    return None
