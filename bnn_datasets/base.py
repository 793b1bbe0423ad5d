"""The map-style data set of labelled images held in memory (MNIST-like and CIFAR)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from bnn_core.errors import ConfigError
from bnn_datasets.roots import Split as Split
from bnn_datasets.transforms import ImageTransform


class InMemoryImages(Dataset):
    """uint8 images ``[N, C, H, W]`` and integer labels, as ``(float tensor [C, H, W],
    int label)`` pairs after ``transform``.

    ``classes`` names the labels; ``encoded(index)`` gives the image as PNG bytes, which is
    how ``bnn data shard`` stores it.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        classes: Sequence[str],
        transform: ImageTransform,
    ) -> None:
        if len(images) != len(targets):
            raise ConfigError(f"{len(images)} images but {len(targets)} labels")
        if len(targets) and not 0 <= int(targets.min()) <= int(targets.max()) < len(classes):
            raise ConfigError(
                f"labels range from {int(targets.min())} to {int(targets.max())}, outside "
                f"[0, {len(classes)}) for {len(classes)} classes"
            )
        self.images = images
        self.targets = targets
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.transform = transform

    @property
    def deterministic(self) -> bool:
        """Whether a sample is the same whatever the random state (no augmentation)."""
        return self.transform.deterministic

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), int(self.targets[index])

    def encoded(self, index: int) -> tuple[str, bytes, int]:
        """``("png", PNG bytes, label)`` of sample ``index``, untransformed."""
        image = self.images[index]
        array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return "png", buffer.getvalue(), int(self.targets[index])
