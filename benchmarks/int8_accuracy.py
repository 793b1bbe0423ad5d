"""The accuracy cost of int8 float layers: a trained checkpoint exported twice, with float
layers and with ``--float-layers int8`` (calibrated on the recipe's training split), both
run in the packed runtime on the recipe's evaluation split (for the default recipe, the
2,000 images of the embedded Fashion-MNIST test split). Prints both top-1 accuracies,
their difference and how often the two exports predict the same class, against the
targets: within 0.3 points, and the same class for at least 99 % of the images::

    python benchmarks/int8_accuracy.py                       # runs/default/best.pt
    python benchmarks/int8_accuracy.py --checkpoint runs/x/best.pt --recipe recipes/x.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MAX_DROP_POINTS = 0.3
MIN_AGREEMENT = 0.99


def evaluation_split(recipe: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The samples and labels of ``recipe``'s evaluation split, and its description."""
    from bnn.recipe import prepare_recipe

    loaded, _ = prepare_recipe(recipe)
    if loaded.data is None:
        raise SystemExit(f"{recipe} has no 'data' section to evaluate on")
    spec = loaded.data.eval_dataset or loaded.data.dataset
    data = spec.build(split=loaded.evaluation.split)
    samples = np.stack([np.asarray(data[i][0], dtype=np.float32) for i in range(len(data))])
    labels = np.array([int(data[i][1]) for i in range(len(data))])
    return samples, labels, f"{len(data)} images, {loaded.evaluation.split} split of {spec.name}"


def measure(checkpoint: Path, recipe: Path, batch: int = 500) -> dict[str, object]:
    """Export ``checkpoint`` both ways and compare the two on ``recipe``'s evaluation split."""
    from bnn.deploy import export
    from bnn.deploy.int8 import recipe_batches
    from bnn.deploy.source import load_source
    from bnn_runtime import load

    source = load_source(str(checkpoint), None)
    shape = source.input_shape
    samples, labels, described = evaluation_split(recipe)
    predictions = {}
    with tempfile.TemporaryDirectory() as folder:
        for layers in ("float", "int8"):
            path = Path(folder) / f"{layers}.bnnpack"
            calibration = recipe_batches(recipe, shape) if layers == "int8" else None
            export(source.model, path, shape, float_layers=layers, calibration=calibration)
            network = load(path)
            logits = [network(samples[i : i + batch]) for i in range(0, len(samples), batch)]
            predictions[layers] = np.concatenate(logits).argmax(axis=1)
    accuracy = {name: float(np.mean(p == labels)) for name, p in predictions.items()}
    drop = 100 * (accuracy["float"] - accuracy["int8"])
    agreement = float(np.mean(predictions["float"] == predictions["int8"]))
    return {
        "checkpoint": str(checkpoint),
        "data": described,
        "accuracy_float_layers": accuracy["float"],
        "accuracy_int8_layers": accuracy["int8"],
        "drop_points": drop,
        "agreement": agreement,
        "within_drop_target": drop <= MAX_DROP_POINTS,
        "meets_agreement_target": agreement >= MIN_AGREEMENT,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "default" / "best.pt")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "default.yaml")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        print(f"{args.checkpoint} does not exist; train it first (make train)", file=sys.stderr)
        return 2
    result = measure(args.checkpoint, args.recipe)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    verdict = {True: "met", False: "NOT met"}
    print(f"{result['checkpoint']} on {result['data']}")
    print(f"  top-1, float layers   {100 * result['accuracy_float_layers']:.2f} %")
    print(f"  top-1, int8 layers    {100 * result['accuracy_int8_layers']:.2f} %")
    print(
        f"  int8 - float          {-result['drop_points']:+.2f} points "
        f"(target: at most {MAX_DROP_POINTS} lower, {verdict[result['within_drop_target']]})"
    )
    print(
        f"  same prediction       {100 * result['agreement']:.2f} % of the images "
        f"(target >= {100 * MIN_AGREEMENT:.0f} %: {verdict[result['meets_agreement_target']]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
