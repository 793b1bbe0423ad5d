"""The ``webdataset`` and ``imagenet_wds`` data sets: where their shards are, and their
options (how shards are read and split across processes is in :mod:`bnn_datasets.shards`).

``shards`` is a brace pattern (``shards/train-{000000..000009}.tar``) or a list of them;
``{split}`` in it becomes the split (``shards/{split}-{000000..000009}.tar``). Relative
paths are relative to ``root`` when given, else to the current directory. Without
``shards``, every ``<root>/<split>-*.tar`` is read, ``root`` defaulting to
``$BNN_DATA_ROOT/<dataset name>`` (``split: test`` falls back to ``val-*.tar`` and
``split: val`` to ``test-*.tar``). Only local files are read: a ``pipe:`` or ``http:``
URL in a config would run a command or reach the network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import NonNegativeInt, PositiveInt
from webdataset.shardlists import expand_urls

from bnn_core.errors import ConfigError
from bnn_core.paths import expand_path
from bnn_datasets.base import Split
from bnn_datasets.folder import SPLIT_FOLDERS
from bnn_datasets.roots import SOURCES, missing_data, resolve_root
from bnn_datasets.shards import ShardedImages, ShardSelection, read_sizes
from bnn_datasets.transforms import PRESETS, PresetName, TransformSpecs, standard_transform

_URL = re.compile(r"^[a-zA-Z][\w+.-]+:")


def shard_paths(
    name: str, shards: str | list[str] | None, root: str | None, split: str
) -> list[str]:
    """The local shard files of ``split``, each checked to exist."""
    if shards is None:
        folder = resolve_root(name, root)
        for prefix in SPLIT_FOLDERS[split]:
            found = sorted(folder.glob(f"{prefix}-*.tar"))
            if found:
                return [str(path) for path in found]
        raise missing_data(name, folder, [f"{split}-*.tar shards (or give the option shards)"])
    base = expand_path(root) if root is not None else None
    paths = []
    for pattern in [shards] if isinstance(shards, str) else shards:
        if _URL.match(pattern):
            raise ConfigError(
                f"{name}: shard {pattern!r} is a URL; only local files are read (copy or mount "
                "the shards and give their paths)"
            )
        for shard in expand_urls(str(expand_path(pattern.replace("{split}", split)))):
            path = Path(shard)
            paths.append(str(base / path if base is not None and not path.is_absolute() else path))
    missing = [path for path in paths if not Path(path).is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise ConfigError(
            f"{name}: {len(missing)} of {len(paths)} shard(s) do not exist: {shown}. To get "
            f"them: {SOURCES[name]}."
        )
    if not paths:
        raise ConfigError(f"{name}: the shards option names no file")
    return paths


def webdataset(
    shards: str | list[str] | None = None,
    root: str | None = None,
    split: Split = "train",
    preset: PresetName = "none",
    image_size: PositiveInt = 224,
    image_mode: Literal["L", "RGB"] | None = None,
    num_classes: PositiveInt | None = None,
    augment: bool = False,
    transforms: TransformSpecs | None = None,
    eval_transforms: TransformSpecs | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    shuffle: bool | None = None,
    shuffle_buffer: NonNegativeInt = 1000,
    seed: int = 0,
    epoch: NonNegativeInt = 0,
    length: PositiveInt | None = None,
    rank: NonNegativeInt | None = None,
    world_size: PositiveInt | None = None,
) -> ShardedImages:
    """Labelled images or tensors in webdataset tar shards, each read once per epoch
    across ranks and DataLoader workers.

    Transforms and statistics come from ``preset`` (none by default: no resizing, values
    scaled to [0, 1]); ``shuffle`` defaults to on for training; ``rank``/``world_size``
    default to torch.distributed's."""
    paths = shard_paths("webdataset", shards, root, split)
    return _sharded(
        paths,
        split,
        preset=preset,
        image_size=image_size,
        image_mode=image_mode,
        num_classes=num_classes,
        augment=augment,
        transforms=transforms,
        eval_transforms=eval_transforms,
        mean=mean,
        std=std,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        epoch=epoch,
        length=length,
        rank=rank,
        world_size=world_size,
    )


def imagenet_wds(
    shards: str | list[str] | None = None,
    root: str | None = None,
    split: Split = "train",
    image_size: PositiveInt = 224,
    augment: bool = True,
    transforms: TransformSpecs | None = None,
    eval_transforms: TransformSpecs | None = None,
    shuffle: bool | None = None,
    shuffle_buffer: NonNegativeInt = 1000,
    seed: int = 0,
    epoch: NonNegativeInt = 0,
    length: PositiveInt | None = None,
    rank: NonNegativeInt | None = None,
    world_size: PositiveInt | None = None,
) -> ShardedImages:
    """ImageNet (ILSVRC2012, 1000 classes) in webdataset shards, with ImageNet's
    standard transforms.

    Training uses RandomResizedCrop(image_size) and a flip, evaluation a resize and
    CenterCrop(image_size); ``root`` defaults to ``$BNN_DATA_ROOT/imagenet_wds``."""
    paths = shard_paths("imagenet_wds", shards, root, split)
    return _sharded(
        paths,
        split,
        preset="imagenet",
        image_size=image_size,
        image_mode="RGB",
        num_classes=1000,
        augment=augment,
        transforms=transforms,
        eval_transforms=eval_transforms,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        epoch=epoch,
        length=length,
        rank=rank,
        world_size=world_size,
    )


def _sharded(
    paths: list[str],
    split: str,
    *,
    preset: str,
    image_size: int,
    image_mode: str | None,
    num_classes: int | None,
    augment: bool,
    transforms: list[dict] | None,
    eval_transforms: list[dict] | None,
    shuffle: bool | None,
    shuffle_buffer: int,
    seed: int,
    epoch: int,
    length: int | None,
    rank: int | None,
    world_size: int | None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> ShardedImages:
    selection = ShardSelection(
        paths,
        shuffle=split == "train" if shuffle is None else shuffle,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
    )
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
    return ShardedImages(
        selection,
        transform,
        image_mode=image_mode or PRESETS[preset].image_mode,
        num_classes=num_classes,
        shuffle_buffer=shuffle_buffer,
        sizes=None if length is not None else read_sizes(paths),
        length=length,
    )
