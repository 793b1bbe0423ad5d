"""Random tensors of a given shape, for smoke runs that need no data on disk."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from bnn_datasets.roots import Split

#: Each split draws from its own stream, so test samples are not training samples.
SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}


class SyntheticDataset(Dataset):
    """``length`` samples of Gaussian noise with uniformly random labels, reproducible by
    ``seed`` (the same index always gives the same sample). With ``prototypes`` (one
    tensor per class, shared by every split) a sample is its class's prototype plus the
    noise, so the labels can be learned."""

    def __init__(
        self,
        shape: tuple[int, ...],
        num_classes: int,
        length: int,
        seed: int,
        prototypes: torch.Tensor | None = None,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn((length, *shape), generator=generator)
        self.targets = torch.randint(num_classes, (length,), generator=generator)
        if prototypes is not None:
            self.inputs += prototypes[self.targets]
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inputs[index], int(self.targets[index])


def synthetic(
    shape: tuple[int, ...] = (1, 28, 28),
    num_classes: int = 10,
    length: int = 256,
    seed: int = 0,
    split: Split = "train",
    learnable: bool = False,
) -> SyntheticDataset:
    """Random inputs of ``shape`` and random labels in ``[0, num_classes)``; with
    ``learnable``, each class adds its own fixed pattern to the noise (a toy task a
    network can learn, for smoke runs of training)."""
    prototypes = None
    if learnable:
        generator = torch.Generator().manual_seed(seed)
        prototypes = torch.randn((num_classes, *shape), generator=generator)
    offset = seed * 3 + SPLIT_OFFSETS[split]
    return SyntheticDataset(tuple(shape), num_classes, length, offset, prototypes)
