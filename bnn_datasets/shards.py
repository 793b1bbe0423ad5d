"""Webdataset tar shards: which shards each process reads, and the data set that reads them.

Each sample of a shard is a group of files with the same key: an image (``jpg``,
``png``, ... decoded with PIL) or a tensor (``pth`` loaded with ``weights_only=True``,
or ``npy``; ``[C, H, W]``), and its integer label in ``cls``.

**Every sample exactly once per epoch.** The shard list is first put in an order that
depends only on ``seed`` and the epoch (the same in every process), then split across
distributed ranks (``order[rank::world_size]``) and, within a rank, across DataLoader
workers (``rank_shards[worker::num_workers]``). Every shard is thus read by exactly one
worker of one rank. Within a worker, samples pass a shuffle buffer seeded by seed, epoch,
rank and worker. Call ``set_epoch(epoch)`` before each epoch (as with
``DistributedSampler``) to get a new order; with ``persistent_workers=True`` the workers
keep the epoch they started with, so leave that off.

Ranks read whole shards, so they see different numbers of samples when shard sizes differ
or the number of shards is not a multiple of the world size: write equal-sized shards
(``bnn data shard --maxcount``) in a multiple of ``world_size x num_workers``.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from bnn_core.errors import ConfigError
from bnn_core.shard_format import INDEX_FILE, read_index
from bnn_datasets.transforms import ImageTransform

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "pgm", "pbm", "bmp", "tif", "tiff")
TENSOR_EXTENSIONS = ("pth", "npy")


def distributed_placement(
    rank: int | None = None, world_size: int | None = None
) -> tuple[int, int, int, int]:
    """``(rank, world_size, worker, num_workers)`` of the calling process: the given rank
    and world size, else torch.distributed's when initialised, else a single process;
    worker id and count from the DataLoader's worker info."""
    if rank is None or world_size is None:
        rank, world_size = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    info = get_worker_info()
    worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank, world_size, worker, num_workers


