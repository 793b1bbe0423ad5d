"""The whole Bi-Real ResNet-18 (ImageNet size, batch 1) in the packed runtime against the
float torchvision ResNet-18 in PyTorch, and the exported file against the float
checkpoint, measured in one run.

Latency: the exported network (``bnn_runtime.load``, float32 file) and torchvision's
ResNet-18 (float32, eval, no gradients) run on the same random 1x3x224x224 input with
the same number of threads in one process, PyTorch with its default settings. Rounds
interleave the three: each runs ``--calls`` calls of one, then of the next, and each
figure is the median over rounds of the per-round median call, so the first call after
a switch (when the other runtime's idle threads are still spinning on the cores) does
not count. The speed-up is printed twice: the ratio of the two medians, and the median
of the rounds' own ratios (paired blocks, run within a few tenths of a second of each
other, so a slow spell of a shared machine weighs on both). Also timed: the float twin
of the Bi-Real network itself (the same architecture without binarizers). Peers: both
float models also run in ONNX Runtime and OpenVINO, fp32 and int8 (ONNX Runtime's static
QDQ quantization calibrated on a few random batches, run by both engines; see
``bnn.deploy.peers``), in the same rounds with the same thread count, and a table gives
how many times faster the packed network is than each (``--peers ''`` leaves them out;
a missing package is a one-line note). ``--float-layers int8`` races the export whose
downsampling and classifier layers are int8 (``int8-all``: the stem too), calibrated on
the same batches as the peers. Size: the exported file against ``torch.save(state_dict)``
of the float ResNet-18. Targets: >= 10x faster than PyTorch, >= 4x ONNX Runtime int8,
>= 2.5x OpenVINO int8, <= 1/8 of the float checkpoint.

The machine's load average is printed before and after, since other processes on the
cores inflate both sides (multi-threaded runs the most)::

    python benchmarks/whole_network.py --rounds 20 --threads 2   # peers: pip install -e .[bench]

To see how the engines compare on a CPU without AVX-512, run the packed kernels on their
AVX2 path and OpenVINO's oneDNN limited to AVX2 (ONNX Runtime has no such switch and
keeps whatever its kernels detect; the output says so)::

    BNN_RUNTIME_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/whole_network.py
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision
from timing import per_call  # benchmarks/timing.py, beside this script

from bnn.deploy import export
from bnn.deploy.peers import build_peers, parse_peer_names, random_calibration
from bnn.deploy.source import float_twin
from bnn_core.errors import ConfigError
from bnn_core.registries import create_model
from bnn_runtime import kernels
from bnn_runtime.executor import load

SHAPE = (3, 224, 224)


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())``."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=5, help="calls of each per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--peers",
        default="ort,ort-int8,ov,ov-int8",
        help="engines to run both float models in too, comma-separated ('' for none)",
    )
    parser.add_argument(
        "--float-layers",
        choices=("float", "int8", "int8-all"),
        default="float",
        help="the packed export's float layers (bnn export --float-layers)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    try:
        names = parse_peer_names(args.peers) if args.peers else ()
    except ConfigError as exc:
        parser.error(str(exc))
    peer_names = [name for name in names if name != "torch"]  # PyTorch is timed anyway

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    binary = create_model("resnet18_bireal", binarize=True).eval()
    reference = torchvision.models.resnet18().eval()
    twin = float_twin(binary)
    calibration, described = random_calibration(SHAPE, batch=1)
    peers: dict[str, list] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "resnet18_bireal.bnnpack"
        int8 = None if args.float_layers == "float" else calibration
        result = export(binary, path, SHAPE, float_layers=args.float_layers, calibration=int8)
        network = load(path, threads=args.threads)
        for label, model in (("torchvision ResNet-18", reference), ("Bi-Real float twin", twin)):
            work = Path(folder) / label.split()[0]
            work.mkdir()
            built, missing = build_peers(model, SHAPE, args.threads, calibration, work, peer_names)
            peers[label] = built
            notes += [f"{label}: {note}" for note in missing]
    x = np.random.default_rng(0).standard_normal((1, *SHAPE), dtype=np.float32)
    tensor = torch.from_numpy(x)
    engines = {f"{label} / {peer.engine}": peer for label, built in peers.items() for peer in built}

    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"packed": [], "torchvision": [], "twin": []}
    times.update({name: [] for name in engines})
    with torch.no_grad():
        for _ in range(2):
            network(x), reference(tensor), twin(tensor)
            for peer in engines.values():
                peer.call(x)
        for _ in range(args.rounds):
            times["packed"].append(per_call(lambda: network(x), args.calls))
            times["torchvision"].append(per_call(lambda: reference(tensor), args.calls))
            times["twin"].append(per_call(lambda: twin(tensor), args.calls))
            for name, peer in engines.items():
                times[name].append(per_call(lambda peer=peer: peer.call(x), args.calls))
    load_after = os.getloadavg()
    median = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    # Paired figure: each round's ratio uses two blocks run next to each other, so a slow
    # spell of the machine (other tenants on a shared host) slows both sides of it.
    paired = statistics.median(
        float_ms / packed_ms
        for float_ms, packed_ms in zip(times["torchvision"], times["packed"], strict=True)
    )
    float_checkpoint = checkpoint_bytes(reference)
    figures = {
        "threads": args.threads,
        "rounds": args.rounds,
        "calls": args.calls,
        "isa": kernels.isa(),
        "float_layers": args.float_layers,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "load_average_before": load_before[0],
        "load_average_after": load_after[0],
        "packed_ms": median["packed"],
        "torchvision_resnet18_ms": median["torchvision"],
        "bireal_float_twin_ms": median["twin"],
        "speedup_vs_torchvision": median["torchvision"] / median["packed"],
        "speedup_vs_torchvision_paired": paired,
        "speedup_vs_twin": median["twin"] / median["packed"],
        "file_bytes": result.file_bytes,
        "float_checkpoint_bytes": float_checkpoint,
        "size_ratio": result.file_bytes / float_checkpoint,
        "peers": [
            {
                "model": label,
                "engine": peer.engine,
                "ms": median[f"{label} / {peer.engine}"],
                "speedup": median[f"{label} / {peer.engine}"] / median["packed"],
                "paired_speedup": statistics.median(
                    p / q
                    for p, q in zip(times[f"{label} / {peer.engine}"], times["packed"], strict=True)
                ),
                "max_abs_diff": peer.max_abs_diff,
                "top1_agreement": peer.top1_agreement,
            }
            for label, built in peers.items()
            for peer in built
        ],
        "peer_calibration": described,
        "peer_notes": notes,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"Bi-Real ResNet-18, batch 1 x {'x'.join(map(str, SHAPE))}, {args.threads} threads, "
        f"median of {args.rounds} interleaved rounds x {args.calls} calls (kernels: "
        f"{figures['isa']}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after)"
    )
    if figures["onednn_max_cpu_isa"]:
        print(
            f"  OpenVINO limited by ONEDNN_MAX_CPU_ISA={figures['onednn_max_cpu_isa']}; "
            "ONNX Runtime uses what its kernels detect"
        )
    print(f"  packed runtime ({args.float_layers + ' layers':<11})  {median['packed']:8.2f} ms")
    print(
        f"  torchvision ResNet-18 float   {median['torchvision']:8.2f} ms   "
        f"{figures['speedup_vs_torchvision']:.2f}x (target >= 10x); "
        f"median of per-round ratios {paired:.2f}x"
    )
    print(
        f"  Bi-Real float twin            {median['twin']:8.2f} ms   "
        f"{figures['speedup_vs_twin']:.2f}x"
    )
    print(
        f"  file {result.file_bytes:,} B vs float checkpoint {float_checkpoint:,} B: "
        f"1/{1 / figures['size_ratio']:.1f} (target <= 1/8)"
    )
    if figures["peers"] or notes:
        print_peers(figures)


#: The smallest ratios aimed at against torchvision's ResNet-18 in a peer's int8 form.
TARGETS = {"ONNX Runtime": 4.0, "OpenVINO": 2.5}


def _target(peer: dict) -> str:
    if not peer["model"].startswith("torchvision") or "int8" not in peer["engine"]:
        return ""
    wanted = next((v for k, v in TARGETS.items() if peer["engine"].startswith(k)), None)
    if wanted is None:
        return ""
    return f"  target >= {wanted}x: {'met' if peer['speedup'] >= wanted else 'NOT met'}"


def print_peers(figures: dict) -> None:
    """The ratio table: how many times faster the packed network is than each peer."""
    print(f"\npeers (int8 calibrated on {figures['peer_calibration']})")
    width = max((len(peer["model"] + peer["engine"]) + 3 for peer in figures["peers"]), default=0)
    print(f"  {'model / engine':<{width}} {'ms':>8}  packed is … faster (paired)  top-1 agrees")
    for peer in figures["peers"]:
        agreement = peer["top1_agreement"]
        print(
            f"  {peer['model'] + ' / ' + peer['engine']:<{width}} {peer['ms']:8.2f}  "
            f"{peer['speedup']:17.2f}x ({peer['paired_speedup']:.2f}x)  "
            f"{'-' if agreement is None else f'{agreement:.0%}':>12}{_target(peer)}"
        )
    for note in figures["peer_notes"]:
        print(f"  not timed: {note}")


if __name__ == "__main__":
    main()
