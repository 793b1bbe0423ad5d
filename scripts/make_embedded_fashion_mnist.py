"""Build the embedded Fashion-MNIST subset shipped in ``bnn_datasets/data/fashion_mnist``.

It takes a stratified sample (the same number of images per class, chosen with a fixed
seed) of the full data set that Debian's ``dataset-fashion-mnist`` package installs,
and writes it in the original IDX format, gzip-compressed::

    apt-get install -y dataset-fashion-mnist
    python scripts/make_embedded_fashion_mnist.py            # 1200 + 200 per class
"""

from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import numpy as np

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
TARGET = Path(__file__).resolve().parents[1] / "bnn_datasets" / "data" / "fashion_mnist"
SPLITS = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a NumPy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    _, _, dtype_code, ndim = struct.unpack(">BBBB", data[:4])
    if dtype_code != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are supported")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip-compressed IDX file (reproducible: no timestamp)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as out,
    ):
        out.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_class`` random samples of each class, in a shuffled order."""
    chosen = [
        rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)
    ]
    indices = np.concatenate(chosen)
    rng.shuffle(indices)
    return indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEBIAN_ROOT)
    parser.add_argument("--out", type=Path, default=TARGET)
    parser.add_argument("--train-per-class", type=int, default=1200)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, prefix in SPLITS.items():
        images = read_idx(args.source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(args.source / f"{prefix}-labels-idx1-ubyte.gz")
        per_class = args.train_per_class if split == "train" else args.test_per_class
        keep = stratified(labels, per_class, rng)
        write_idx(args.out / f"{prefix}-images-idx3-ubyte.gz", images[keep])
        write_idx(args.out / f"{prefix}-labels-idx1-ubyte.gz", labels[keep])
        print(f"{split}: {len(keep)} images -> {args.out}")


if __name__ == "__main__":
    main()
