"""Image files in class folders (torchvision's ImageFolder layout), ImageNet included.

Two layouts are accepted::

    <root>/<split>/<class>/<image>      split folders: train, val (or validation), test
    <root>/<class>/<image>              no split folders: the whole tree is every split

With split folders, ``split: test`` reads ``test/`` and falls back to ``val/`` (ImageNet
has no public test labels), ``split: val`` reads ``val/`` and falls back to ``test/``.
Class indices follow the sorted class-folder names of all split folders together, so a
class missing from one split does not shift the labels of the others. Without split
folders every split reads the same images (a warning says so): use that layout to
evaluate on a folder, or to train on all of it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import PositiveInt
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from bnn_core.errors import ConfigError
from bnn_datasets.base import Split
from bnn_datasets.roots import missing_data, resolve_root
from bnn_datasets.transforms import (
    PRESETS,
    ImageTransform,
    PresetName,
    TransformSpecs,
    standard_transform,
)

log = logging.getLogger(__name__)

SPLIT_FOLDERS = {
    "train": ("train",),
    "val": ("val", "validation", "test"),
    "test": ("test", "val", "validation"),
}
ALL_SPLIT_FOLDERS = ("train", "val", "validation", "test")


class ImageLoader:
    """Open an image file with PIL and convert it to ``mode`` (``L`` or ``RGB``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, path: str) -> Image.Image:
        with open(path, "rb") as handle:
            return Image.open(handle).convert(self.mode)


class ClassFolders(ImageFolder):
    """torchvision's ImageFolder with class indices given in advance (shared by every
    split, some of which may lack a class) and ``encoded(index)`` giving the image file's
    bytes for ``bnn data shard``."""

    def __init__(
        self, folder: Path, classes: list[str], transform: ImageTransform, image_mode: str
    ) -> None:
        self._all_classes = classes
        try:
            super().__init__(str(folder), transform=transform, loader=ImageLoader(image_mode))
        except FileNotFoundError as exc:
            raise ConfigError(f"imagefolder: {folder}: {exc}") from None
        self.classes = list(classes)
        self.class_to_idx = {name: i for i, name in enumerate(classes)}
        self.num_classes = len(classes)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        present = _class_dirs(Path(directory))
        indices = {name: i for i, name in enumerate(self._all_classes) if name in present}
        return list(indices), indices

    def encoded(self, index: int) -> tuple[str, bytes, int]:
        """``(extension, file bytes, label)`` of sample ``index``, as stored on disk."""
        path, label = self.samples[index]
        return Path(path).suffix.lower().lstrip("."), Path(path).read_bytes(), label


def _class_dirs(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}


def split_folder(root: Path, split: str) -> tuple[Path, list[str]]:
    """The folder holding ``split`` and the class names shared by all splits."""
    if not root.is_dir():
        raise missing_data("imagefolder", root, ["<split>/<class>/<image> or <class>/<image>"])
    present = [name for name in ALL_SPLIT_FOLDERS if (root / name).is_dir()]
    if not present:
        log.warning(
            "imagefolder: %s has no split folders (%s); using the whole tree for split %r",
            root,
            ", ".join(ALL_SPLIT_FOLDERS),
            split,
        )
        folder, class_sources = root, [root]
    else:
        candidates = [name for name in SPLIT_FOLDERS[split] if name in present]
        if not candidates:
            raise ConfigError(
                f"imagefolder: {root} has the split folders {', '.join(present)} but none for "
                f"split {split!r} (looked for {', '.join(SPLIT_FOLDERS[split])})"
            )
        folder, class_sources = root / candidates[0], [root / name for name in present]
    classes = sorted(set().union(*(_class_dirs(source) for source in class_sources)))
    if not classes:
        raise missing_data(
            "imagefolder",
            folder,
            ["one sub-folder per class holding its images"],
            "it has no class folders (ImageNet's validation images must be sorted into "
            "class folders first)",
        )
    return folder, classes


def imagefolder(
    root: str | None = None,
    split: Split = "train",
    preset: PresetName = "imagenet",
    image_size: PositiveInt = 224,
    image_mode: Literal["L", "RGB"] | None = None,
    augment: bool = True,
    transforms: TransformSpecs | None = None,
    eval_transforms: TransformSpecs | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> ClassFolders:
    """Images in class folders (``<root>/<split>/<class>/...``), ImageNet included.

    Transforms and statistics come from ``preset`` (ImageNet's by default: training with
    RandomResizedCrop(image_size) and a flip, evaluation with a resize and
    CenterCrop(image_size)); ``root`` defaults to ``$BNN_DATA_ROOT/imagefolder``."""
    folder, classes = split_folder(resolve_root("imagefolder", root), split)
    transform = standard_transform(
        preset,
        split,
        augment=augment,
        transforms=transforms,
        eval_transforms=eval_transforms,
        image_size=image_size,
        mean=mean,
        std=std,
    )
    dataset = ClassFolders(folder, classes, transform, image_mode or PRESETS[preset].image_mode)
    if not dataset.samples:
        extensions = ", ".join(IMG_EXTENSIONS)
        raise missing_data(
            "imagefolder", folder, [f"images ({extensions}) in its class folders"], "no images"
        )
    return dataset
