"""``bnn explain CONFIG``: how a config binarizes its model, layer by layer, and
optionally one forward pass on a batch of the configured data."""

from __future__ import annotations

import argparse
from typing import Any

from bnn.cli.output import print_json, print_table


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML config (recipe) file")
    parser.add_argument(
        "--forward",
        action="store_true",
        help="also build the binarized model and run one batch of the config's data through it",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(name: str, args: argparse.Namespace) -> int:
    from bnn.recipe import load_recipe

    recipe = load_recipe(args.config)
    model = recipe.build_model(binarize=False)
    spec = recipe.binarization()
    plans = spec.plan(model) if spec is not None else []
    result: dict[str, Any] = {
        "model": recipe.model.model_dump(),
        "layers": [p.to_dict() for p in plans],
    }
    if args.forward:
        if spec is not None:
            model = spec.apply(model, inplace=True)
        result["forward"] = forward_pass(model, recipe)
    if args.json:
        print_json(result)
        return 0
    binary = sum(p.binarize for p in plans)
    options = ", ".join(f"{k}={v}" for k, v in recipe.model.options.items())
    print(f"{recipe.model.name}({options}): {binary} of {len(plans)} layers binarized")
    rows = [
        (p.name, p.layer_type, *(p.binarizers.values() if p.binarize else ("float",) * 3), p.reason)
        for p in plans
    ]
    print_table(None, ("layer", "type", "input", "weight", "output", "rule"), rows)
    if args.forward:
        _print_forward(result["forward"])
    return 0


def forward_pass(model: Any, recipe: Any) -> dict[str, Any]:
    """Run one evaluation batch through ``model``; record what each binary layer saw."""
    import torch

    from bnn_core.errors import ConfigError
    from bnn_core.layers import is_binary_layer

    if recipe.data is None:
        raise ConfigError("--forward needs a 'data' section in the config")
    dataset = recipe.data.dataset.build(split="test")
    loader = torch.utils.data.DataLoader(dataset, batch_size=recipe.data.batch_size)
    inputs, targets = next(iter(loader))
    seen: dict[str, dict[str, Any]] = {}

    def record(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            binarized = module.activation_pre_process(args[0])
            weight = module.weight_pre_process(module.weight)
            seen[name] = {
                "input_values": _value_set(binarized),
                "weight_values": _value_set(
                    weight / weight.abs().amax(dim=tuple(range(1, weight.dim())), keepdim=True)
                ),
            }

        return hook

    handles = [
        m.register_forward_hook(record(n)) for n, m in model.named_modules() if is_binary_layer(m)
    ]
    model.eval()
    with torch.no_grad():
        logits = model(inputs)
    for handle in handles:
        handle.remove()
    predicted = logits.argmax(dim=1)
    return {
        "dataset": recipe.data.dataset.name,
        "input_shape": list(inputs.shape),
        "output_shape": list(logits.shape),
        "accuracy": float((predicted == targets).float().mean()),
        "predicted": predicted[:10].tolist(),
        "labels": targets[:10].tolist(),
        "binary_layers": seen,
    }


def _value_set(tensor: Any) -> str:
    values = tensor.unique()
    if len(values) > 4:
        return f"{len(values)} distinct values"
    return "{" + ", ".join(f"{v:+g}" for v in values.tolist()) + "}"


def _print_forward(forward: dict[str, Any]) -> None:
    print(
        f"\nForward pass on one test batch of {forward['dataset']}: input {forward['input_shape']}"
        f" -> logits {forward['output_shape']}"
    )
    rows = [(n, v["input_values"], v["weight_values"]) for n, v in forward["binary_layers"].items()]
    print_table(
        None, ("binary layer", "binarized input", "weight signs (per-channel scaled)"), rows
    )
    print(f"predicted: {forward['predicted']}")
    print(f"labels:    {forward['labels']}")
    print(
        f"accuracy of the untrained model on this batch: {forward['accuracy']:.1%} "
        "(chance level is expected before training)"
    )
