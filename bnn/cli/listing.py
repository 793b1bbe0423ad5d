"""``bnn list KIND [PATTERN]``: the registered components of one kind."""

from __future__ import annotations

import argparse
from typing import Any

from bnn.cli.output import print_json, print_table

SLOTS = ("activation_pre_process", "weight_pre_process", "activation_post_process")

KINDS = {
    "binarizers": "binarizer",
    "bconfigs": "bconfig",
    "blocks": "block",
    "layers": "layer",
    "models": "model",
    "datasets": "dataset",
    "optimizers": "optimizer",
    "losses": "loss",
    "metrics": "metric",
    "callbacks": "callback",
    "lowerings": "lowering",
}


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=sorted(KINDS), help="what to list")
    parser.add_argument("pattern", nargs="?", help="fnmatch pattern, for example '*sign*'")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _options(target: Any) -> dict[str, Any]:
    from bnn_core.params import params_model

    return {
        key: ("<required>" if field.is_required() else field.default)
        for key, field in params_model(target).model_fields.items()
    }


def _describe(kind: str, entry: Any, conflicts: dict[str, Any]) -> dict[str, Any]:
    from bnn_core.errors import PluginError

    row: dict[str, Any] = {"name": entry.name, "aliases": list(entry.aliases)}
    if entry.name in conflicts:
        row["conflict"] = [e.provider for e in conflicts[entry.name]]
    try:
        target = entry.load()
    except PluginError as exc:
        return {**row, "provider": entry.provider, "error": str(exc)}
    if kind == "binarizer":
        from dataclasses import asdict

        from bnn_core.binarizer import describe_binarizer

        row.update(asdict(describe_binarizer(entry.name, target)))
    elif kind == "bconfig":
        from bnn_core.registries import get_bconfig

        row.update(fields=get_bconfig(entry.name).model_dump(), summary=entry.summary)
    elif kind == "layer":
        row.update(
            float_layer=_reference(entry.metadata["float_layer"]), binary_layer=entry.reference
        )
    elif kind == "lowering":
        row["module_type"] = _reference(entry.metadata["module_type"])
        row["lowering"] = entry.reference
        if hasattr(target, "threshold"):  # a binarizer's fold: the roles it folds in
            roles = (("input", target.threshold), ("weight", target.weight))
            roles += (("output", target.output),)
            row["lowering"] = "fold as " + ", ".join(r for r, how in roles if how)
    else:
        row.update(options=_options(target), summary=entry.summary)
        if kind == "model":
            row["pretrained"] = entry.metadata.get("weights") is not None
    row["provider"] = entry.provider
    return row


def _summary(row: dict[str, Any]) -> str:
    """The description, marked when the model ships trained weights."""
    if row.get("pretrained"):
        return f"{row['summary']} Trained weights: pretrained=True, bnn eval {row['name']}."
    return row["summary"]


def _reference(obj: Any) -> str:
    return obj if isinstance(obj, str) else f"{obj.__module__}:{obj.__qualname__}"


def _field(fields: dict[str, Any], slot: str) -> str:
    value = fields.get(slot, "identity")
    if isinstance(value, dict):
        options = {k: v for k, v in value.items() if k != "name"}
        return f"{value['name']}({_text(options)})"
    return str(value)


def _text(options: dict[str, Any], separator: str = ", ") -> str:
    return separator.join(f"{k}={v}" for k, v in options.items()) or "-"


def run(name: str, args: argparse.Namespace) -> int:
    from bnn_core.registries import REGISTRIES

    kind = KINDS[args.kind]
    registry = REGISTRIES[kind]
    conflicts = registry.conflicts()
    rows = [_describe(kind, e, conflicts) for e in registry.entries(args.pattern)]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print(
            f"No {args.kind} match {args.pattern!r}."
            if args.pattern
            else f"No {args.kind} registered."
        )
        return 0
    problems = [r for r in rows if "error" in r or "conflict" in r]
    rows = [r for r in rows if "error" not in r]
    if kind == "binarizer":
        columns = ("name", "roles", "values", "bits", "learnable", "options", "packed")
        table = [
            (
                r["name"],
                ", ".join(r["roles"]),
                r["value_set"],
                r["bit_width"] or "-",
                "\n".join(r["learnable"]) or "-",
                _text(r["options"], "\n"),
                "yes" if r["packable"] else "no",
            )
            for r in rows
        ]
    elif kind == "bconfig":
        columns = ("name", "input", "weight", "output", "provider")
        table = [(r["name"], *(_field(r["fields"], s) for s in SLOTS), r["provider"]) for r in rows]
    elif kind == "layer":
        columns = ("name", "float layer", "binary layer", "provider")
        table = [(r["name"], r["float_layer"], r["binary_layer"], r["provider"]) for r in rows]
    elif kind == "lowering":
        columns = ("module type", "lowering", "provider")
        table = [(r["module_type"], r["lowering"], r["provider"]) for r in rows]
    else:
        columns = ("name", "options", "description", "provider")
        table = [(r["name"], _text(r["options"]), _summary(r), r["provider"]) for r in rows]
    print_table(None, columns, table)
    for row in problems:
        if "conflict" in row:
            providers = " and ".join(row["conflict"])
            print(f"CONFLICT: {row['name']!r} is registered by {providers}; using it is an error")
        if "error" in row:
            print(f"BROKEN: {row['error']}")
    return 0
