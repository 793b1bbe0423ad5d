"""``bnn validate`` and ``bnn config-schema``: check configs before anything runs."""

from __future__ import annotations

import argparse

from bnn.cli.output import print_json


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "validate":
        parser.add_argument("config", help="a YAML config (recipe) file")


def run(name: str, args: argparse.Namespace) -> int:
    from bnn.recipe import Recipe, load_recipe

    if name == "config-schema":
        print_json(Recipe.model_json_schema())
        return 0
    recipe = load_recipe(args.config)
    from bnn_core.meta import build_on_meta

    model = build_on_meta(recipe.model)
    parts = [f"model {recipe.model.name}"]
    stages = recipe.stages_to_run()
    for stage in stages:
        if stage.binarization is not None:
            model = stage.binarization.apply(model, inplace=True)
            plans = stage.binarization.plan(model)
            binary = sum(p.binarize for p in plans)
            where = f" in stage {stage.name}" if len(stages) > 1 else ""
            parts.append(f"{binary} of {len(plans)} layers binarized{where}")
    print(f"{args.config}: valid ({', '.join(parts)})")
    return 0
