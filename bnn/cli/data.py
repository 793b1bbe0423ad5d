"""``bnn data shard``: write webdataset tar shards from a folder of images or a
registered data set, for fast sequential reading (``webdataset``, ``imagenet_wds``)."""

from __future__ import annotations

import argparse
from typing import Any

#: The largest shuffle seed (what Python's and torch's generators take without surprise).
MAX_SEED = 2**63 - 1

SHARD_EPILOG = """examples:
  bnn data shard ~/data/imagenet --split train -o ~/shards/imagenet/train-%06d.tar
  bnn data shard cifar10 --root ~/data --split test -o shards/cifar10/test-%06d.tar
  bnn data shard cifar100 -O labels=coarse -o shards/cifar100/train-%06d.tar
"""


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    shard = actions.add_parser(
        "shard",
        help="write webdataset tar shards",
        description="Write the samples of a data set to webdataset tar shards, shuffled, with\n"
        "their labels in 'cls'. Images are stored as their files (ImageFolder) or as PNG\n"
        "(MNIST, CIFAR); the shard sizes are recorded in shards.json next to them.",
        epilog=SHARD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shard.add_argument(
        "source",
        metavar="DATASET_OR_FOLDER",
        help="a registered data set (bnn list datasets) or a folder of class folders",
    )
    shard.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT_PATTERN",
        help="shard file names with a number field, for example shards/train-%%06d.tar",
    )
    shard.add_argument("--split", default="train", help="which split to write (default: train)")
    shard.add_argument(
        "--maxcount", type=int, default=10000, help="samples per shard at most (default: 10000)"
    )
    shard.add_argument("--root", help="the data set's root folder (default: $BNN_DATA_ROOT/<name>)")
    shard.add_argument(
        "-O",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another option of the data set (VALUE is read as YAML); repeatable",
    )
    shard.add_argument(
        "--no-shuffle", action="store_true", help="keep the data set's order instead of shuffling"
    )
    shard.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default: 0)")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["labels=coarse", "image_size=64"]`` -> ``{"labels": "coarse", "image_size": 64}``."""
    from bnn_core.errors import ConfigError
    from bnn_core.safe_yaml import load_text

    options = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ConfigError(f"-O expects KEY=VALUE, got {pair!r}")
        options[key] = load_text(value, f"the value of -O {key}")
    return options


def _reader_accepts_preset(preset: Any) -> bool:
    """Whether the registered ``webdataset`` reader takes ``preset`` as its preset option
    (the hint printed after writing names it only then)."""
    from bnn_core.errors import BnnError
    from bnn_core.params import validate_params
    from bnn_core.registries import get_dataset

    try:
        validate_params(get_dataset("webdataset"), {"preset": preset}, "dataset 'webdataset'")
    except BnnError:
        return False
    return True


def run(name: str, args: argparse.Namespace) -> int:
    from pathlib import Path

    from bnn.cli.paths import check_output_file
    from bnn.shard_writer import open_source, write_shards
    from bnn_core.errors import ConfigError
    from bnn_core.shard_format import brace_pattern, check_pattern

    check_pattern(args.output)
    if args.maxcount < 1:
        raise ConfigError(f"--maxcount must be a positive integer, got {args.maxcount}")
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must be from 0 to 2**63 - 1, got {args.seed}")
    check_output_file(Path(args.output % 0), "the first shard file (-o)")
    options = parse_options(args.option)
    dataset, dataset_name = open_source(
        args.source, split=args.split, root=args.root, options=options
    )
    source = f"{dataset_name} {args.source}" if dataset_name != args.source else args.source
    print(f"{source}, split {args.split}: writing shards of at most {args.maxcount} samples")
    written = write_shards(
        dataset,
        args.output,
        maxcount=args.maxcount,
        shuffle=not args.no_shuffle,
        seed=args.seed,
        on_shard=lambda path, count: print(f"  {path}  {count} samples"),
    )
    total = sum(count for _, count in written)
    index = written[0][0].parent / "shards.json"
    print(f"wrote {total} samples to {len(written)} shard(s); their sizes are in {index}")
    preset = options.get("preset", "imagenet" if dataset_name == "imagefolder" else dataset_name)
    read_back = f"{{name: webdataset, shards: '{brace_pattern(args.output, len(written))}'"
    if _reader_accepts_preset(preset):
        read_back += f", preset: {preset}"
    if getattr(dataset, "num_classes", None):
        read_back += f", num_classes: {dataset.num_classes}"
    print(f"read them with {read_back}}}")
    return 0
