"""MNIST-format data sets (IDX files, gzip-compressed or not) read from a folder.

``fashion_mnist`` without a ``root`` uses the stratified subset embedded in this package
(12,000 training and 2,000 test images, built by
``scripts/make_embedded_fashion_mnist.py``); with a ``root`` such as Debian's
``/usr/share/datasets/fashion-mnist`` it reads the full set.
"""

from __future__ import annotations

import gzip
import logging
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from bnn_core.errors import ConfigError

log = logging.getLogger(__name__)

EMBEDDED_FASHION_MNIST = Path(__file__).parent / "data" / "fashion_mnist"
PREFIXES = {"train": "train", "test": "t10k"}
# Per-pixel mean and standard deviation of the full training sets (images scaled to [0, 1]).
NORMALIZATION = {"fashion_mnist": (0.2860, 0.3530), "mnist": (0.1307, 0.3081)}
SOURCES = {
    "fashion_mnist": "install Debian's package (apt-get install dataset-fashion-mnist; files "
    "land in /usr/share/datasets/fashion-mnist) or leave root empty to use the embedded subset",
    "mnist": "download the four IDX files from the MNIST page (train-images-idx3-ubyte.gz, ...) "
    "into that folder",
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes (``.gz`` or plain) into a NumPy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
        zero, zero2, dtype_code, ndim = struct.unpack(">BBBB", data[:4])
        if (zero, zero2, dtype_code) != (0, 0, 0x08):
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, ValueError, struct.error) as exc:
        raise ConfigError(f"cannot read IDX file {path}: {exc}") from None


def _find(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    return None


class IdxDataset(Dataset):
    """Images and labels from a pair of IDX files, normalised to zero mean and unit
    variance, as ``(float tensor [1, H, W], int label)`` pairs."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> None:
        if len(images) != len(labels):
            raise ConfigError(f"{len(images)} images but {len(labels)} labels")
        self.images = torch.from_numpy(images.copy())
        self.targets = torch.from_numpy(labels.astype(np.int64))
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index].unsqueeze(0).float().div_(255).sub_(self.mean).div_(self.std)
        return image, int(self.targets[index])


def load_idx_folder(name: str, root: Path, split: str) -> IdxDataset:
    """Load ``split`` of an MNIST-format data set from ``root`` with a clear error."""
    prefix = PREFIXES[split]
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    found = [_find(root, stem) for stem in stems]
    if not root.is_dir() or None in found:
        raise ConfigError(
            f"{name}: no {split} split in {root} (expected {stems[0]}[.gz] and "
            f"{stems[1]}[.gz]{'' if root.is_dir() else '; the folder does not exist'}). "
            f"To get them: {SOURCES[name]}."
        )
    mean, std = NORMALIZATION[name]
    return IdxDataset(read_idx(found[0]), read_idx(found[1]), mean, std)


def fashion_mnist(root: str | None = None, split: Literal["train", "test"] = "train") -> IdxDataset:
    """Fashion-MNIST (Xiao et al., 2017): 28x28 grey images of 10 clothing classes.

    Without ``root``, the embedded stratified subset (12,000 train / 2,000 test)."""
    if root is None:
        log.info("fashion_mnist: using the embedded subset in %s", EMBEDDED_FASHION_MNIST)
        return load_idx_folder("fashion_mnist", EMBEDDED_FASHION_MNIST, split)
    return load_idx_folder("fashion_mnist", Path(root).expanduser(), split)


def mnist(root: str, split: Literal["train", "test"] = "train") -> IdxDataset:
    """MNIST (LeCun et al., 1998): 28x28 grey images of handwritten digits, read from ``root``."""
    return load_idx_folder("mnist", Path(root).expanduser(), split)
