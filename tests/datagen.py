"""Writers of small generated data sets in each on-disk format the datasets read: IDX
files, CIFAR pickle batches, ImageFolder trees and webdataset tar shards."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image


def pixels(count: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """``count`` random uint8 images of ``shape``."""
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


def balanced_labels(count: int, num_classes: int) -> np.ndarray:
    """``0, 1, ..., num_classes - 1, 0, 1, ...`` (every class present when count allows)."""
    return np.arange(count, dtype=np.uint8) % num_classes


def write_idx_file(path: Path, array: np.ndarray) -> None:
    """One IDX file of unsigned bytes; gzip-compressed when ``path`` ends in ``.gz``."""
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    data += struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_idx(root: Path, train: int = 30, test: int = 20, compress: bool = True) -> Path:
    """An MNIST-format folder: train/t10k images (28x28) and labels (10 classes)."""
    suffix = ".gz" if compress else ""
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx_file(root / f"{prefix}-images-idx3-ubyte{suffix}", pixels(count, (28, 28)))
        write_idx_file(root / f"{prefix}-labels-idx1-ubyte{suffix}", balanced_labels(count, 10))
    return root


def _pickle(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)  # the official batches are Python 2 pickles


def write_cifar10(root: Path, per_batch: int = 6, test: int = 10) -> Path:
    """``root/cifar-10-batches-py`` with five training batches, a test batch and the meta."""
    folder = root / "cifar-10-batches-py"
    for i in range(1, 6):
        data = pixels(per_batch, (3 * 32 * 32,), seed=i)
        labels = balanced_labels(per_batch, 10).tolist()
        _pickle(
            folder / f"data_batch_{i}",
            {"batch_label": f"batch {i}", "data": data, "labels": labels},
        )
    data = pixels(test, (3 * 32 * 32,), seed=9)
    _pickle(folder / "test_batch", {"data": data, "labels": balanced_labels(test, 10).tolist()})
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    _pickle(folder / "batches.meta", {"label_names": names, "num_vis": 3072})
    return root


def write_cifar100(root: Path, train: int = 40, test: int = 20) -> Path:
    """``root/cifar-100-python`` with train, test (fine and coarse labels) and meta."""
    folder = root / "cifar-100-python"
    for name, count in (("train", train), ("test", test)):
        fine = (np.arange(count) * 7 % 100).tolist()
        _pickle(
            folder / name,
            {
                "data": pixels(count, (3 * 32 * 32,), seed=count),
                "fine_labels": fine,
                "coarse_labels": [label // 5 for label in fine],
            },
        )
    _pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine{i}" for i in range(100)],
            "coarse_label_names": [f"coarse{i}" for i in range(20)],
        },
    )
    return root


def write_image_folder(
    root: Path,
    counts: dict[str, int],
    classes: Sequence[str] = ("cat", "dog", "fox"),
    size: int = 12,
    extension: str = "png",
) -> Path:
    """An ImageFolder tree: ``root/<split>/<class>/<n>.<extension>`` with ``counts[split]``
    RGB images per class; the split ``""`` writes ``root/<class>/...`` (no split folder)."""
    for s, (split, per_class) in enumerate(counts.items()):
        for c, name in enumerate(classes):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(pixels(per_class, (size, size, 3), seed=s * 100 + c)):
                Image.fromarray(image).save(folder / f"{i}.{extension}")
    return root


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of a uint8 ``[H, W]`` or ``[H, W, 3]`` array."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_tar_shards(
    folder: Path,
    sizes: Sequence[int],
    prefix: str = "train",
    payload: str = "png",
    size: int = 8,
    num_classes: int | None = None,
) -> list[Path]:
    """Shards ``folder/<prefix>-00000i.tar`` holding ``sizes[i]`` samples each. Labels
    (``cls``) number the samples 0, 1, ... across shards, modulo ``num_classes`` when
    given, so a reader can count them; the input is a PNG, a ``pth`` tensor or ``npy``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, label = [], 0
    for shard, count in enumerate(sizes):
        path = folder / f"{prefix}-{shard:06d}.tar"
        with wds.TarWriter(str(path)) as writer:
            for image in pixels(count, (size, size, 3), seed=shard):
                sample = {
                    "__key__": f"s{label:05d}",
                    "cls": label if num_classes is None else label % num_classes,
                }
                if payload == "png":
                    sample["png"] = png_bytes(image)
                elif payload == "pth":
                    sample["pth"] = torch.from_numpy(image).permute(2, 0, 1).contiguous()
                else:
                    sample["npy"] = np.ascontiguousarray(image.transpose(2, 0, 1))
                writer.write(sample)
                label += 1
        paths.append(path)
    return paths
