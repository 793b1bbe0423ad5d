"""Config-file schemas shared by every command: components named in a registry, the
binarization section, YAML loading, and readable validation errors.

These objects describe; the conversion engine acts on them (``BinarizeSpec.apply`` and
``.plan`` are shorthands for :func:`bnn_core.engine.binarize_with` and
:func:`~bnn_core.engine.plan_with`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bnn_core.bconfig import BConfigLike
from bnn_core.engine import LayerPlan, binarize_with, plan_with
from bnn_core.errors import BnnError, ConfigError
from bnn_core.params import validate_params
from bnn_core.plugins import REGISTRIES, load_plugins
from bnn_core.recommend import recommended_binarization as recommended_binarization
from bnn_core.safe_yaml import load_text
from bnn_core.schema import registry_json_schema


class ComponentBuildError(ConfigError, RuntimeError):
    """A registered builder failed on the options a config gave it. It is a RuntimeError
    too, so callers that retry a RuntimeError elsewhere (on another device) still do."""


class ComponentSpec(BaseModel):
    """A registered component and its options: ``{name: <registry name>, <option>: value}``
    (or just the name). Options are checked against the builder's signature."""

    model_config = ConfigDict(extra="allow")
    kind: ClassVar[str] = ""
    #: Keys the spec itself consumes: neither checked against nor passed to the builder.
    reserved: ClassVar[frozenset[str]] = frozenset()

    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_options(self) -> ComponentSpec:
        try:
            target = REGISTRIES[self.kind].get(self.name)
            options = {k: v for k, v in self.options.items() if k not in self.reserved}
            validate_params(target, options, f"{self.kind} {self.name!r}")
        except BnnError as exc:
            raise ValueError(str(exc)) from None
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        return registry_json_schema(cls.kind) if cls.kind else handler(core_schema)

    @property
    def options(self) -> dict[str, Any]:
        """The options given besides ``name``."""
        return dict(self.model_extra or {})

    def builder(self) -> Any:
        """The registered builder (class or function) this spec names."""
        return REGISTRIES[self.kind].get(self.name)

    def build(self, **overrides: Any) -> Any:
        """Call the registered builder with the options (and ``overrides``)."""
        target = REGISTRIES[self.kind].get(self.name)
        given = {k: v for k, v in self.options.items() if k not in self.reserved}
        options = validate_params(target, {**given, **overrides}, f"{self.kind} {self.name!r}")
        try:
            return target(**options)
        except BnnError:
            raise
        except Exception as exc:  # the builder is plugin code refusing its options
            raise ComponentBuildError(
                f"{self.kind} {self.name!r} cannot be built with the options {given}: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
            ) from exc


class ModelSpec(ComponentSpec):
    """A model from the model registry, for example ``{name: lenet5, num_classes: 10}``.
    ``pretrained`` (a path, a URL with its SHA-256, a mapping ``{url: ..., sha256: ...}``
    or ``true`` for the weights the model's registration declares) loads weights into the
    model it builds; see :mod:`bnn_core.weights`."""

    kind = "model"
    reserved = frozenset({"pretrained"})

    @model_validator(mode="after")
    def _check_pretrained(self) -> ModelSpec:
        from bnn_core.weights import declared_source, parse_source

        value = self.pretrained
        try:
            if value is True:
                declared_source(self.name)
            elif value is not None and value is not False:
                parse_source(value)
        except BnnError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def pretrained(self) -> Any:
        """The ``pretrained`` value given, or None."""
        return self.options.get("pretrained")

    def build_untrained(self, **overrides: Any) -> Any:
        """Build the model with its initial weights, ignoring ``pretrained``."""
        return super().build(**overrides)

    def build(self, **overrides: Any) -> Any:
        """Build the model, with the ``pretrained`` weights loaded when given."""
        model = self.build_untrained(**overrides)
        if self.pretrained is None or self.pretrained is False:
            return model
        from bnn_core.weights import load_pretrained

        return load_pretrained(model, self.pretrained, self.name)


