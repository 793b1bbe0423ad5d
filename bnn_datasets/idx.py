"""MNIST-format data sets: 28x28 grey images in IDX files (gzip-compressed or not).

``fashion_mnist`` without a ``root`` uses the stratified subset embedded in this package
(12,000 training and 2,000 test images, 1,200 and 200 per class, built by
``scripts/make_embedded_fashion_mnist.py``); with a ``root`` such as Debian's
``/usr/share/datasets/fashion-mnist`` it reads the full set. ``root`` may also be the
folder torchvision downloads into (``<root>/FashionMNIST/raw``, ``<root>/MNIST/raw``).
"""

from __future__ import annotations

import gzip
import logging
import struct
from pathlib import Path

import numpy as np
import torch

from bnn_core.errors import ConfigError
from bnn_datasets.base import InMemoryImages, Split
from bnn_datasets.roots import missing_data, resolve_root
from bnn_datasets.transforms import TransformSpecs, standard_transform

log = logging.getLogger(__name__)

EMBEDDED_FASHION_MNIST = Path(__file__).parent / "data" / "fashion_mnist"
PREFIXES = {"train": "train", "val": "t10k", "test": "t10k"}
#: Sub-folders where torchvision's downloads keep the same files.
TORCHVISION_FOLDERS = {"fashion_mnist": "FashionMNIST/raw", "mnist": "MNIST/raw"}
CLASSES = {
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    "mnist": [str(digit) for digit in range(10)],
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


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def load_idx_folder(
    name: str,
    root: Path,
    split: str,
    *,
    augment: bool = False,
    transforms: list[dict] | None = None,
    eval_transforms: list[dict] | None = None,
) -> InMemoryImages:
    """Load ``split`` of the MNIST-format data set ``name`` from ``root`` (or its
    torchvision sub-folder), with the standard transforms of ``name``."""
    prefix = PREFIXES[split]
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    for folder in (root, root / TORCHVISION_FOLDERS[name]):
        images, labels = (_find(folder, stem) for stem in stems)
        if images is not None and labels is not None:
            break
    else:
        raise missing_data(
            name,
            root,
            [f"{stems[0]}[.gz] and {stems[1]}[.gz] (or both in {TORCHVISION_FOLDERS[name]})"],
        )
    pixels = read_idx(images)
    if pixels.ndim != 3:
        raise ConfigError(f"{images}: expected images of shape [N, H, W], got {pixels.shape}")
    transform = standard_transform(
        name, split, augment=augment, transforms=transforms, eval_transforms=eval_transforms
    )
    return InMemoryImages(
        torch.from_numpy(pixels.copy()).unsqueeze(1),
        torch.from_numpy(read_idx(labels).astype(np.int64)),
        CLASSES[name],
        transform,
    )


def fashion_mnist(
    root: str | None = None,
    split: Split = "train",
    augment: bool = False,
    transforms: TransformSpecs | None = None,
    eval_transforms: TransformSpecs | None = None,
) -> InMemoryImages:
    """Fashion-MNIST (Xiao et al., 2017): 28x28 grey images of 10 clothing classes.

    Without ``root``, the embedded stratified subset (12,000 train / 2,000 test).
    ``augment`` adds RandomCrop(28, padding=2) and RandomHorizontalFlip to training."""
    options = {"augment": augment, "transforms": transforms, "eval_transforms": eval_transforms}
    if root is None:
        log.info("fashion_mnist: using the embedded subset in %s", EMBEDDED_FASHION_MNIST)
        return load_idx_folder("fashion_mnist", EMBEDDED_FASHION_MNIST, split, **options)
    return load_idx_folder("fashion_mnist", resolve_root("fashion_mnist", root), split, **options)


def mnist(
    root: str | None = None,
    split: Split = "train",
    augment: bool = False,
    transforms: TransformSpecs | None = None,
    eval_transforms: TransformSpecs | None = None,
) -> InMemoryImages:
    """MNIST (LeCun et al., 1998): 28x28 grey images of handwritten digits.

    ``root`` defaults to ``$BNN_DATA_ROOT/mnist``; ``augment`` adds
    RandomCrop(28, padding=2) to training."""
    return load_idx_folder(
        "mnist",
        resolve_root("mnist", root),
        split,
        augment=augment,
        transforms=transforms,
        eval_transforms=eval_transforms,
    )
