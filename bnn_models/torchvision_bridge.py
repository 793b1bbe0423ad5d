"""Every torchvision classification model in the model registry, as ``torchvision/<name>``.

The names are read from the installed torchvision's source, without importing it (nor
torch), so ``bnn list-plugins`` stays fast: each module directly in
``torchvision/models/`` (``resnet.py``, ``mobilenetv2.py``, ...) marks its builders
with ``@register_model()``; the subpackages (detection, segmentation, video,
quantization, optical flow) hold the other tasks and are not read. A line scan finds
the decorated functions: parsing the twenty files with ``ast`` would cost about a
quarter of a second on each command.

Each name gets a builder from :func:`torchvision_builder`, which imports torchvision
only when called and builds the untrained model with ``torchvision.models.get_model``
(``weights=None``: nothing is downloaded). Its declared binarization keeps the first
and last binarizable layers (the stem convolution or patch embedding, and the
classifier) full precision and binarizes the rest with the ``react`` method, which
suits any convolution or linear layer, depthwise ones included. Its input binarizer
learns a per-channel threshold: in these ReLU networks every binary layer reads a
ReLU's output, never negative, which a plain sign maps to +1 everywhere
(``benchmarks/bridge_binarization.py``: chance accuracy with ``xnor``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Gt

from bnn_core.paths import installed_folder
from bnn_core.recommend import recommended_binarization
from bnn_models.binarization import FIRST_AND_LAST_FLOAT

PREFIX = "torchvision/"
DEFAULT_BCONFIG = "react"
IMAGENET_SHAPE = (3, 224, 224)
#: Builders whose default input differs from 224x224.
INPUT_SHAPES = {"inception_v3": (3, 299, 299)}

_DECORATOR = re.compile(r"@register_model\(\s*(?:name\s*=\s*)?(?:[\"'](?P<name>\w+)[\"'])?")
_DEFINITION = re.compile(r"def\s+(?P<name>\w+)")


def torchvision_models_dir() -> Path | None:
    """``torchvision/models`` of the installed torchvision, found without importing it."""
    return installed_folder("torchvision", "models")


def registered_builders(source: str) -> Iterator[str]:
    """Names of the top-level functions of ``source`` decorated with
    ``@register_model(...)``: the decorator's ``name`` argument, else the function's."""
    pending: str | None = None
    for line in source.splitlines():
        if not line or line[0].isspace() or line.startswith(("#", ")")):
            continue  # inside a statement, a comment, or a multi-line decorator's end
        if decorator := _DECORATOR.match(line):
            pending = decorator["name"] or ""
        elif line.startswith("@"):
            continue  # another decorator between ours and the function
        elif pending is not None and (definition := _DEFINITION.match(line)):
            yield pending or definition["name"]
            pending = None
        else:
            pending = None


def classification_models() -> list[tuple[str, str]]:
    """``(name, module)`` of every torchvision classification model builder, sorted by
    name; empty when torchvision is not installed."""
    models = torchvision_models_dir()
    if models is None:
        return []
    found = []
    for path in sorted(models.glob("*.py")):
        if path.name.startswith("_"):
            continue
        source = path.read_text(encoding="utf-8")
        if "@register_model" in source:
            found += [(name, path.stem) for name in registered_builders(source)]
    return sorted(found)


def torchvision_builder(name: str, module: str) -> Callable[..., Any]:
    """The registry's builder for torchvision's ``name`` (defined in
    ``torchvision.models.<module>``): keyword options, torchvision imported on call."""

    def build(num_classes: Annotated[int, Gt(0)] = 1000, **options: Any) -> Any:
        from bnn_core.errors import ConfigError

        if options.pop("weights", None) is not None:
            raise ConfigError(
                f"{PREFIX}{name} builds untrained models (weights=None): pretrained weights "
                "are not downloaded; load a state dict into the model instead"
            )
        from torchvision.models import get_model

        try:
            return get_model(name, weights=None, num_classes=num_classes, **options)
        except TypeError as exc:
            if not options:
                raise
            raise ConfigError(
                f"{PREFIX}{name}: torchvision's builder rejects the options "
                f"{', '.join(sorted(options))}: {exc}"
            ) from None

    build.__name__ = name
    build.__qualname__ = f"torchvision_builder.{name}"
    build.__doc__ = (
        f"torchvision model, untrained ({module}.py).\n\n"
        "Other options go to torchvision's builder (for example image_size for the "
        "vision transformers)."
    )
    return recommended_binarization(DEFAULT_BCONFIG, FIRST_AND_LAST_FLOAT)(build)


def register_torchvision_models(register: Callable[..., Any]) -> None:
    """Register every torchvision classification model as ``torchvision/<name>`` with its
    default input shape as metadata."""
    for name, module in classification_models():
        register(
            f"{PREFIX}{name}",
            torchvision_builder(name, module),
            input_shape=INPUT_SHAPES.get(name, IMAGENET_SHAPE),
        )
