"""The conversion engine: decide which layers become binary, then swap them.

Layer selection rules (the same for ``custom_config_layers_name`` keys and
``ignore_layers_name`` items):

* an exact qualified name (``"layer1.0.conv1"``); a container name selects every
  binarizable layer inside it;
* a regular expression between dollars (``"$layer[12]\\..*$"``), matched with
  ``re.fullmatch`` against every qualified module name, containers included, or
  against a trailing part of it that starts after a dot: ``"$downsample$"`` selects
  ``layer2.0.downsample`` (and the convolution inside), while ``"$conv$"`` does not
  select ``conv1`` (the seed library's unanchored search did);
* ``_first_`` / ``_last_``: the first / last binarizable layer in definition order.

A rule that selects nothing is an error. Ignored layers stay float. Per-layer configs
are applied patterns first, then exact names and ``_first_``/``_last_``, each in the
order given, so the most specific rule wins; a per-layer ``BConfig()`` keeps the
layer full precision, a partial one overrides only the fields it sets.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import nn

from bnn_core.bconfig import BConfig, resolve_bconfig
from bnn_core.errors import ConfigError, LayerMatchError
from bnn_core.layers import SLOTS, is_binary_layer, layer_map
from bnn_core.plugins import REGISTRIES

SPECIAL_NAMES = ("_first_", "_last_")

LayerRules = Mapping[str, Any] | Iterable[tuple[str, Any]] | None


class Binarization(Protocol):
    """The arguments of :func:`prepare_binary_model` held together, as a config file's
    ``binarize`` section describes them (:class:`bnn_core.config.BinarizeSpec`)."""

    bconfig: Any
    custom_config_layers_name: Any
    ignore_layers_name: Any


@dataclass
class LayerPlan:
    """What happens to one layer: binarized with ``bconfig``, or kept float (and why)."""

    name: str
    layer_type: str
    binarize: bool
    reason: str
    bconfig: BConfig | None = None
    binarizers: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "name": self.name,
            "type": self.layer_type,
            "binarize": self.binarize,
            "reason": self.reason,
            "binarizers": self.binarizers,
        }


def _rules(custom: LayerRules) -> list[tuple[str, BConfig]]:
    if custom is None:
        return []
    items = custom.items() if isinstance(custom, Mapping) else custom
    rules = []
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
            raise ConfigError(
                "custom_config_layers_name must map layer names to BConfigs, for example "
                "{'conv1': BConfig()}"
            )
        rules.append((item[0], resolve_bconfig(item[1], f"custom_config_layers_name[{item[0]!r}]")))
    return rules


def _is_pattern(rule: str) -> bool:
    return len(rule) >= 2 and rule.startswith("$") and rule.endswith("$")


class _Selector:
    """Resolves selection rules against one model's qualified module names."""

    def __init__(self, model: nn.Module, mapping: Mapping[type, type]) -> None:
        self.modules = {n: m for n, m in _all_modules(model) if n}
        self.root = model
        self.layers = [n for n, m in _all_modules(model) if type(m) in mapping]

    def select(self, rule: str, option: str) -> list[str]:
        if rule == "_first_":
            return self.layers[:1]
        if rule == "_last_":
            return self.layers[-1:]
        if _is_pattern(rule):
            return self._pattern(rule, option)
        if rule not in self.modules and not (rule == "" and self.layers == [""]):
            close = difflib.get_close_matches(rule, list(self.modules), n=3, cutoff=0.6)
            hint = (" Did you mean " + " or ".join(map(repr, close)) + "?") if close else ""
            raise LayerMatchError(
                f"{option}: the model has no module named {rule!r}.{hint} Names are qualified "
                f"(for example {self._example()!r}); use '$regex$' to match several."
            )
        selected = self._under([rule])
        if not selected:
            kind = type(self.modules[rule]).__name__
            raise LayerMatchError(
                f"{option}: module {rule!r} is a {kind}, which contains no layer that can be "
                "binarized (`bnn list layers` shows the layer types that can)."
            )
        return selected

    def _pattern(self, rule: str, option: str) -> list[str]:
        try:
            pattern = re.compile(rule[1:-1])
        except re.error as exc:
            raise LayerMatchError(
                f"{option}: {rule!r} is not a valid regular expression: {exc}"
            ) from None
        matched = [n for n in self.modules if any(map(pattern.fullmatch, _tails(n)))]
        selected = self._under(matched)
        if not selected:
            loose = [n for n in self.layers if pattern.search(n)]
            hint = (
                f" Patterns must match a whole name (re.fullmatch); an unanchored "
                f"search would have matched {loose[:3]!r} — write '$.*{rule[1:-1]}.*$' for that."
                if loose
                else f" Layers that can be binarized are named like {self._example()!r}."
            )
            raise LayerMatchError(f"{option}: pattern {rule!r} matches no binarizable layer.{hint}")
        return selected

    def _under(self, names: list[str]) -> list[str]:
        return [
            layer
            for layer in self.layers
            if any(layer == n or layer.startswith(n + ".") for n in names)
        ]

    def _example(self) -> str:
        return self.layers[len(self.layers) // 2] if self.layers else next(iter(self.modules), "")


def _tails(name: str) -> list[str]:
    """``"a.b.c"`` -> ``["a.b.c", "b.c", "c"]``: the parts a pattern may match."""
    parts = name.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


def plan_binarization(
    model: nn.Module,
    bconfig: BConfig | Mapping[str, Any] | None,
    custom_config_layers_name: LayerRules = None,
    ignore_layers_name: Iterable[str] | None = None,
    *,
    modules_mapping: Mapping[type, type] | None = None,
) -> list[LayerPlan]:
    """Decide, for every binarizable layer of ``model``, whether and how it is binarized."""
    mapping = modules_mapping if modules_mapping is not None else layer_map()
    base = resolve_bconfig(bconfig, "bconfig")
    selector = _Selector(model, mapping)
    if isinstance(ignore_layers_name, str):
        ignore_layers_name = [ignore_layers_name]
    ignored: dict[str, str] = {}
    for rule in ignore_layers_name or []:
        for name in selector.select(rule, "ignore_layers_name"):
            ignored.setdefault(name, rule)
    rules = _rules(custom_config_layers_name)
    ordered = [r for r in rules if _is_pattern(r[0])] + [r for r in rules if not _is_pattern(r[0])]
    chosen: dict[str, tuple[BConfig, str]] = {}
    for rule, layer_config in ordered:
        for name in selector.select(rule, "custom_config_layers_name"):
            current = chosen.get(name, (base, "bconfig"))[0]
            effective = (
                layer_config
                if layer_config.is_full_precision
                else layer_config.merged_over(current if not current.is_full_precision else base)
            )
            chosen[name] = (effective, f"custom_config_layers_name[{rule!r}]")
    modules = dict(_all_modules(model))
    plans = []
    for name in selector.layers:
        layer_type = _float_type(modules[name]).__name__
        if name in ignored:
            plans.append(
                LayerPlan(name, layer_type, False, f"ignore_layers_name[{ignored[name]!r}]")
            )
            continue
        config, source = chosen.get(name, (base, "bconfig"))
        if config.is_full_precision:
            plans.append(
                LayerPlan(name, layer_type, False, f"{source}: BConfig() (full precision)")
            )
            continue
        binarizers = {slot: repr(config.factory(slot)) for slot in SLOTS}
        if config.pad_value:
            binarizers[SLOTS[0]] += f", pad {config.pad_value:+d}"
        plans.append(LayerPlan(name, layer_type, True, source, config, binarizers))
    return plans


def _float_type(module: nn.Module) -> type:
    return getattr(type(module), "_FLOAT_MODULE", type(module))


def _all_modules(model: nn.Module) -> Any:
    """Every (name, module) pair, a module used at several places once per place."""
    return model.named_modules(remove_duplicate=False)


def _check_shared(model: nn.Module, plans: list[LayerPlan]) -> None:
    """A module used at several places gets one plan: its places must agree."""
    first: dict[int, LayerPlan] = {}
    for plan in plans:
        module = model.get_submodule(plan.name) if plan.name else model
        seen = first.setdefault(id(module), plan)
        if (seen.binarize, seen.bconfig) != (plan.binarize, plan.bconfig):
            raise LayerMatchError(
                f"{seen.name!r} and {plan.name!r} are the same module used twice, but the "
                f"rules treat them differently ({seen.reason} vs {plan.reason}); a shared "
                "module can only be binarized one way."
            )


def _apply(model: nn.Module, plans: list[LayerPlan], mapping: Mapping[type, type]) -> nn.Module:
    _check_shared(model, plans)
    replaced: dict[int, nn.Module] = {}
    for plan in plans:
        module = model.get_submodule(plan.name) if plan.name else model
        if id(module) in replaced:
            new = replaced[id(module)]
        elif plan.binarize:
            assert plan.bconfig is not None
            new = mapping[type(module)].from_float(module, plan.bconfig)
        elif is_binary_layer(module):
            new = module.to_float()
        else:
            continue
        replaced[id(module)] = new
        if not plan.name:
            return new
        parent_name, _, child = plan.name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return model


def prepare_binary_model(
    model: nn.Module,
    bconfig: BConfig | Mapping[str, Any] | None = None,
    custom_config_layers_name: LayerRules = None,
    ignore_layers_name: Iterable[str] | None = None,
    inplace: bool = False,
    *,
    modules_mapping: Mapping[type, type] | None = None,
) -> nn.Module:
    """Swap the binarizable layers of ``model`` for binary ones configured by ``bconfig``.

    ``custom_config_layers_name`` maps layer names or patterns to per-layer BConfigs;
    ``ignore_layers_name`` lists layers to keep float (see the module docstring for the
    matching rules). Without ``inplace`` the model is deep-copied first. Preparing an
    already binarized model again (a later training stage) keeps the learned state of
    binarizers whose class does not change. ``bconfig=None`` uses ``model.bconfig``.
    """
    if bconfig is None:
        bconfig = getattr(model, "bconfig", None)
        if bconfig is None:
            raise ConfigError("prepare_binary_model needs a bconfig (or a model.bconfig attribute)")
    mapping = modules_mapping if modules_mapping is not None else layer_map()
    plans = plan_binarization(
        model, bconfig, custom_config_layers_name, ignore_layers_name, modules_mapping=mapping
    )
    if not inplace:
        model = copy.deepcopy(model)
    return _apply(model, plans, mapping)


def binarize_with(model: nn.Module, spec: Binarization, inplace: bool = False) -> nn.Module:
    """Binarize ``model`` as a config's binarization section (``spec``) says."""
    return prepare_binary_model(
        model, spec.bconfig, spec.custom_config_layers_name, spec.ignore_layers_name, inplace
    )


def plan_with(model: nn.Module, spec: Binarization) -> list[LayerPlan]:
    """The per-layer plan of :func:`binarize_with`, without changing ``model``."""
    return plan_binarization(
        model, spec.bconfig, spec.custom_config_layers_name, spec.ignore_layers_name
    )


def convert(
    model: nn.Module,
    inplace: bool = False,
    *,
    modules_mapping: Mapping[type, type] | None = None,
) -> nn.Module:
    """Swap the layers that carry a ``.bconfig`` set by hand (on themselves or on a parent
    module: a child's partial BConfig overrides only the fields it sets)."""
    mapping = modules_mapping if modules_mapping is not None else layer_map()
    inherited: dict[str, BConfig | None] = {}
    plans = []
    for name, module in _all_modules(model):
        parent = inherited.get(name.rpartition(".")[0]) if name else None
        own = getattr(module, "bconfig", None)
        config = parent
        if own is not None:
            own = resolve_bconfig(own, f"{name or 'model'}.bconfig")
            config = own.merged_over(parent) if parent is not None else own
        inherited[name] = config
        if type(module) not in mapping or config is None:
            continue
        layer_type = _float_type(module).__name__
        source = f"{name or 'model'}.bconfig" if own is not None else "inherited bconfig"
        if config.is_full_precision:
            plans.append(
                LayerPlan(name, layer_type, False, f"{source}: BConfig() (full precision)")
            )
        else:
            plans.append(LayerPlan(name, layer_type, True, source, config))
    if not inplace:
        model = copy.deepcopy(model)
    return _apply(model, plans, mapping)


def explain(
    model: nn.Module,
    bconfig: BConfig | Mapping[str, Any] | None = None,
    custom_config_layers_name: LayerRules = None,
    ignore_layers_name: Iterable[str] | None = None,
) -> list[LayerPlan]:
    """List every binarizable layer with the binarizers it gets, or why it stays float.

    Without ``bconfig`` it describes ``model`` as it is (for example after
    ``prepare_binary_model``)."""
    if bconfig is not None:
        return plan_binarization(model, bconfig, custom_config_layers_name, ignore_layers_name)
    mapping = layer_map()
    plans = []
    for name, module in _all_modules(model):
        if type(module) not in mapping:
            continue
        layer_type = _float_type(module).__name__
        if is_binary_layer(module):
            binarizers = {slot: _describe_module(getattr(module, slot)) for slot in SLOTS}
            plans.append(
                LayerPlan(name, layer_type, True, "binary layer", module.bconfig, binarizers)
            )
        else:
            plans.append(LayerPlan(name, layer_type, False, "float layer"))
    return plans


def _describe_module(module: nn.Module) -> str:
    return REGISTRIES["binarizer"].name_of(type(module)) or type(module).__qualname__


def format_plan(plans: list[LayerPlan]) -> str:
    """A plain-text table of a plan (the CLI renders a richer one)."""
    rows = [("layer", "type", "input", "weight", "output / reason")]
    for p in plans:
        if p.binarize:
            b = p.binarizers
            rows.append(
                (
                    p.name or "<model>",
                    p.layer_type,
                    b.get(SLOTS[0], ""),
                    b.get(SLOTS[1], ""),
                    b.get(SLOTS[2], ""),
                )
            )
        else:
            rows.append((p.name or "<model>", p.layer_type, "float", "float", p.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
