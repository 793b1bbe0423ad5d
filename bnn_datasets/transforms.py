"""Image transforms: the standard train/eval pipelines of each data set, and overrides
written in a config.

Every sample goes through the same three steps: the image as stored (a PIL image or a
uint8 ``[C, H, W]`` tensor) passes a *stage* of ``torchvision.transforms.v2``
transforms (augmentation for training, resizing/cropping for evaluation), then becomes a
float tensor in ``[0, 1]`` and is normalised with the data set's statistics. Only the
stage is configurable, so an override never has to deal with dtypes and still returns
what the models expect.

A config names transforms by class name, looked up only among the public transform
classes of ``torchvision.transforms.v2`` (never imported from a dotted path)::

    transforms: [{name: RandomCrop, size: 32, padding: 4}, {name: RandomHorizontalFlip}]
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator
from torchvision import tv_tensors
from torchvision.transforms import v2

from bnn_core.errors import ConfigError

#: Transform classes a config may not name: the abstract base and the one taking code.
EXCLUDED = frozenset({"Transform", "Lambda"})

PresetName = Literal["none", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet"]


def _key(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


@functools.cache
def transform_classes() -> dict[str, type[v2.Transform]]:
    """The transform classes a config may name: public ``torchvision.transforms.v2``
    subclasses of ``Transform``, by class name."""
    classes = {}
    for name in dir(v2):
        value = getattr(v2, name)
        if (
            not name.startswith("_")
            and name not in EXCLUDED
            and isinstance(value, type)
            and issubclass(value, v2.Transform)
        ):
            classes[name] = value
    return classes


def transform_class(name: str) -> type[v2.Transform]:
    """The v2 class called ``name`` (any case, ``_`` and ``-`` ignored: ``random_crop``
    is ``RandomCrop``); an unknown name is an error listing close matches."""
    classes = transform_classes()
    by_key = {_key(n): cls for n, cls in classes.items()}
    if isinstance(name, str) and _key(name) in by_key:
        return by_key[_key(name)]
    close = difflib.get_close_matches(str(name), list(classes), n=3, cutoff=0.6)
    if close:
        hint = f"Did you mean {' or '.join(close)}?"
    else:
        names = ", ".join(sorted(classes))
        hint = f"Transforms are named by their class in torchvision.transforms.v2: {names}."
    raise ConfigError(f"unknown transform {name!r}. {hint}")


def build_transform(spec: Mapping[str, Any]) -> v2.Transform:
    """Instantiate ``{name: <v2 class>, <argument>: value, ...}``. A ``transforms``
    argument (of ``Compose``, ``RandomApply``, ``RandomChoice``, ``RandomOrder``) is a
    list of such mappings; an ``interpolation`` may be written as a string (``bicubic``)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(
            "a transform is written as {name: <class in torchvision.transforms.v2>, "
            f"<argument>: value, ...}}, got {spec!r}"
        )
    cls = transform_class(spec["name"])
    arguments = {key: value for key, value in spec.items() if key != "name"}
    if isinstance(arguments.get("transforms"), list):
        arguments["transforms"] = build_transforms(arguments["transforms"])
    if isinstance(arguments.get("interpolation"), str):
        arguments["interpolation"] = _interpolation(arguments["interpolation"])
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"transform {cls.__name__}: {exc}. Its arguments: {cls.__name__}"
            f"{inspect.signature(cls)}"
        ) from None


def build_transforms(specs: Sequence[Mapping[str, Any]]) -> list[v2.Transform]:
    """Instantiate a list of transform mappings (see :func:`build_transform`)."""
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise ConfigError(f"transforms must be a list of {{name: ...}} mappings, got {specs!r}")
    transforms = []
    for position, spec in enumerate(specs):
        try:
            transforms.append(build_transform(spec))
        except ConfigError as exc:
            raise ConfigError(f"item {position}: {exc}") from None
    return transforms


def _interpolation(value: str) -> v2.InterpolationMode:
    try:
        return v2.InterpolationMode(value.lower())
    except ValueError:
        modes = ", ".join(mode.value for mode in v2.InterpolationMode)
        raise ConfigError(f"unknown interpolation {value!r}; one of: {modes}") from None


