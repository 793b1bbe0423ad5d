"""BConfig: which binarizer goes on a layer's input, weight and output.

Each field accepts a binarizer class, a ``.with_args(...)`` factory, a
``functools.partial``, a registry name (``"ste_sign"``) or a mapping
``{"name": "xnor_weight", "compute_alpha": False}``. Options are checked against the
binarizer's own constructor signature. ``BConfig()`` (no field set) means "keep this
layer full precision"; a per-layer BConfig that sets some fields overrides only those
fields of the model-wide one. ``model_dump()`` returns names and options, so a BConfig
round-trips through YAML, and instances pickle.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    ValidationInfo,
    field_validator,
)
from torch import nn

from bnn_core.binarizer import INPUT, OUTPUT, WEIGHT, BinarizerFactory, Identity
from bnn_core.errors import BnnError, ConfigError
from bnn_core.plugins import REGISTRIES
from bnn_core.schema import RegistrySchema

ROLE_OF_SLOT = {
    "activation_pre_process": INPUT,
    "weight_pre_process": WEIGHT,
    "activation_post_process": OUTPUT,
}


def to_factory(value: Any, slot: str | None = None) -> BinarizerFactory:
    """Turn any accepted spelling of a binarizer into a :class:`BinarizerFactory`."""
    if value is None:
        factory = BinarizerFactory(Identity)
    elif isinstance(value, BinarizerFactory):
        factory = value
    elif isinstance(value, str):
        factory = BinarizerFactory(REGISTRIES["binarizer"].get(value))
    elif isinstance(value, Mapping):
        options = dict(value)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(
                "a binarizer mapping needs a 'name' key holding a registered binarizer name, "
                f"got {dict(value)!r}"
            )
        factory = BinarizerFactory(REGISTRIES["binarizer"].get(name), options)
    elif isinstance(value, functools.partial):
        if value.args:
            raise ValueError(f"pass binarizer options by keyword, not position: {value!r}")
        factory = BinarizerFactory(value.func, value.keywords)
    elif isinstance(value, nn.Module):
        raise ValueError(
            f"got a {type(value).__name__} instance; pass the class (or Class.with_args(...)) "
            "so that every layer gets its own binarizer"
        )
    elif callable(value):
        factory = BinarizerFactory(value)
    else:
        raise ValueError(
            "expected a binarizer class, Class.with_args(...), a registered name or "
            f"{{name: ..., option: value}}, got {value!r}"
        )
    role = ROLE_OF_SLOT.get(slot or "")
    if role is not None and role not in factory.roles:
        fits = ", ".join(sorted(factory.roles))
        raise ValueError(
            f"{factory.display_name} is a binarizer for {fits}; it cannot be used as {slot}"
        )
    return factory


def resolve_bconfig(value: Any, where: str = "bconfig") -> BConfig:
    """A BConfig from a BConfig, a mapping of its fields, the name of a registered
    binarization method (``"react"``) or ``None`` (full precision)."""
    if isinstance(value, BConfig):
        return value
    if value is None:
        return BConfig()
    if isinstance(value, str):
        return registered_bconfig(value)
    if isinstance(value, Mapping):
        try:
            return BConfig.model_validate(dict(value))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    raise ConfigError(
        f"{where}: expected a BConfig, a mapping or a registered method name, "
        f"got {type(value).__name__}"
    )


def registered_bconfig(name: str) -> BConfig:
    """The BConfig registered as ``name`` (a binarization method such as ``react``); a
    plugin may register a BConfig, a mapping of its fields or a function returning one."""
    value = REGISTRIES["bconfig"].get(name)
    if callable(value) and not isinstance(value, BConfig):
        value = value()
    return value if isinstance(value, BConfig) else BConfig.model_validate(value)


def _bconfig_from_name(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return resolve_bconfig(value)
        except BnnError as exc:
            raise ValueError(str(exc)) from None
    return value


def _validate(value: Any, info: ValidationInfo) -> BinarizerFactory:
    try:
        return to_factory(value, info.field_name)
    except BnnError as exc:  # surface as a validation error so every problem is listed
        raise ValueError(str(exc)) from None


BinarizerField = Annotated[
    Any,
    BeforeValidator(_validate),
    PlainSerializer(lambda f: f.to_config() if isinstance(f, BinarizerFactory) else f),
    RegistrySchema("binarizer", nullable=True),
]


class BConfig(BaseModel):
    """Binarization of one layer (or, given to ``prepare_binary_model``, of all layers)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    activation_pre_process: BinarizerField = None
    weight_pre_process: BinarizerField = None
    activation_post_process: BinarizerField = None
    pad_value: Literal[-1, 0, 1] | None = Field(
        None,
        description="value that pads the binarized input of a convolution: 0 (the float "
        "layer's zero padding, the default) or +1/-1, which keeps the input binary so the "
        "packed runtime needs no border correction (Larq's pad_values)",
    )

    @field_validator("pad_value", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("pad_value must be -1, 0 or 1, not a boolean")
        return value

    @property
    def is_full_precision(self) -> bool:
        """True when no field is set: ``BConfig()`` keeps a layer in full precision."""
        return not self.model_fields_set

    def factory(self, slot: str) -> BinarizerFactory:
        """The factory for ``slot``; an unset slot is the identity."""
        value = getattr(self, slot)
        return value if isinstance(value, BinarizerFactory) else BinarizerFactory(Identity)

    def merged_over(self, base: BConfig) -> BConfig:
        """This (per-layer) config applied over ``base``: only fields set here override."""
        if self.is_full_precision:
            return self
        values = {s: getattr(base, s) for s in base.model_fields_set}
        values.update({s: getattr(self, s) for s in self.model_fields_set})
        return BConfig(**values)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        """Names and options of the fields that were set (unset fields are omitted, so
        a partial per-layer config stays partial after a YAML round trip)."""
        kwargs.setdefault("exclude_unset", True)
        return super().model_dump(**kwargs)

    def model_dump_json(self, **kwargs: Any) -> str:
        """JSON form of :meth:`model_dump`."""
        kwargs.setdefault("exclude_unset", True)
        return super().model_dump_json(**kwargs)

    def __repr_args__(self) -> Any:
        return [
            (f, getattr(self, f)) for f in type(self).model_fields if f in self.model_fields_set
        ]

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: Any, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        schema = handler(core_schema)
        schema = handler.resolve_ref_schema(schema)
        schema["description"] = (
            "Binarizers of a layer's input, weight and output. An empty mapping keeps the "
            "layer full precision."
        )
        return schema


#: A BConfig field of a config file: a mapping of fields or a registered method name.
BConfigLike = Annotated[BConfig, BeforeValidator(_bconfig_from_name)]
