"""``bnn bench MODEL_OR_FILE``: per-layer and whole-network latency of the packed runtime
against the float twin (the same network without binarizers, float32, eval) in
PyTorch, measured interleaved in one process; medians and ratios (see
:mod:`bnn.deploy.bench`). Then the whole network against the engines a deployer would
pick for the float twin, ONNX Runtime and OpenVINO in fp32 and int8, where installed
(see :mod:`bnn.deploy.peers`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bnn.cli.output import print_json

PACK_SUFFIX = ".bnnpack"

#: The range of each numeric option: beyond these a benchmark never ends or exhausts memory.
OPTION_RANGES = {
    "batch": (1, 4096),
    "rounds": (1, 100_000),
    "warmup": (0, 10_000),
    "threads": (1, 1024),
}


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="MODEL_OR_FILE",
        help="a .bnnpack file (its float twin is rebuilt from the model it records), a "
        "checkpoint, a recipe (.yaml) or a registered model name",
    )
    parser.add_argument(
        "--input-shape",
        metavar="C,H,W",
        help="one sample's shape without the batch dimension (default: the model's; a "
        ".bnnpack file's exported one)",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument(
        "--threads", type=int, default=2, help="threads for both runtimes (default 2)"
    )
    parser.add_argument(
        "--bconfig", metavar="NAME", help="binarize a model name with this registered method"
    )
    peers = parser.add_mutually_exclusive_group()
    peers.add_argument(
        "--peers",
        metavar="NAMES",
        nargs="?",
        const="all",
        default="all",
        help="time the float twin in these engines too, comma-separated, from torch, ort, "
        "ort-int8, ov, ov-int8 (default: all; ONNX Runtime and OpenVINO come with "
        "pip install bnn-core[bench])",
    )
    peers.add_argument(
        "--no-peers", dest="peers", action="store_const", const="", help="time no peers"
    )
    parser.add_argument(
        "--calibrate",
        metavar="RECIPE",
        help="calibrate the int8 peers on this recipe's training split "
        "(default: random normal inputs)",
    )
    parser.add_argument(
        "--compare",
        metavar="FILE",
        help="race another .bnnpack of the same model with the peers, e.g. its int8 export "
        "(bnn export --float-layers int8)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(name: str, args: argparse.Namespace) -> int:
    import tempfile

    import numpy as np

    from bnn.cli.export import input_shape
    from bnn.deploy.bench import compare
    from bnn.deploy.peers import parse_peer_names
    from bnn_core.errors import ConfigError

    for option, (least, most) in OPTION_RANGES.items():
        value = getattr(args, option)
        if not least <= value <= most:
            kind = "a positive integer" if least else "0 or more"
            raise ConfigError(f"--{option} must be {kind} and at most {most:,}, got {value}")
    peer_names = parse_peer_names(args.peers) if args.peers else ()
    if args.calibrate:
        from bnn.cli.paths import check_input_file

        check_input_file(Path(args.calibrate), "the recipe to calibrate on (--calibrate)")
    if args.compare:
        from bnn.cli.paths import check_input_file

        check_input_file(Path(args.compare), "the packed model to compare (--compare)")
    with tempfile.TemporaryDirectory() as folder:
        network, float_model, description = _load(args, Path(folder))
        shape = (
            input_shape(args, tuple(network.input_shape))
            if args.input_shape
            else tuple(network.input_shape)
        )
        x = np.random.default_rng(0).standard_normal((args.batch, *shape), dtype=np.float32)
        result = compare(network, float_model, x, args.rounds, args.warmup)
        report = {"target": args.target, "source": description, **result.to_dict()}
        if peer_names or args.compare:
            report["peers"] = _race_peers(args, network, float_model, x, peer_names, Path(folder))
    if args.json:
        print_json(report)
        return 0
    _print_report(report)
    return 0


def _race_peers(
    args: argparse.Namespace,
    network: Any,
    float_model: Any,
    x: Any,
    names: tuple[str, ...],
    folder: Path,
) -> dict[str, Any]:
    """The packed network against the peers ``names`` built from its float twin."""
    from bnn.deploy.peers import (
        build_peers,
        check_agreement,
        packed_peer,
        race,
        random_calibration,
        recipe_calibration,
    )

    shape, batch = tuple(x.shape[1:]), int(x.shape[0])
    if args.calibrate:
        calibration, described = recipe_calibration(Path(args.calibrate), shape, batch)
    else:
        calibration, described = random_calibration(shape, batch)
        described += " (--calibrate RECIPE: a recipe's training split)"
    peers, notes = build_peers(float_model, shape, args.threads, calibration, folder, names)
    if args.compare:  # another export of the same weights: checked against this one
        other = packed_peer(Path(args.compare), args.threads, shape)
        check_agreement(network, [other], calibration)
        peers.append(other)
    return race(network, x, peers, args.rounds, args.warmup, described, notes).to_dict()


def _load(args: argparse.Namespace, folder: Path) -> tuple[Any, Any, str]:
    """The packed network, its float twin and a description of where they came from."""
    from bnn.cli.export import check_target, input_shape
    from bnn.cli.paths import check_input_file
    from bnn.deploy import export
    from bnn.deploy.bench import float_twin_from_metadata
    from bnn.deploy.source import float_twin, load_source
    from bnn_runtime.executor import load

    path = Path(args.target)
    if path.suffix == PACK_SUFFIX:
        check_input_file(path, "the packed model")
        network = load(path, threads=args.threads)
        twin = float_twin_from_metadata(network)
        name = network.metadata["source"]["model"]["name"]
        return network, twin, f"file {path} (float twin: {name})"
    check_target(args.target)
    source = load_source(args.target, args.bconfig)
    shape = input_shape(args, source.input_shape)
    exported = folder / "model.bnnpack"
    export(source.model, exported, shape, name=source.name, source=source.metadata())
    return load(exported, threads=args.threads), float_twin(source.model), source.description


def _print_report(report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    from bnn.cli.output import console

    shape = "x".join(map(str, report["input_shape"]))
    out = console()
    out.print(
        f"{report['source']}\nbatch {report['batch']} x {shape}, {report['threads']} threads, "
        f"median of {report['rounds']} interleaved rounds, kernels: {report['isa']}",
        soft_wrap=True,
    )
    table = Table(box=box.SIMPLE_HEAD)
    for column, justify in (
        ("node", "left"),
        ("op", "left"),
        ("packed ms", "right"),
        ("float ms", "right"),
        ("float/packed", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for layer in report["layers"]:
        torch_ms = layer["torch_ms"]
        speedup = layer["speedup"]
        table.add_row(
            layer["name"],
            layer["op"],
            f"{layer['runtime_ms']:.3f}",
            "-" if torch_ms is None else f"{torch_ms:.3f}",
            "-" if speedup is None else f"{speedup:.2f}x",
        )
    table.add_section()
    table.add_row(
        "whole network",
        "",
        f"{report['runtime_ms']:.3f}",
        f"{report['torch_ms']:.3f}",
        f"{report['speedup']:.2f}x",
    )
    out.print(table)
    binary = [layer for layer in report["layers"] if layer["binary"] and layer["speedup"]]
    if binary:
        packed = sum(layer["runtime_ms"] for layer in binary)
        floats = sum(layer["torch_ms"] for layer in binary)
        out.print(
            f"binary layers: {packed:.3f} ms packed vs {floats:.3f} ms float "
            f"({floats / packed:.2f}x); whole network {report['speedup']:.2f}x"
        )
    out.print(f"median of the rounds' own whole-network ratios: {report['paired_speedup']:.2f}x")
    if report["batch"] > 1:
        out.print(
            f"throughput at batch {report['batch']}: packed {report['images_per_second']:,.0f} "
            f"images/s, float {report['torch_images_per_second']:,.0f} images/s"
        )
    if "peers" in report:
        _print_peers(report["peers"])


def _print_peers(peers: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    from bnn.cli.output import console

    out = console()
    out.print(
        f"\nthe float twin in other engines, batch {peers['batch']}, {peers['threads']} threads, "
        f"median of {peers['rounds']} interleaved rounds; int8: ONNX Runtime's static "
        f"QDQ quantization (per-channel weights), run by both engines, calibrated on "
        f"{peers['calibration']}",
        soft_wrap=True,
    )
    table = Table(box=box.SIMPLE_HEAD)
    for column, justify in (
        ("engine", "left"),
        ("ms", "right"),
        ("images/s", "right"),
        ("packed is … faster", "right"),
        ("paired", "right"),
        ("max |diff|", "right"),
        ("top-1 same", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=column == "engine")  # type: ignore[arg-type]
    table.add_row(
        "packed runtime",
        f"{peers['packed_ms']:.3f}",
        f"{peers['packed_images_per_second']:,.0f}",
        "",
        "",
        "",
        "",
    )
    for peer in peers["peers"]:
        agreement = peer["top1_agreement"]
        table.add_row(
            peer["engine"],
            f"{peer['ms']:.3f}",
            f"{peer['images_per_second']:,.0f}",
            f"{peer['speedup']:.2f}x",
            f"{peer['paired_speedup']:.2f}x",
            f"{peer['max_abs_diff']:.2g}",
            "-" if agreement is None else f"{agreement:.0%}",
        )
    out.print(table)
    for note in peers["notes"]:
        out.print(f"not timed: {note}", soft_wrap=True, markup=False)
