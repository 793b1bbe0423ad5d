"""Turn a ``bnn train`` checkpoint into a model that ships in ``bnn_models/weights/``: its
weights (the ones the run evaluated; float tensors of 4,096 values or more as bfloat16,
whose float32 exponent range keeps every latent binary weight's sign), its ``.bnnpack``
export, and a model card with the files' SHA-256, the accuracy of the shipped files in
PyTorch and in the packed runtime, their sizes and the packed latency against the float
twin and its peers::

    python benchmarks/fashion_mnist_full.py --seeds 0 1 --keep runs/fashion_mnist_full
    python scripts/ship_trained_model.py runs/fashion_mnist_full/binary_seed1/last.pt \\
        --name lenet5_fashion_mnist --root /usr/share/datasets/fashion-mnist \\
        --note "the better of seeds 0 and 1 on the full test set"

The model must be registered (``bnn_models/plugin.py``) with a builder whose binarized
network the checkpoint's weights fit; ``bnn eval NAME`` then reproduces the card.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
BNN = str(Path(sys.executable).with_name("bnn"))
WEIGHTS = ROOT / "bnn_models" / "weights"
#: Float tensors with at least this many values are stored as bfloat16.
HALF_FROM = 4096


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shipped_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with its large float tensors as bfloat16; refuses a rounding that would
    change a sign (a latent binary weight would flip)."""
    shipped = {}
    for key, value in state.items():
        if value.is_floating_point() and value.numel() >= HALF_FROM:
            half = value.bfloat16()
            if not torch.equal(torch.sign(half.float()), torch.sign(value)):
                raise SystemExit(f"{key}: bfloat16 changes the sign of some values")
            value = half
        shipped[key] = value.contiguous()
    return shipped


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def bnn_json(*arguments: str) -> Any:
    done = subprocess.run([BNN, *arguments, "--json"], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def accuracies(name: str, pack: Path, root: str | None) -> dict[str, Any]:
    """Accuracy of the shipped weights (PyTorch) and of the .bnnpack (packed runtime) on
    the embedded test split and, with ``root``, on the full test set."""
    result = {}
    for label, where in (("embedded_test", []), ("full_test", ["--root", root] if root else None)):
        if where is None:
            continue
        torch_run = bnn_json("eval", name, *where)
        packed_run = bnn_json("eval", str(pack), *where)
        result[label] = {
            "images": torch_run["samples"],
            "pytorch": round(torch_run["eval_acc"], 4),
            "packed_runtime": round(packed_run["eval_acc"], 4),
        }
        print(f"{label}: {result[label]}", flush=True)
    return result


def latency(pack: Path, rounds: int) -> dict[str, Any]:
    """Medians of ``bnn bench`` at batch 1 on 2 threads: the packed file against its float
    twin in PyTorch and in the peers that are installed."""
    bench = bnn_json("bench", str(pack), "--rounds", str(rounds), "--threads", "2")
    peers = bench.get("peers") or {}
    result = {
        "cpu": f"{cpu_name()}, {bench['isa']} kernels",
        "threads": bench["threads"],
        "batch": bench["batch"],
        "packed_ms": round(bench["runtime_ms"], 4),
        "float_twin_ms": {"PyTorch fp32 eager": round(bench["torch_ms"], 4)},
    }
    for peer in peers.get("peers", []):
        if peer["name"] != "torch":
            result["float_twin_ms"][peer["engine"]] = round(peer["ms"], 4)
    print(f"latency: {result}", flush=True)
    return result


def training_facts(
    recipe: Any, final: dict[str, Any], checkpoint: Path, note: str | None
) -> dict[str, Any]:
    """How the weights were trained; the wall time when the run comes from
    benchmarks/fashion_mnist_full.py, which records it beside the run (bench.json)."""
    facts = {
        "command": f"bnn train recipes/{recipe.name}.yaml --seed {recipe.seed}",
        "epochs": final["epoch"],
        "checkpoint_test_accuracy": round(final["eval_acc"], 4),
        "weights": "the exponential moving average the run evaluated"
        if recipe.training.ema
        else "the final weights",
    }
    record = checkpoint.parent / "bench.json"
    if record.exists():
        recorded = json.loads(record.read_text())
        facts["wall_minutes"] = round(recorded["wall"] / 60, 1)
        if "cpu" in recorded:
            facts["cpu"] = recorded["cpu"]
    if note:
        facts["note"] = note
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint written by bnn train")
    parser.add_argument("--name", required=True, help="the registered model it becomes")
    parser.add_argument("--root", help="the full dataset's folder, for the full test accuracy")
    parser.add_argument("--rounds", type=int, default=50, help="timed rounds of bnn bench")
    parser.add_argument("--note", help="how this run was chosen, for the card")
    args = parser.parse_args()

    from bnn.training.saved_recipe import checkpoint_recipe
    from bnn_core.registries import REGISTRIES, create_model
    from bnn_core.weights import fit_weights, parse_source, read_weights

    recipe, state = checkpoint_recipe(args.checkpoint)
    evaluated = read_weights(parse_source(str(args.checkpoint)))
    model = create_model(args.name)
    fit_weights(model, evaluated, str(args.checkpoint), args.name)
    WEIGHTS.mkdir(exist_ok=True)
    weights = WEIGHTS / f"{args.name}.pt"
    card = WEIGHTS / f"{args.name}.card.yaml"
    pack = WEIGHTS / f"{args.name}.bnnpack"
    card.unlink(missing_ok=True)  # a stale card would hold the old hash
    torch.save(shipped_state(model.state_dict()), weights)
    card.write_text(yaml.safe_dump({"name": args.name, "sha256": sha256(weights)}))
    subprocess.run([BNN, "export", args.name, "-o", str(pack)], check=True, capture_output=True)

    history = state["history"]
    final = history[-1]
    description = REGISTRIES["model"].entry(args.name).summary
    content = {
        "name": args.name,
        "sha256": sha256(weights),
        "description": description,
        "files": {
            path.name: {"bytes": path.stat().st_size, "sha256": sha256(path)}
            for path in (weights, pack)
        },
        "data": recipe.data.dataset.model_dump(mode="json") if recipe.data else None,
        "training": training_facts(recipe, final, args.checkpoint, args.note),
        "accuracy": accuracies(args.name, pack, args.root),
        "latency": latency(pack, args.rounds),
        "reproduce": [
            f"bnn eval {args.name}",
            f"bnn eval {args.name} --root /usr/share/datasets/fashion-mnist",
            f"bnn eval bnn_models/weights/{pack.name} --root /usr/share/datasets/fashion-mnist",
            f"bnn bench bnn_models/weights/{pack.name}",
        ],
    }
    header = f"# Model card of {args.name}, written by scripts/ship_trained_model.py.\n"
    card.write_text(header + yaml.safe_dump(content, sort_keys=False, width=100))
    print(f"wrote {weights}, {pack} and {card}")


if __name__ == "__main__":
    main()