class DatasetSpec(ComponentSpec):
    """A dataset from the dataset registry, for example ``{name: fashion_mnist, root: ...}``.
    The split is chosen by the command that uses it (a ``split`` key here is ignored)."""

    kind = "dataset"
    reserved = frozenset({"split"})


class BinarizeSpec(BaseModel):
    """The arguments of ``prepare_binary_model``, as written in a config file.

    Fields left out are taken from the model's declared binarization (see
    :func:`recommended_binarization`), so ``{bconfig: react}`` keeps the model's first
    and last layers float without naming them.
    """

    model_config = ConfigDict(extra="forbid")

    bconfig: BConfigLike | None = None
    custom_config_layers_name: dict[str, BConfigLike] = Field(default_factory=dict)
    ignore_layers_name: list[str] = Field(default_factory=list)

    def completed(self, builder: Any) -> BinarizeSpec:
        """This spec with the fields it leaves out filled from ``builder``'s declaration."""
        declared = declared_binarization(builder)
        if declared is None:
            if self.bconfig is None:
                raise ConfigError(
                    f"{getattr(builder, '__name__', builder)!r} declares no recommended "
                    "binarization, so 'bconfig' must be given"
                )
            return self
        values = {f: getattr(declared, f) for f in type(self).model_fields}
        values.update({f: getattr(self, f) for f in self.model_fields_set})
        return BinarizeSpec(**values)

    def apply(self, model: Any, inplace: bool = False) -> Any:
        """Shorthand for :func:`bnn_core.engine.binarize_with` ``(model, self, inplace)``."""
        return binarize_with(model, self, inplace)

    def plan(self, model: Any) -> list[LayerPlan]:
        """Shorthand for :func:`bnn_core.engine.plan_with` ``(model, self)``."""
        return plan_with(model, self)


def declared_binarization(builder: Any) -> BinarizeSpec | None:
    """The binarization a model builder declares, validated, or ``None``."""
    declaration = getattr(builder, "binarization", None)
    if declaration is None:
        return None
    if isinstance(declaration, BinarizeSpec):
        return declaration
    try:
        return BinarizeSpec.model_validate(declaration)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, f"the binarization declared by {builder!r}")) from None


def binarization_for(builder: Any, binarize: Any) -> BinarizeSpec:
    """The spec ``create_model(..., binarize=...)`` applies: ``True`` or ``"default"``
    takes the builder's declaration; a BConfig, mapping or method name replaces only
    its bconfig (the declared float layers stay float)."""
    if binarize is True or binarize == "default":
        return BinarizeSpec().completed(builder)
    if isinstance(binarize, BinarizeSpec):
        return binarize.completed(builder)
    try:
        spec = BinarizeSpec(bconfig=binarize)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, "binarize")) from None
    return spec.completed(builder)


#: Config files larger than this are refused before they are read.
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with :mod:`bnn_core.safe_yaml` (no duplicate keys, no alias
    bombs), turning every failure into a one-paragraph ConfigError."""
    path = Path(path)
    try:
        status = path.stat()
    except OSError as exc:
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} does not exist") from None
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a directory, not a YAML file")
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} is not a regular file (a device, pipe or socket)"
        )
    if status.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {str(path)!r} is {status.st_size:,} bytes; config files are at most "
            f"{MAX_CONFIG_BYTES:,} bytes"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not a text file (not UTF-8 at byte {exc.start}); a config is YAML text"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    data = load_text(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must contain a mapping at the top level, got "
            f"{'an empty file' if data is None else type(data).__name__}"
        )
    return data


def format_errors(exc: ValidationError, source: str) -> str:
    """Every problem of a ValidationError, one per line, with its field path."""
    lines = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"]) or "<top level>"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (not part of the schema)"
        elif error["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  - {location}: {message}")
    count = len(lines)
    return f"{source} is invalid ({count} problem{'s' if count > 1 else ''}):\n" + "\n".join(lines)


def validate_model(schema: type[BaseModel], data: dict[str, Any], source: str) -> Any:
    """Validate ``data`` against ``schema``, raising a ConfigError that lists every problem."""
    load_plugins()  # a plugin failure (strict mode) is reported as such, not as a field error
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, source)) from None
