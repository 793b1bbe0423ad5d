"""Registry builders for timm's models: ``timm/<name>`` builds ``timm.create_model(name)``.

Each builder imports timm only when called and always builds the untrained model
(``pretrained=False``): nothing is downloaded, and the options that would load weights
or read files are refused. ``num_classes`` and ``in_chans`` are options of every builder
(``in_chans: 1`` for grey images such as Fashion-MNIST); any other option goes to
``timm.create_model`` as a keyword, and one timm rejects is a :class:`ConfigError`.

The declared binarization keeps the first and last binarizable layers (the stem
convolution or patch embedding, and the classifier) full precision and binarizes every
other convolution and linear layer with the ``react`` method, as for torchvision's
models: its learned input thresholds let a ReLU network's binary layers, whose inputs
are never negative, pass information.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, overload

from annotated_types import Gt
from bnn_core.errors import ConfigError
from bnn_core.recommend import recommended_binarization

from bnn_timm.names import timm_model_names

PREFIX = "timm/"
DEFAULT_BCONFIG = "react"
#: First and last binarizable layers float: what ``binarize: default`` keeps.
FIRST_AND_LAST_FLOAT = {"_first_": {}, "_last_": {}}
#: The input size declared for a model whose timm configuration gives none.
DEFAULT_INPUT_SIZE = (3, 224, 224)
#: ``timm.create_model`` arguments that load weights or read files: never from a config.
LOADING_OPTIONS = frozenset(
    {"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir"}
)


class TimmInputSize(Sequence[int]):
    """The ``(C, H, W)`` input size of timm's default configuration of one model (for
    example 160x160 for ``test_resnet``, 299x299 for ``inception_v3``), looked up when
    first read, so registering 1,400 models imports neither timm nor torch. Models whose
    configuration gives no size get :data:`DEFAULT_INPUT_SIZE`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._size: tuple[int, ...] | None = None

    def resolve(self) -> tuple[int, ...]:
        """The size as a tuple, importing timm on the first call."""
        if self._size is None:
            from timm.models import get_pretrained_cfg

            size = getattr(get_pretrained_cfg(self.name), "input_size", None)
            self._size = tuple(int(n) for n in size) if size else DEFAULT_INPUT_SIZE
        return self._size

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[int, ...]: ...
    def __getitem__(self, index: int | slice) -> int | tuple[int, ...]:
        return self.resolve()[index]

    def __len__(self) -> int:
        return len(self.resolve())

    def __iter__(self) -> Iterator[int]:
        return iter(self.resolve())

    def __repr__(self) -> str:
        return f"TimmInputSize({self.name!r})"


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in options.items())


def timm_builder(name: str, module: str) -> Callable[..., Any]:
    """The registry's builder for timm's ``name`` (defined in ``timm/models/<module>.py``):
    keyword options, timm imported on call, never pretrained."""

    def build(
        num_classes: Annotated[int, Gt(0)] = 1000,
        in_chans: Annotated[int, Gt(0)] = 3,
        **options: Any,
    ) -> Any:
        refused = sorted(LOADING_OPTIONS.intersection(options))
        if refused:
            raise ConfigError(
                f"{PREFIX}{name} builds untrained models and never loads weights or files, so "
                f"the option {', '.join(refused)} is not accepted; load trained weights into "
                "the built model instead"
            )
        import timm

        given = {"num_classes": num_classes, "in_chans": in_chans, **options}
        try:
            return timm.create_model(name, pretrained=False, **given)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ConfigError(
                f"{PREFIX}{name}: timm cannot build the model with the options "
                f"{_options_text(given)}: {type(exc).__name__}: {exc}"
            ) from None

    build.__name__ = name
    build.__qualname__ = f"timm_builder.{name}"
    build.__doc__ = (
        f"timm model, untrained ({module}.py).\n\n"
        "Other options go to timm.create_model (for example drop_rate, or img_size for the "
        "vision transformers)."
    )
    return recommended_binarization(DEFAULT_BCONFIG, FIRST_AND_LAST_FLOAT)(build)


def register_timm_models(register: Callable[..., Any]) -> None:
    """Register every model of the installed timm as ``timm/<name>``, with timm's input
    size as its ``input_shape``."""
    for name, module in timm_model_names():
        register(f"{PREFIX}{name}", timm_builder(name, module), input_shape=TimmInputSize(name))
