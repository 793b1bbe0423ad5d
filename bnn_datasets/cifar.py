"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009) in the official "python version" layout,
the one torchvision also uses::

    <root>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta
    <root>/cifar-100-python/train, test, meta

``root`` may be the folder holding ``cifar-10-batches-py`` or that folder itself. The
batches are pickles; they are read with an unpickler that only admits NumPy arrays, so
a tampered file cannot run code. (torchvision's CIFAR classes also check MD5 sums of the
official archive, which rules out re-packed or generated data.)
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from bnn_core.errors import ConfigError
from bnn_datasets.base import InMemoryImages, Split
from bnn_datasets.roots import missing_data, resolve_root
from bnn_datasets.transforms import TransformSpecs, standard_transform

FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
BATCHES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}
META_FILES = {"cifar10": "batches.meta", "cifar100": "meta"}
#: Globals a CIFAR pickle may reference (NumPy's array reconstruction, Python 2 strings).
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")


def read_batch(path: Path) -> dict[str, Any]:
    """One CIFAR pickle as a dict with ``str`` keys (``data``, ``labels``, ...)."""
    try:
        with open(path, "rb") as handle:
            content = _ArrayUnpickler(handle, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read CIFAR batch {path}: {exc}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path} is not a CIFAR batch (a pickled dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in content.items()}


def locate(name: str, root: Path) -> Path:
    """The folder holding the batches: ``root/<official folder>`` or ``root`` itself."""
    expected = BATCHES[name]["train"] + BATCHES[name]["test"]
    for folder in (root / FOLDERS[name], root):
        if all((folder / file).is_file() for file in expected):
            return folder
    files = ", ".join(expected)
    raise missing_data(name, root, [f"{FOLDERS[name]}/ holding {files} (or those files in {root})"])


def _class_names(name: str, folder: Path, key: str, count: int) -> list[str]:
    meta = folder / META_FILES[name]
    if meta.is_file():
        names = read_batch(meta).get(key)
        if isinstance(names, list) and len(names) == count:
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return [str(i) for i in range(count)]


def load_cifar(
    name: str,
    root: Path,
    split: str,
    *,
    label_key: str,
    num_classes: int,
    names_key: str,
    **transform_options: Any,
) -> InMemoryImages:
    """Load ``split`` of ``cifar10``/``cifar100`` from ``root``."""
    folder = locate(name, root)
    images, labels = [], []
    for file in BATCHES[name]["train" if split == "train" else "test"]:
        batch = read_batch(folder / file)
        if "data" not in batch or label_key not in batch:
            raise ConfigError(
                f"{folder / file} has no {label_key!r} or 'data' entry (keys: "
                f"{', '.join(map(str, batch))}); is it a {name} batch?"
            )
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ConfigError(
                f"{folder / file}: expected data of shape [N, 3072], got {data.shape}"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return InMemoryImages(
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(np.concatenate(labels)),
        _class_names(name, folder, names_key, num_classes),
        standard_transform(name, split, **transform_options),
    )


def cifar10(
    root: str | None = None,
    split: Split = "train",
    augment: bool = True,
    transforms: TransformSpecs | None = None,
    eval_transforms: TransformSpecs | None = None,
) -> InMemoryImages:
    """CIFAR-10: 32x32 colour images of 10 classes (50,000 train / 10,000 test).

    ``root`` defaults to ``$BNN_DATA_ROOT/cifar10``; ``augment`` (on by default) trains
    with RandomCrop(32, padding=4) and RandomHorizontalFlip."""
    return load_cifar(
        "cifar10",
        resolve_root("cifar10", root),
        split,
        label_key="labels",
        num_classes=10,
        names_key="label_names",
        augment=augment,
        transforms=transforms,
        eval_transforms=eval_transforms,
    )


def cifar100(
    root: str | None = None,
    split: Split = "train",
    labels: Literal["fine", "coarse"] = "fine",
    augment: bool = True,
    transforms: TransformSpecs | None = None,
    eval_transforms: TransformSpecs | None = None,
) -> InMemoryImages:
    """CIFAR-100: 32x32 colour images of 100 classes, or 20 super-classes with
    ``labels: coarse`` (50,000 train / 10,000 test).

    ``root`` defaults to ``$BNN_DATA_ROOT/cifar100``; ``augment`` as for CIFAR-10."""
    return load_cifar(
        "cifar100",
        resolve_root("cifar100", root),
        split,
        label_key=f"{labels}_labels",
        num_classes=100 if labels == "fine" else 20,
        names_key=f"{labels}_label_names",
        augment=augment,
        transforms=transforms,
        eval_transforms=eval_transforms,
    )
