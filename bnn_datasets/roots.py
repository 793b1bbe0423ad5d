"""Where a data set lives on disk, and the error that says how to get it when it is not there.

A root always comes from configuration, never from code: the ``root`` option (with ``~``
and ``$VARIABLES`` expanded) or, when it is not given, ``$BNN_DATA_ROOT/<dataset name>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from bnn_core.errors import ConfigError
from bnn_core.paths import expand_path

#: The split names a command may ask for. Data sets with only a training and a test set
#: (MNIST, Fashion-MNIST, CIFAR) serve ``val`` from the test set.
Split = Literal["train", "val", "test"]

ENVIRONMENT_VARIABLE = "BNN_DATA_ROOT"

#: How to obtain each data set, quoted by the error for a missing or wrong root.
SOURCES = {
    "fashion_mnist": "install Debian's package dataset-fashion-mnist (apt-get install "
    "dataset-fashion-mnist; the files land in /usr/share/datasets/fashion-mnist) or leave "
    "root unset to use the subset embedded in bnn_datasets",
    "mnist": "download the four IDX files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from "
    "the MNIST page into the root folder",
    "cifar10": "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and unpack it "
    "in the root folder (tar xzf cifar-10-python.tar.gz creates cifar-10-batches-py)",
    "cifar100": "download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and unpack "
    "it in the root folder (tar xzf cifar-100-python.tar.gz creates cifar-100-python)",
    "imagefolder": "arrange the images as <root>/<split>/<class>/<image> (or <root>/<class>/"
    "<image>); for ImageNet, download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from "
    "image-net.org, unpack the training tar of per-class tars into train/<wnid>/ and sort the "
    "validation images into val/<wnid>/",
    "webdataset": "write shards with `bnn data shard DATASET_OR_FOLDER -o "
    "<folder>/<split>-%06d.tar`",
    "imagenet_wds": "get ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org, "
    "unpack them into an ImageFolder tree (train/<wnid>/, val/<wnid>/) and write shards with "
    "`bnn data shard <tree> --split train -o <root>/train-%06d.tar` (and --split val)",
}


def resolve_root(dataset: str, root: str | None) -> Path:
    """The folder of ``dataset``: ``root`` expanded, or ``$BNN_DATA_ROOT/<dataset>``."""
    if root is not None:
        return expand_path(root)
    base = os.environ.get(ENVIRONMENT_VARIABLE)
    if not base:
        raise ConfigError(
            f"{dataset}: no data folder given. Set the option root (for example "
            f"{{name: {dataset}, root: ~/data/{dataset}}}) or the environment variable "
            f"{ENVIRONMENT_VARIABLE}, in which case ${ENVIRONMENT_VARIABLE}/{dataset} is used. "
            f"To get the data: {SOURCES.get(dataset, 'see docs/datasets.md')}."
        )
    return expand_path(base) / dataset


def missing_data(
    dataset: str, root: Path, expected: Sequence[str], problem: str = ""
) -> ConfigError:
    """The one-paragraph error for data that is not where the config says: the path, what
    was expected there, and how to get it."""
    if not root.exists():
        problem = problem or "the folder does not exist"
    elif not root.is_dir():
        problem = problem or "it is not a folder"
    where = f" ({problem})" if problem else ""
    return ConfigError(
        f"{dataset}: no data found at {root}{where}. Expected there: {', '.join(expected)}. "
        f"To get it: {SOURCES.get(dataset, 'see docs/datasets.md')}."
    )
