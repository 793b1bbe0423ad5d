"""Parameter schemas derived from a constructor's signature.

Binarizers, models and datasets declare their options once, as typed keyword arguments
of ``__init__`` (or of the builder function). This module turns that signature into a
Pydantic model that rejects unknown keys and wrong types, so a YAML config is checked
against exactly what the code accepts.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from bnn_core.errors import ConfigError

#: Constructor arguments filled in by the framework, never by a config (the layer a
#: binarizer is built for, the parameters an optimizer trains).
FRAMEWORK_ARGUMENTS = frozenset({"module", "self", "params"})


def _signature(target: Callable[..., Any]) -> inspect.Signature:
    init = target.__init__ if isinstance(target, type) else target
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):  # builtins without a signature
        return inspect.signature(init)


def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    if isinstance(target, type):
        function = target.__init__
    elif inspect.isfunction(target) or inspect.ismethod(target):
        function = target
    else:  # a callable object: its __call__ holds the annotations
        function = type(target).__call__
    try:
        return typing.get_type_hints(function, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to Any
        return {}


@functools.cache
def params_model(
    target: Callable[..., Any], optional: frozenset[str] = frozenset()
) -> type[BaseModel]:
    """A Pydantic model of ``target``'s keyword parameters (``module`` excluded).

    Parameters named in ``optional`` may be omitted even without a default (the
    framework may fill them). A ``**kwargs`` parameter makes the model accept extra keys;
    otherwise they are errors.
    """
    fields: dict[str, Any] = {}
    extra = "forbid"
    hints = _hints(target)
    for parameter in _signature(target).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            extra = "allow"
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        if parameter.name in FRAMEWORK_ARGUMENTS:
            continue
        annotation = hints.get(parameter.name, Any)
        default = parameter.default
        if default is inspect.Parameter.empty:
            default = None if parameter.name in optional else ...
        fields[parameter.name] = (annotation, default)
    name = f"{getattr(target, '__name__', 'target')}Params"
    config = ConfigDict(extra=extra, arbitrary_types_allowed=True)
    return create_model(name, __config__=config, **fields)


def validate_params(
    target: Callable[..., Any],
    params: Mapping[str, Any],
    what: str,
    optional: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Check ``params`` against ``target``'s signature and return them coerced.

    Only the keys given are returned (defaults stay implicit), so a config dumps back
    to what the user wrote. Raises :class:`ConfigError` naming each bad parameter.
    """
    if not isinstance(params, Mapping):
        raise ConfigError(f"parameters of {what} must be a mapping, got {type(params).__name__}")
    model = params_model(target, optional)
    try:
        checked = model.model_validate(dict(params))
    except ValidationError as exc:
        raise ConfigError(_params_message(exc, what, model)) from None
    values = checked.model_dump(exclude_unset=True)
    values.update(checked.model_extra or {})
    return {key: values[key] for key in params}


def _params_message(exc: ValidationError, what: str, model: type[BaseModel]) -> str:
    valid = ", ".join(model.model_fields) or "none"
    problems: list[str] = []
    reported: set[str] = set()
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        if key in reported:  # a union type reports once per alternative: keep the first
            continue
        reported.add(key)
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown parameter {key!r}")
        elif error["type"] == "missing":
            problems.append(f"missing required parameter {key!r}")
        else:
            problems.append(f"parameter {key!r}: {error['msg']} (got {error['input']!r})")
    return f"{what}: " + "; ".join(problems) + f". Valid parameters: {valid}."
