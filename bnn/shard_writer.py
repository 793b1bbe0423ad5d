"""Writing webdataset shards from a folder of images or any registered data set
(``bnn data shard``), and recording their sizes so readers know their length.

Samples that a data set can give untransformed (``encoded(index)``: ImageFolder files
byte for byte, MNIST and CIFAR images as PNG) are stored that way; any other data set's
samples are stored as the tensors it returns (``pth``). Labels go in ``cls``. Samples are
shuffled before writing (by default) so that each shard mixes all classes, which the
shard-level shuffling of the reader relies on. Data sets are reached through the
registry; the file layout is :mod:`bnn_core.shard_format`, shared with the readers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import webdataset as wds
from torch.utils.data import IterableDataset

from bnn_core.errors import ConfigError, UnknownNameError
from bnn_core.params import params_model
from bnn_core.paths import expand_path
from bnn_core.registries import create_dataset, get_dataset, is_dataset, list_datasets
from bnn_core.shard_format import check_pattern, record_sizes


def open_source(
    source: str, split: str = "train", root: str | None = None, options: Mapping[str, Any] = ()
) -> tuple[Any, str]:
    """The data set to shard and its registry name: ``source`` is a registered data set
    name (built with ``split``, ``root`` and ``options``, validated like a config) or else
    a folder of class folders, read as ``imagefolder``."""
    options = dict(options)
    if not is_dataset(source):
        folder = expand_path(source)
        if not folder.is_dir():
            raise UnknownNameError(
                "dataset", source, list_datasets(), hint="It is not an existing folder either."
            )
        if root is not None:
            raise ConfigError(f"{source} is a folder; --root applies to a registered data set")
        dataset = create_dataset("imagefolder", root=str(folder), split=split, **options)
        return dataset, "imagefolder"
    if root is not None:
        options["root"] = root
    if "split" in params_model(get_dataset(source)).model_fields:
        options["split"] = split
    return create_dataset(source, **options), source


def _samples(dataset: Any, shuffle: bool, seed: int) -> Iterator[dict[str, Any]]:
    if isinstance(dataset, IterableDataset):
        for index, (image, label) in enumerate(dataset):
            yield {"__key__": f"{index:08d}", "pth": _tensor(image), "cls": int(label)}
        return
    order = list(range(len(dataset)))
    if shuffle:
        random.Random(seed).shuffle(order)
    encoded = getattr(dataset, "encoded", None)
    for index in order:
        if callable(encoded):
            extension, payload, label = encoded(index)
            yield {"__key__": f"{index:08d}", extension: payload, "cls": int(label)}
        else:
            image, label = dataset[index]
            yield {"__key__": f"{index:08d}", "pth": _tensor(image), "cls": int(label)}


def _tensor(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ConfigError(f"a sample's input must be a tensor to be stored, got {type(value)}")
    return value.detach().cpu().contiguous()


def write_shards(
    dataset: Any,
    pattern: str,
    *,
    maxcount: int = 10000,
    shuffle: bool = True,
    seed: int = 0,
    on_shard: Callable[[Path, int], None] | None = None,
) -> list[tuple[Path, int]]:
    """Write ``dataset``'s ``(input, label)`` samples to shards named ``pattern % i`` with at
    most ``maxcount`` samples each; returns ``(path, samples)`` per shard and records
    them in the folder's ``shards.json``. ``on_shard`` is called as each shard is done."""
    check_pattern(pattern)
    if maxcount < 1:
        raise ConfigError(f"maxcount must be at least 1, got {maxcount}")
    Path(pattern % 0).parent.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, int]] = []
    writer: wds.ShardWriter | None = None

    def finished(name: str) -> None:
        written.append((Path(name), writer.count))
        if on_shard is not None:
            on_shard(Path(name), writer.count)

    try:
        writer = wds.ShardWriter(pattern, maxcount=maxcount, verbose=0, post=finished)
    except OSError as exc:
        raise ConfigError(f"cannot write {pattern % 0}: {exc}") from None
    with writer:
        for sample in _samples(dataset, shuffle, seed):
            writer.write(sample)
    record_sizes(written)
    return written
