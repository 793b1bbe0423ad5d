"""``bnn summary NAME_OR_CONFIG``: per-layer parameters, memory, MACs and packed-runtime
support of a registered model (float, or binarized with ``--bconfig``) or of the
binarized model a config file describes."""

from __future__ import annotations

import argparse
import math
from typing import Any

from bnn.cli.output import console, print_json

CONFIG_SUFFIXES = (".yaml", ".yml")

#: Limits of ``--input-shape``: one sample of 64 Mi values is 256 MiB of float32 already.
MAX_INPUT_DIMS = 8
MAX_INPUT_VALUES = 2**26


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="NAME_OR_CONFIG",
        help="a registered model name (`bnn list models`) or a YAML config (.yaml/.yml)",
    )
    parser.add_argument(
        "--input-shape",
        metavar="C,H,W",
        help="shape of one input sample without the batch dimension, for example 3,32,32 "
        "(default: the model's own, when it declares one)",
    )
    parser.add_argument(
        "--bconfig",
        metavar="NAME",
        help="binarize the named model with this registered method (`bnn list bconfigs`)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(name: str, args: argparse.Namespace) -> int:
    from bnn.summary import summary

    shape = _parse_shape(args.input_shape) if args.input_shape is not None else None
    model, model_name = _build(args)
    result = summary(model, shape or _declared_shape(model_name), name=model_name)
    if args.json:
        print_json({"source": args.target, **result.to_dict()})
        return 0
    result.render(console())
    return 0


def _build(args: argparse.Namespace) -> tuple[Any, str]:
    """The model to summarize and its registry name."""
    from bnn_core.errors import ConfigError

    if args.target.lower().endswith(CONFIG_SUFFIXES):
        if args.bconfig:
            raise ConfigError(
                "--bconfig applies to a model name; a config file binarizes its model as its "
                "'binarize' section says (edit that section instead)"
            )
        from bnn.recipe import load_recipe

        recipe = load_recipe(args.target)
        return recipe.build_model(), recipe.model.name
    from pathlib import Path

    from bnn_core.errors import UnknownNameError
    from bnn_core.registries import REGISTRIES, create_model

    try:
        entry = REGISTRIES["model"].entry(args.target)
    except UnknownNameError:
        if Path(args.target).is_dir():
            raise ConfigError(
                f"{args.target!r} is a directory; give a registered model name or a config "
                f"file ({' or '.join(CONFIG_SUFFIXES)})"
            ) from None
        if Path(args.target).is_file():
            raise ConfigError(
                f"{args.target!r} is a file but not a config: config files end in "
                f"{' or '.join(CONFIG_SUFFIXES)}"
            ) from None
        raise
    model = create_model(entry.name)
    if args.bconfig:
        from bnn_core.engine import prepare_binary_model

        model = prepare_binary_model(model, args.bconfig, inplace=True)
    return model, entry.name


def _declared_shape(model_name: str) -> tuple[int, ...]:
    """The input shape the model registered (``register(..., input_shape=(C, H, W))``)."""
    from bnn_core.errors import ConfigError
    from bnn_core.registries import REGISTRIES

    shape = REGISTRIES["model"].entry(model_name).metadata.get("input_shape")
    if shape is None:
        raise ConfigError(
            f"model {model_name!r} does not declare its input shape; give one sample's "
            "shape without the batch dimension, for example --input-shape 3,32,32"
        )
    return tuple(shape)


def _parse_shape(text: str) -> tuple[int, ...]:
    """``--input-shape`` as integers: ``1,28,28`` (``1x28x28`` works too)."""
    from bnn_core.errors import ConfigError

    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) <= 0:
        raise ConfigError(
            f"--input-shape must be positive integers separated by commas, one sample without "
            f"the batch dimension (for example 1,28,28), got {text!r}"
        )
    if len(shape) > MAX_INPUT_DIMS or math.prod(shape) > MAX_INPUT_VALUES:
        raise ConfigError(
            f"--input-shape {text!r} is too large: one sample may have at most "
            f"{MAX_INPUT_DIMS} dimensions and {MAX_INPUT_VALUES:,} values"
        )
    return shape
