"""The hooks a bnn plugin can implement, and the markers to implement them.

A plugin is a module (or any object) named by an entry point in the group
``bnn_core.plugins``. It implements some of the functions below, decorated with
``@bnn_core.hookimpl``; each receives a ``register`` callback and calls it once per
component it provides. Hooks must not import heavy modules: pass lazy
``"package.module:attribute"`` references so ``bnn list-plugins`` stays fast.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

PROJECT_NAME = "bnn_core"
ENTRY_POINT_GROUP = "bnn_core.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class RegisterComponent(Protocol):
    """``register(name, target, *, aliases=(), description=None, **metadata)``.

    ``target`` is the object itself (a class or factory) or a lazy reference string
    ``"package.module:attribute"`` imported on first use.
    """

    def __call__(
        self,
        name: str,
        target: Any,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        description: str | None = None,
        **metadata: Any,
    ) -> None: ...


class RegisterLayer(Protocol):
    """``register(float_layer, binary_layer, *, name=None)``: a module-swap map entry.

    Both may be classes or lazy references. ``name`` defaults to the float class name in
    snake case (``torch.nn:ConvTranspose2d`` -> ``conv_transpose2d``).
    """

    def __call__(self, float_layer: Any, binary_layer: Any, *, name: str | None = None) -> None: ...


class RegisterLowering(Protocol):
    """``register(module_type, lowering, *, name=None)``: how modules of a type export.

    ``module_type`` is a class or a lazy reference (``"torch.nn:Conv2d"``); ``lowering``
    is the object (or lazy reference) that folds or lowers such modules for the packed
    runtime (see docs/deploy.md, *Adding a lowering*). ``name`` defaults to the module
    type's ``module:Class`` reference. The lowering of a subclass's nearest registered
    base applies.
    """

    def __call__(self, module_type: Any, lowering: Any, *, name: str | None = None) -> None: ...


@hookspec
def bnn_register_binarizers(register: RegisterComponent) -> None:
    """Register binarizers: ``nn.Module`` classes used as ``activation_pre_process``,
    ``weight_pre_process`` or ``activation_post_process`` in a BConfig."""


@hookspec
def bnn_register_layers(register: RegisterLayer) -> None:
    """Register binary layer types: which binary class replaces which float class when
    a model is prepared (for example ``torch.nn:Linear`` -> ``bnn_core.layers:BinaryLinear``)."""


@hookspec
def bnn_register_models(register: RegisterComponent) -> None:
    """Register model builders: callables taking keyword options (``num_classes``, ...)
    and returning an ``nn.Module``."""


@hookspec
def bnn_register_datasets(register: RegisterComponent) -> None:
    """Register dataset builders: callables taking keyword options (``root``, ``split``,
    ...) and returning a ``torch.utils.data.Dataset``."""


@hookspec
def bnn_register_bconfigs(register: RegisterComponent) -> None:
    """Register named binarization methods: whole BConfigs (a ``BConfig``, or a mapping
    of its fields) that a config selects with one name, for example ``bconfig: react``."""


@hookspec
def bnn_register_blocks(register: RegisterComponent) -> None:
    """Register building blocks: ``nn.Module`` classes (activations such as RPReLU,
    learnable biases, ...) that models and configs select by name."""


@hookspec
def bnn_register_optimizers(register: RegisterComponent) -> None:
    """Register optimizers: ``torch.optim.Optimizer`` classes whose first argument is the
    parameter groups, selected by name in a recipe's ``training.optimizers``."""


@hookspec
def bnn_register_lowerings(register: RegisterLowering) -> None:
    """Register export lowerings: how a binarizer, block or layer type folds into the
    packed runtime's nodes when a model is exported."""


@hookspec
def bnn_register_losses(register: RegisterComponent) -> None:
    """Register training losses: ``nn.Module`` classes (or factories) taking keyword
    options, selected by name in a recipe's ``training.loss``."""


@hookspec
def bnn_register_metrics(register: RegisterComponent) -> None:
    """Register training metrics, selected by name in a recipe's ``training.metrics``."""


@hookspec
def bnn_register_callbacks(register: RegisterComponent) -> None:
    """Register trainer callbacks, selected by name in a recipe's ``training.callbacks``."""


class RegisterPathHandler(Protocol):
    """``register(handler)``: an iopath ``PathHandler`` through which pretrained weights are
    read, as an instance, a class taking no arguments, or a lazy reference to either. Its
    ``_get_supported_prefixes()`` (``"s3://"``, ...) are the locations it serves."""

    def __call__(self, handler: Any) -> None: ...


@hookspec
def bnn_register_path_handlers(register: RegisterPathHandler) -> None:
    """Register iopath path handlers, so that ``pretrained:`` locations with their
    prefixes (``s3://bucket/model.pt#sha256=...``) can be read."""