class ShardSelection(IterableDataset):
    """The first stage of the pipeline: yields ``{"url": shard}`` for the shards this
    worker of this rank reads in the current epoch (see the module docstring)."""

    def __init__(
        self,
        shards: Sequence[str],
        *,
        shuffle: bool,
        seed: int = 0,
        epoch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if (rank is None) != (world_size is None):
            raise ConfigError("give both rank and world_size, or neither")
        if world_size is not None and not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside [0, world_size={world_size})")
        self.shards = list(shards)
        if world_size is not None:
            self.check_world_size(world_size)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.rank = rank
        self.world_size = world_size

    def placement(self) -> tuple[int, int, int, int]:
        """``(rank, world_size, worker, num_workers)`` of the calling process."""
        return distributed_placement(self.rank, self.world_size)

    def order(self, epoch: int) -> list[str]:
        """All shards in the order of ``epoch``: identical in every process."""
        shards = list(self.shards)
        if self.shuffle:
            random.Random(f"shards/{self.seed}/{epoch}").shuffle(shards)
        return shards

    def for_rank(self, epoch: int, rank: int, world_size: int) -> list[str]:
        """The shards rank ``rank`` of ``world_size`` reads in ``epoch``."""
        self.check_world_size(world_size)
        return self.order(epoch)[rank::world_size]

    def check_world_size(self, world_size: int) -> None:
        """Every rank needs at least one shard, or the ranks' epochs differ in length."""
        if len(self.shards) < world_size:
            raise ConfigError(
                f"{len(self.shards)} shard(s) cannot be split across {world_size} ranks: every "
                "rank needs at least one; write more, smaller shards (bnn data shard --maxcount)"
            )

    def selected(self) -> list[str]:
        """The shards of the calling worker of the calling rank in the current epoch."""
        rank, world_size, worker, num_workers = self.placement()
        return self.for_rank(self.epoch, rank, world_size)[worker::num_workers]

    def __iter__(self):
        for shard in self.selected():
            yield {"url": shard}


def _open_image(data: bytes, mode: str) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert(mode)


def _load_tensor(data: bytes) -> torch.Tensor:
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


class ShardedImages(IterableDataset):
    """Labelled images read from webdataset shards, as ``(float tensor [C, H, W], int
    label)`` pairs after ``transform``. ``len()`` is the number of samples this rank reads
    in the current epoch, when the shard sizes or the total ``length`` are known."""

    def __init__(
        self,
        selection: ShardSelection,
        transform: ImageTransform,
        *,
        image_mode: str = "RGB",
        num_classes: int | None = None,
        shuffle_buffer: int = 1000,
        sizes: dict[str, int] | None = None,
        length: int | None = None,
    ) -> None:
        self.selection = selection
        self.transform = transform
        self.image_mode = image_mode
        self.num_classes = num_classes
        self.shuffle_buffer = shuffle_buffer
        self.sizes = sizes
        self.length = length

    @property
    def epoch(self) -> int:
        """The epoch that sets the shard order and the shuffle seeds."""
        return self.selection.epoch

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` on the next iteration (call before each epoch)."""
        self.selection.epoch = epoch

    @property
    def total_length(self) -> int | None:
        """The number of samples in all shards together, when known."""
        if self.length is not None:
            return self.length
        return sum(self.sizes.values()) if self.sizes is not None else None

    def __len__(self) -> int:
        rank, world_size, _, _ = self.selection.placement()
        if self.length is None and self.sizes is not None:
            shards = self.selection.for_rank(self.epoch, rank, world_size)
            return sum(self.sizes[shard] for shard in shards)
        if self.length is not None:
            return math.ceil(self.length / world_size)
        raise TypeError(
            "the number of samples in these shards is unknown: give the option length, or "
            f"write the shards with `bnn data shard`, which records their sizes in {INDEX_FILE}"
        )

    def __iter__(self):
        rank, _, worker, _ = self.selection.placement()
        stages: list[Any] = [self.selection, wds.tarfile_to_samples()]
        if self.selection.shuffle and self.shuffle_buffer > 1:
            rng = random.Random(f"samples/{self.selection.seed}/{self.epoch}/{rank}/{worker}")
            stages.append(wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng))
        stages += [
            wds.decode(
                wds.handle_extension(
                    " ".join(IMAGE_EXTENSIONS), partial(_open_image, mode=self.image_mode)
                ),
                wds.handle_extension("pth", _load_tensor),
                only=[*IMAGE_EXTENSIONS, *TENSOR_EXTENSIONS, "cls"],
            ),
            wds.to_tuple("__key__", ";".join(IMAGE_EXTENSIONS + TENSOR_EXTENSIONS), "cls"),
            wds.map(self._finish),
        ]
        return iter(wds.DataPipeline(*stages))

    def _finish(self, sample: tuple[str, Any, Any]) -> tuple[torch.Tensor, int]:
        key, image, label = sample
        label = int(label)
        if self.num_classes is not None and not 0 <= label < self.num_classes:
            raise ConfigError(f"sample {key!r}: label {label} is outside [0, {self.num_classes})")
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(image)
        if isinstance(image, torch.Tensor) and image.ndim == 2:
            image = image.unsqueeze(0)
        return self.transform(image), label


def read_sizes(shards: Sequence[str]) -> dict[str, int] | None:
    """Samples per shard from the ``shards.json`` index next to them (see
    :mod:`bnn_core.shard_format`), or None when any shard is missing from its folder's
    index or changed size since it was recorded."""
    sizes: dict[str, int] = {}
    indexes: dict[Path, dict[str, Any]] = {}
    for shard in shards:
        path = Path(shard)
        folder = path.parent
        if folder not in indexes:
            indexes[folder] = read_index(folder)
        entry = indexes[folder].get(path.name)
        if entry is None or entry.get("bytes") != path.stat().st_size:
            return None
        sizes[shard] = int(entry["samples"])
    return sizes
