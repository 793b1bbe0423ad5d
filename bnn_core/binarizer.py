"""The binarizer protocol: what a binarizer is, what it declares, and how it is built.

A binarizer is any ``nn.Module``. Pre-processes (input and weight) implement
``forward(x)``; post-processes implement ``forward(x_after, x_before)`` (or
``forward(x)``, then they only see the layer output). Subclassing :class:`Binarizer`
adds the declared properties the library reports and checks (roles, value set, bit
width, learnable parameters, packed-runtime support), ``with_args`` and the
progress hook used by schedules.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from bnn_core.errors import BnnError, ConfigError
from bnn_core.params import params_model, validate_params
from bnn_core.plugins import REGISTRIES
from bnn_core.registry import first_paragraph

INPUT, WEIGHT, OUTPUT = "input", "weight", "output"
ROLES = (INPUT, WEIGHT, OUTPUT)


class ValueSet:
    """Names of the output value sets a binarizer can declare."""

    BINARY = "{-1,+1}"
    SCALED_BINARY = "alpha*{-1,+1}"
    UNIPOLAR = "{0,1}"
    TERNARY = "{-1,0,+1}"
    KBIT = "k-bit"
    REAL = "real"


@runtime_checkable
class PreProcess(Protocol):
    """What the input and weight slots call: ``forward(x)`` returning a tensor of the
    same shape (any ``nn.Module`` with such a forward qualifies)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class PostProcess(Protocol):
    """What the output slot calls: ``forward(x_after, x_before)`` with the layer output
    and the layer input before binarization (a one-argument forward gets the output only)."""

    def __call__(self, x_after: torch.Tensor, x_before: torch.Tensor) -> torch.Tensor: ...


class Binarizer(nn.Module):
    """Base class of the built-in binarizers; third-party ones may use it too.

    Class attributes declare what the binarizer is, for ``bnn list binarizers``, the
    conversion engine, ``bnn summary`` and the packed runtime:

    * ``roles``: which BConfig slots it fits (``input``, ``weight``, ``output``);
    * ``value_set`` and ``bit_width``: what its output takes (see :class:`ValueSet`);
    * ``packable``: whether the packed XNOR-popcount runtime can execute it (per-channel
      scales and thresholds fold into the output transform; data-dependent scales do not);
    * ``paper``: the reference it implements.

    Learnable parameters are its ``nn.Parameter`` attributes; its options are the
    keyword arguments of ``__init__`` (the ``module`` argument, if any, receives the layer).
    """

    roles: ClassVar[frozenset[str]] = frozenset(ROLES)
    value_set: ClassVar[str] = ValueSet.REAL
    bit_width: ClassVar[int | None] = None
    packable: ClassVar[bool] = False
    paper: ClassVar[str] = ""

    @classmethod
    def with_args(cls, **params: Any) -> BinarizerFactory:
        """Bind constructor options (checked now), as the seed library's ``with_args`` did."""
        return BinarizerFactory(cls, params)

    def on_progress(self, step: float, total: float) -> None:
        """Progress hook: the training loop reports ``step`` of ``total`` (epochs or
        iterations). Binarizers with schedules override it; the default does nothing."""

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor | None:
        """The documented backward derivative d out / d x for an element-wise binarizer,
        computed from its formula (not through autograd); ``None`` if not element-wise."""
        return None

    def expected_grad(self, x: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor | None:
        """The gradient the backward pass must return for ``x`` given ``grad_output``,
        from the documented formula. Contract tests compare it with autograd."""
        derivative = self.surrogate_grad(x)
        return None if derivative is None else grad_output * derivative


class Identity(nn.Identity, Binarizer):
    """Pass the input through unchanged; as a post-process it ignores ``x_before``.

    A subclass of ``nn.Identity``, so ``isinstance(layer.weight_pre_process, nn.Identity)``
    holds for layers configured with either.
    """

    value_set = ValueSet.REAL

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, x_before: torch.Tensor | None = None) -> torch.Tensor:
        return x

    def surrogate_grad(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


@functools.cache
def layer_argument(target: Callable[..., Any]) -> tuple[str, str] | None:
    """How a constructor receives the layer: ``("keyword", "module")`` when it has a
    ``module`` parameter, ``("positional", name)`` when it has exactly one required
    positional parameter (the layer, unless the config sets it), else ``None``."""
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.name == "module" for p in parameters):
        return ("keyword", "module")
    required = [
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return ("positional", required[0]) if len(required) == 1 else None


class BinarizerFactory:
    """A binarizer class (or factory function) with bound, validated options.

    This is what each BConfig field holds. Calling it builds a new binarizer, like the
    seed's ``with_args`` partials, but it also pickles, compares by value and dumps to
    ``name`` or ``{name: ..., option: value}`` for YAML.
    """

    def __init__(self, target: Callable[..., Any], params: Mapping[str, Any] | None = None) -> None:
        if target is nn.Identity:
            target = Identity
        if not callable(target):
            raise ConfigError(f"a binarizer must be a class or a callable, got {target!r}")
        self.target = target
        argument = layer_argument(target)
        optional = (
            frozenset(argument[1:]) if argument and argument[0] == "positional" else frozenset()
        )
        self.params = validate_params(
            target, params or {}, f"binarizer {self.display_name}", optional
        )

    @property
    def name(self) -> str | None:
        """The registry name of the target, or ``None`` if it is not registered."""
        return REGISTRIES["binarizer"].name_of(self.target)

    @property
    def display_name(self) -> str:
        """The registry name, or the class name for unregistered binarizers."""
        return self.name or getattr(self.target, "__qualname__", repr(self.target))

    @property
    def roles(self) -> frozenset[str]:
        """Declared roles; undeclared (plain ``nn.Module``) binarizers fit every slot."""
        return getattr(self.target, "roles", frozenset(ROLES))

    def with_args(self, **params: Any) -> BinarizerFactory:
        """A new factory with more (or overriding) options."""
        return BinarizerFactory(self.target, {**self.params, **params})

    def __call__(self, *args: Any, **kwargs: Any) -> nn.Module:
        return self.target(*args, **{**self.params, **kwargs})

    def build(self, layer: nn.Module | None = None) -> nn.Module:
        """Build one binarizer for ``layer``: the layer is passed as ``module=`` (or as
        the only required positional argument) when the constructor takes it."""
        argument = layer_argument(self.target)
        if argument == ("keyword", "module"):
            return self(module=layer)
        if argument is not None and argument[1] not in self.params:
            return self(layer)
        return self()

    def to_config(self) -> str | dict[str, Any]:
        """``name`` or ``{name: ..., **options}``; unregistered targets cannot be dumped."""
        name = self.name
        if name is None:
            raise ConfigError(
                f"binarizer {self.display_name} is not registered, so a config naming it "
                "could not be loaded back. Register it first, for example "
                f"bnn.register_binarizer('my_name', {getattr(self.target, '__name__', 'cls')})."
            )
        return {"name": name, **self.params} if self.params else name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BinarizerFactory):
            return NotImplemented
        return self.target is other.target and self.params == other.params

    def __hash__(self) -> int:
        return hash((self.target, tuple(sorted(self.params.items(), key=lambda kv: kv[0]))))

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.display_name}({options})" if options else self.display_name


