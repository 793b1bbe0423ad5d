"""``bnn export CHECKPOINT_OR_RECIPE -o model.bnnpack``: write a binarized model as a
bit-packed file for the packed runtime (and, with ``--onnx``, as ONNX), and compare its
size with what ``bnn summary`` predicts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bnn.cli.output import print_json


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="CHECKPOINT_OR_RECIPE",
        help="a checkpoint written by `bnn train`, a recipe (.yaml: its run's best.pt or "
        "last.pt, else its untrained model), or a registered model name (with the weights it "
        "ships, if any)",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="the .bnnpack file to write"
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument(
        "--float32",
        dest="float_dtype",
        action="store_const",
        const="float32",
        help="store float tensors as float32 (the default)",
    )
    precision.add_argument(
        "--float16",
        dest="float_dtype",
        action="store_const",
        const="float16",
        help="store float tensors as float16 (half the size of the float part)",
    )
    parser.set_defaults(float_dtype="float32")
    parser.add_argument(
        "--float-layers",
        choices=("float", "int8", "int8-all"),
        default="float",
        help="store the float convolutions and linear layers as float (the default); int8: "
        "the downsampling and classifier layers as int8 weights with calibrated input "
        "scales, the stem float; int8-all: the stem as int8 too (both need --calibrate)",
    )
    parser.add_argument(
        "--calibrate",
        metavar="RECIPE",
        help="with --float-layers int8 or int8-all: calibrate the input scales on samples of this "
        "recipe's training data",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also write the fake-binarized model as ONNX beside it (PATH with .onnx)",
    )
    parser.add_argument(
        "--input-shape",
        metavar="C,H,W",
        help="one input sample's shape without the batch dimension (default: the model's)",
    )
    parser.add_argument(
        "--bconfig",
        metavar="NAME",
        help="binarize a model name with this registered method instead of its declared one",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def input_shape(args: argparse.Namespace, declared: tuple[int, ...] | None) -> tuple[int, ...]:
    """``--input-shape`` or the model's declared one; an error asking for it otherwise."""
    from bnn.cli.summary import _parse_shape
    from bnn_core.errors import ConfigError

    if args.input_shape is not None:
        return _parse_shape(args.input_shape)
    if declared is None:
        raise ConfigError(
            "the model does not declare its input shape; give one sample's shape without the "
            "batch dimension, for example --input-shape 3,32,32"
        )
    return declared


def check_target(target: str) -> None:
    """A target naming an existing path must be a regular file: a directory or a device is
    neither a checkpoint, a recipe nor a model name."""
    from bnn_core.errors import ConfigError

    path = Path(target)
    if path.is_dir():
        raise ConfigError(
            f"{target} is a directory; give a checkpoint file, a recipe (.yaml) or a "
            "registered model name (`bnn list models`)"
        )
    if path.exists() and not path.is_file():
        raise ConfigError(f"{target} is not a regular file (a device, pipe or socket)")


def run(name: str, args: argparse.Namespace) -> int:
    from bnn.cli.paths import check_output_file
    from bnn.deploy import export, export_onnx
    from bnn.deploy.size import check_size
    from bnn.deploy.source import load_source
    from bnn_core.errors import ConfigError

    output = Path(args.output)
    check_output_file(output, "the output file (-o)")
    if args.onnx:
        if output.suffix == ".onnx":
            raise ConfigError(
                f"with --onnx the ONNX file is written beside -o with the suffix .onnx, so -o "
                f"must not end in .onnx itself (got {output}); use a .bnnpack name"
            )
        check_output_file(output.with_suffix(".onnx"), "the ONNX file (--onnx)")
    int8 = args.float_layers != "float"
    if int8 != (args.calibrate is not None):
        raise ConfigError(
            "--float-layers int8 (or int8-all) and --calibrate RECIPE go together: int8 "
            "layers need input scales calibrated on a recipe's training data, float layers "
            "need none"
        )
    check_target(args.target)
    source = load_source(args.target, args.bconfig)
    shape = input_shape(args, source.input_shape)
    calibration = None
    if int8:
        from bnn.deploy.int8 import recipe_batches

        calibration = recipe_batches(Path(args.calibrate), shape)
    result = export(
        source.model,
        args.output,
        shape,
        float_dtype=args.float_dtype,
        name=source.name,
        source=source.metadata(),
        float_layers=args.float_layers,
        calibration=calibration,
    )
    size = None if int8 else check_size(source.model, shape, result)
    onnx_path = None
    if args.onnx:
        onnx_path = export_onnx(source.model, Path(args.output).with_suffix(".onnx"), shape)
    report: dict[str, Any] = {
        "source": source.description,
        "model": source.name,
        "input_shape": list(shape),
        **result.to_dict(),
        "size": None if size is None else size.to_dict(),
        "onnx": None if onnx_path is None else str(onnx_path),
    }
    if args.json:
        print_json(report)
        return 0
    _print_report(report)
    return 0


def _print_report(report: dict[str, Any]) -> None:
    size = report["size"]
    floats = report["nodes"] - report["binary_layers"]
    print(f"exported {report['source']} to {report['path']}")
    print(
        f"  file          {report['file_bytes']:,} B ({_readable(report['file_bytes'])}): "
        f"tensors {report['tensor_bytes']:,} B + header/metadata {report['metadata_bytes']:,} B"
    )
    if size is None:
        count = report["int8_layers"]
        print(
            f"  int8          {count} float convolution/linear layer{'s' * (count != 1)} "
            f"stored as int8 weights with calibrated input scales"
            + (", the stem float" if report["float_layers"] == "int8" else "")
        )
    else:
        _print_size(report)
    print(
        f"  graph         {report['nodes']} nodes: {report['binary_layers']} packed binary "
        f"layers ({report['binary_weights']:,} 1-bit weights), {floats} float nodes; input "
        f"{'x'.join(map(str, report['input_shape']))}"
    )
    if report["onnx"]:
        print(f"  onnx          {report['onnx']}")


def _print_size(report: dict[str, Any]) -> None:
    size = report["size"]
    notes = []
    if size["merged_bytes"]:
        notes.append(f"- {size['merged_bytes']:,} B merged by folding batch norms")
    if size["added_bytes"]:
        notes.append(f"+ {size['added_bytes']:,} B of derived weight scales")
    if size["rounding_bytes"]:
        notes.append(f"+ {size['rounding_bytes']:,.3f} B rounding bits to bytes")
    reconciled = " ".join(notes)
    verdict = "match" if size["matches"] else "do NOT match"
    print(
        f"  bnn summary   predicts {size['predicted_bytes']:,.3f} B of parameters (1-bit "
        f"weights, floats as {report['float_dtype']}){' ' + reconciled if reconciled else ''}: "
        f"the tensors {verdict}"
    )


def _readable(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.2f} {unit}"
        size /= 1024
    return f"{size:,.2f} GiB"
