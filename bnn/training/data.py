"""Reproducible batches: the order of an epoch and every random augmentation are pure
functions of (seed, epoch, sample index), so a run resumed in the middle of an epoch sees
exactly the batches the uninterrupted run would have seen, on any number of workers and
ranks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info


def _mix(*values: int) -> int:
    """A 63-bit seed derived from several integers (splitmix64 of their combination)."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 31
    return state & 0x7FFFFFFFFFFFFFFF


class EpochSampler(Sampler[int]):
    """Indices of one epoch for one rank: with ``shuffle`` (training) a permutation seeded
    by (seed, epoch), padded to a multiple of ``world_size`` and strided by ``rank`` (as
    DistributedSampler does); without (evaluation) every index exactly once. Iteration
    starts after the first ``skip`` indices of this rank (to resume mid-epoch)."""

    def __init__(
        self,
        length: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.length, self.seed, self.shuffle = length, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch to iterate and how many of this rank's indices to skip."""
        self.epoch, self.skip = epoch, skip

    def per_rank(self) -> int:
        """How many indices each rank gets per epoch."""
        return math.ceil(self.length / self.world_size)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        if self.shuffle:  # training: every rank takes the same number of batches
            total = self.per_rank() * self.world_size
            order += order[: total - len(order)]
        return iter(order[self.rank :: self.world_size][self.skip :])

    def __len__(self) -> int:
        mine = (
            self.per_rank() if self.shuffle else len(range(self.rank, self.length, self.world_size))
        )
        return mine - self.skip


class SeededDataset(Dataset):
    """Wraps a map-style dataset so that sample ``i`` of epoch ``e`` is drawn with the torch
    random state seeded by (seed, e, i): augmentation no longer depends on which worker
    loads it or on what was loaded before. Datasets that declare ``deterministic`` (no
    random transform) are passed through."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations are drawn."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        if getattr(self.dataset, "deterministic", False):
            return self.dataset[index]
        generator = torch.default_generator
        in_main_process = get_worker_info() is None
        saved = generator.get_state() if in_main_process else None
        generator.manual_seed(_mix(self.seed, self.epoch, index))
        try:
            return self.dataset[index]
        finally:
            if saved is not None:  # the main process's own random stream goes on untouched
                generator.set_state(saved)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    seed: int,
    train: bool,
    workers: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader whose epochs are reproducible (see :class:`EpochSampler`); iterable
    datasets (webdataset shards) split themselves across ranks and workers."""
    # The loader's own generator draws worker seeds, so creating an iterator (at an epoch
    # start, or after a resume) leaves the global random state untouched.
    generator = torch.Generator().manual_seed(seed)
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=batch_size, num_workers=workers, generator=generator)
    sampler = EpochSampler(len(dataset), seed, shuffle=train, rank=rank, world_size=world_size)
    return DataLoader(
        SeededDataset(dataset, seed) if train else dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
    )


def start_epoch(loader: DataLoader, epoch: int, skip_batches: int = 0) -> None:
    """Point ``loader`` at ``epoch``, skipping the batches a resumed run already did."""
    sampler = loader.sampler
    if isinstance(sampler, EpochSampler):
        sampler.set_epoch(epoch, skip_batches * (loader.batch_size or 1))
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