def forward_takes_two(module: nn.Module) -> bool:
    """Whether a post-process ``forward`` accepts ``(x_after, x_before)``."""
    try:
        parameters = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(
        p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters
    )


@dataclass(frozen=True)
class BinarizerInfo:
    """The declared properties of a binarizer, as listed by ``bnn list binarizers``."""

    name: str
    roles: tuple[str, ...]
    value_set: str
    bit_width: int | None
    packable: bool
    learnable: tuple[str, ...]
    options: dict[str, Any]
    summary: str
    paper: str


def describe_binarizer(name: str, target: Callable[..., Any]) -> BinarizerInfo:
    """Collect what ``target`` declares; learnable parameters are found by building one
    on a small probe layer (a 3x3 convolution, else a linear layer). Required options
    without defaults leave them unknown (reported as empty)."""
    learnable: tuple[str, ...] = ()
    for probe in (nn.Conv2d(4, 8, 3), nn.Linear(4, 8)):
        try:
            built = BinarizerFactory(target).build(probe)
        except (TypeError, ValueError, RuntimeError, BnnError):
            continue
        learnable = tuple(n for n, p in built.named_parameters() if p.requires_grad)
        break
    options = {
        key: (None if field.is_required() else field.default)
        for key, field in params_model(target).model_fields.items()
    }
    return BinarizerInfo(
        name=name,
        roles=tuple(r for r in ROLES if r in getattr(target, "roles", ROLES)),
        value_set=getattr(target, "value_set", ValueSet.REAL),
        bit_width=getattr(target, "bit_width", None),
        packable=bool(getattr(target, "packable", False)),
        learnable=learnable,
        options=options,
        summary=first_paragraph(getattr(target, "__doc__", None)),
        paper=getattr(target, "paper", ""),
    )
