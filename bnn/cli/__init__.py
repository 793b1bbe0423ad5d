"""The ``bnn`` command line.

Sub-command modules import torch only inside the commands that need it, so
``bnn --help`` and ``bnn list-plugins`` stay fast.
Errors caused by input (``BnnError``, and the runtime's ``BnnRuntimeError``) are printed as
one paragraph with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from bnn import __version__
from bnn_core.errors import BnnError
from bnn_runtime.errors import BnnRuntimeError

# command -> (module, help)
COMMANDS = {
    "list-plugins": ("bnn.cli.plugins", "show installed plugins and what each registered"),
    "list": (
        "bnn.cli.listing",
        "list registered components (binarizers, models, datasets, losses, lowerings, ...)",
    ),
    "validate": ("bnn.cli.configs", "check a config file and report every problem"),
    "config-schema": ("bnn.cli.configs", "print the JSON Schema of config files"),
    "explain": ("bnn.cli.explain", "show how a config binarizes its model, layer by layer"),
    "train": ("bnn.cli.train", "train a recipe (resume, distillation, stages, torchrun)"),
    "eval": (
        "bnn.cli.train",
        "test accuracy of a checkpoint, a recipe's run, a model that ships weights or a .bnnpack",
    ),
    "summary": ("bnn.cli.summary", "parameters, memory and MACs per bit width, layer by layer"),
    "data": ("bnn.cli.data", "prepare data sets: write webdataset shards (data shard)"),
    "export": ("bnn.cli.export", "write a binarized model as a bit-packed .bnnpack file"),
    "bench": ("bnn.cli.bench", "latency of the packed runtime against the float model in torch"),
}

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    listing = "\n".join(f"  {name:<15}{text}" for name, (_, text) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="bnn",
        usage="bnn [-h] [--version] COMMAND ...",
        description="Binary neural networks for PyTorch: binarize, train and deploy.\n\n"
        f"commands:\n{listing}",
        epilog="Run `bnn COMMAND --help` for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"bnn {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--strict",
        action="store_true",
        help="fail if a plugin is broken or two plugins register the same name "
        "(same as BNN_STRICT_PLUGINS=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, description=help_text, parents=[common])
        command.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(name, command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bnn`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.strict:
        os.environ["BNN_STRICT_PLUGINS"] = "1"
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args.command, args) or 0)
    except (BnnError, BnnRuntimeError) as exc:
        print(f"bnn {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"bnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a program that stopped reading (head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
