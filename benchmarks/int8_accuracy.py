"""The accuracy cost of int8 float layers: a trained checkpoint exported three times, with
float layers, with ``--float-layers int8`` (the stem float) and with ``int8-all`` (the
stem int8 too), the int8 ones calibrated on the recipe's training split, all run in the
packed runtime on the recipe's evaluation split (for the default recipe, the 2,000 images
of the embedded Fashion-MNIST test split). Prints the top-1 accuracies, each int8
export's difference from the float one and how often the two predict the same class,
against the targets: within 0.3 points, and the same class for at least 99 % of the
images::

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
INT8_MODES = ("int8", "int8-all")


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
        batches = recipe_batches(recipe, shape)
        for layers in ("float", *INT8_MODES):
            path = Path(folder) / f"{layers}.bnnpack"
            calibration = None if layers == "float" else batches
            export(source.model, path, shape, float_layers=layers, calibration=calibration)
            network = load(path)
            logits = [network(samples[i : i + batch]) for i in range(0, len(samples), batch)]
            predictions[layers] = np.concatenate(logits).argmax(axis=1)
    accuracy = {name: float(np.mean(p == labels)) for name, p in predictions.items()}
    modes = {}
    for mode in INT8_MODES:
        drop = 100 * (accuracy["float"] - accuracy[mode])
        agreement = float(np.mean(predictions["float"] == predictions[mode]))
        modes[mode] = {
            "accuracy": accuracy[mode],
            "drop_points": drop,
            "agreement": agreement,
            "within_drop_target": drop <= MAX_DROP_POINTS,
            "meets_agreement_target": agreement >= MIN_AGREEMENT,
        }
    return {
        "checkpoint": str(checkpoint),
        "data": described,
        "accuracy_float_layers": accuracy["float"],
        "int8": modes,
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
    print(f"  float layers            top-1 {100 * result['accuracy_float_layers']:.2f} %")
    for mode, found in result["int8"].items():
        change = 100 * (found["accuracy"] - result["accuracy_float_layers"])
        print(
            f"  --float-layers {mode:<8} top-1 {100 * found['accuracy']:.2f} %, "
            f"{change:+.2f} points (target: at most {MAX_DROP_POINTS} lower, "
            f"{verdict[found['within_drop_target']]}); same prediction for "
            f"{100 * found['agreement']:.2f} % of the images (target >= "
            f"{100 * MIN_AGREEMENT:.0f} %: {verdict[found['meets_agreement_target']]})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