def _check_specs(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        build_transforms(specs)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return specs


#: The annotation of a ``transforms`` option: checked when a config is validated, kept as
#: written so the config dumps back unchanged.
TransformSpecs = Annotated[list[dict[str, Any]], AfterValidator(_check_specs)]


class ImageTransform:
    """Stage transforms, then conversion to float in ``[0, 1]``, then normalisation.

    Takes a PIL image, a NumPy ``[H, W, C]`` array or a ``[C, H, W]`` tensor (uint8, or
    float already in ``[0, 1]``); returns a float32 ``[C, H, W]`` tensor.
    """

    def __init__(
        self,
        stage: Sequence[Callable[[Any], Any]] = (),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.stage = list(stage)
        self._compose = v2.Compose(self.stage) if self.stage else None
        self.mean = None if mean is None else torch.tensor(mean).view(-1, 1, 1)
        self.std = None if std is None else torch.tensor(std).view(-1, 1, 1)

    @property
    def deterministic(self) -> bool:
        """True when no stage transform runs, so a sample never depends on random state."""
        return not self.stage

    def __call__(self, image: Any) -> torch.Tensor:
        image = image if isinstance(image, torch.Tensor) else v2.functional.to_image(image)
        if self._compose is not None:
            image = self._compose(tv_tensors.Image(image))
        tensor = image.as_subclass(torch.Tensor)
        tensor = tensor.float() / 255 if tensor.dtype == torch.uint8 else tensor.float()
        if self.mean is None:
            return tensor
        if self.mean.shape[0] not in (1, tensor.shape[0]):
            raise ConfigError(
                f"an image with {tensor.shape[0]} channel(s) cannot be normalised with "
                f"{self.mean.shape[0]} channel means; set image_mode (L or RGB) or mean/std"
            )
        return (tensor - self.mean) / self.std

    def __repr__(self) -> str:
        steps = [repr(t) for t in self.stage] + ["to float in [0, 1]"]
        if self.mean is not None:
            mean = [round(v, 4) for v in self.mean.flatten().tolist()]
            std = [round(v, 4) for v in self.std.flatten().tolist()]
            steps.append(f"Normalize(mean={mean}, std={std})")
        return " -> ".join(steps)


@dataclass(frozen=True)
class Preset:
    """The standard pipeline of a data set: its statistics, image mode, and the stage
    used for training with augmentation and for evaluation (functions of the image size)."""

    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    image_mode: Literal["L", "RGB"]
    augment: Callable[[int], list[v2.Transform]]
    evaluate: Callable[[int], list[v2.Transform]]


def _nothing(size: int) -> list[v2.Transform]:
    return []


def _resized_crop(size: int) -> list[v2.Transform]:
    return [v2.Resize(round(size / 0.875)), v2.CenterCrop(size)]


# Per-channel statistics of each training set, on images scaled to [0, 1].
PRESETS: dict[str, Preset] = {
    "none": Preset(None, None, "RGB", _nothing, _nothing),
    "mnist": Preset(
        (0.1307,), (0.3081,), "L", lambda size: [v2.RandomCrop(28, padding=2)], _nothing
    ),
    "fashion_mnist": Preset(
        (0.2860,),
        (0.3530,),
        "L",
        lambda size: [v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip()],
        _nothing,
    ),
    "cifar10": Preset(
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        "RGB",
        lambda size: [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()],
        _nothing,
    ),
    "cifar100": Preset(
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        "RGB",
        lambda size: [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()],
        _nothing,
    ),
    "imagenet": Preset(
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        "RGB",
        lambda size: [v2.RandomResizedCrop(size), v2.RandomHorizontalFlip()],
        _resized_crop,
    ),
}


def standard_transform(
    preset: str,
    split: str,
    *,
    augment: bool,
    transforms: Sequence[Mapping[str, Any]] | None = None,
    eval_transforms: Sequence[Mapping[str, Any]] | None = None,
    image_size: int = 224,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ImageTransform:
    """The transform of ``split`` for a data set using ``preset``.

    The training split uses ``transforms`` when given, else the preset's augmentation
    when ``augment``, else the evaluation stage. Other splits use ``eval_transforms``
    when given, else the preset's evaluation stage. ``mean``/``std`` replace the preset's
    statistics.
    """
    standard = PRESETS[preset]
    if split == "train" and transforms is not None:
        stage = build_transforms(transforms)
    elif split == "train" and augment:
        stage = standard.augment(image_size)
    elif eval_transforms is not None:
        stage = build_transforms(eval_transforms)
    else:
        stage = standard.evaluate(image_size)
    if (mean is None) != (std is None):
        raise ConfigError("give both mean and std, or neither")
    if mean is not None and std is not None and len(mean) != len(std):
        raise ConfigError(f"mean has {len(mean)} values but std has {len(std)}")
    return ImageTransform(
        stage, mean if mean is not None else standard.mean, std if std is not None else standard.std
    )
