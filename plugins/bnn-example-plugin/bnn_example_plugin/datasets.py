"""Stripes: a generated two-class image set (horizontal vs vertical stripes), small
enough to train a binary network on a laptop CPU in seconds."""

from __future__ import annotations

import math
from typing import Literal

import torch
from bnn_core import ConfigError
from torch.utils.data import Dataset

CLASSES = ("horizontal", "vertical")
_SPLIT_STREAM = {"train": 0, "test": 1}


class StripesDataset(Dataset):
    """``length`` single-channel ``image_size`` x ``image_size`` images in about [-1, 1]:
    a +-1 stripe pattern of random period (2 to 6 pixels) and phase, plus Gaussian noise
    of standard deviation ``noise``. Label 0 is horizontal stripes, 1 vertical."""

    def __init__(
        self, length: int, image_size: int, noise: float, generator: torch.Generator
    ) -> None:
        self.targets = torch.randint(len(CLASSES), (length,), generator=generator)
        period = torch.randint(2, 7, (length, 1), generator=generator).double()
        phase = torch.rand((length, 1), generator=generator, dtype=torch.float64) * period
        position = torch.arange(image_size, dtype=torch.float64)
        wave = torch.cos(2 * math.pi * (position + phase) / period)
        profile = torch.where(wave >= 0, 1.0, -1.0)  # (length, image_size)
        rows = profile[:, :, None].expand(-1, -1, image_size)
        columns = profile[:, None, :].expand(-1, image_size, -1)
        vertical = self.targets.bool()[:, None, None]
        images = torch.where(vertical, columns, rows)
        images = images + noise * torch.randn(
            images.shape, generator=generator, dtype=torch.float64
        )
        self.images = images[:, None].float()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])


def stripes(
    split: Literal["train", "test"] = "train",
    length: int = 512,
    image_size: int = 16,
    noise: float = 0.3,
    seed: int = 0,
) -> StripesDataset:
    """Horizontal vs vertical stripes (2 classes, 1 x ``image_size`` x ``image_size``),
    generated from ``seed``; ``train`` and ``test`` are drawn from separate streams."""
    if length < 1 or image_size < 2 or noise < 0:
        raise ConfigError(
            "example_stripes: length must be >= 1, image_size >= 2 and noise >= 0, got "
            f"{length}, {image_size}, {noise}"
        )
    generator = torch.Generator().manual_seed(2 * seed + _SPLIT_STREAM[split])
    return StripesDataset(length, image_size, noise, generator)
