"""``bnn list-plugins``: what is installed, who registered what, and what is broken."""

from __future__ import annotations

import argparse

from bnn.cli.output import print_json, print_table
from bnn_core.errors import plural


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON (all plugins, built-ins included)"
    )
    parser.add_argument("--all", action="store_true", help="also show the built-in plugins")


def _abbreviate(names: list[str], limit: int = 12) -> str:
    """Names for the table: a namespace (``torchvision/...``) as one ``prefix/* (count)``
    item, and at most ``limit`` items (``--json`` has them all)."""
    plain = [n for n in names if "/" not in n]
    groups: dict[str, int] = {}
    for name in names:
        if "/" in name:
            prefix = name.split("/", 1)[0]
            groups[prefix] = groups.get(prefix, 0) + 1
    items = plain + [f"{prefix}/* ({count})" for prefix, count in groups.items()]
    if len(items) > limit:
        items = [*items[:limit], f"... {len(items) - limit} more"]
    return ", ".join(items)


def run(name: str, args: argparse.Namespace) -> int:
    from bnn_core.plugins import plugin_infos
    from bnn_core.registries import REGISTRIES

    infos = plugin_infos()
    conflicts = {kind: r.conflicts() for kind, r in REGISTRIES.items()}
    if args.json:
        print_json(
            {
                "plugins": [i.to_dict() for i in infos],
                "conflicts": {
                    kind: {n: [e.provider for e in entries] for n, entries in found.items()}
                    for kind, found in conflicts.items()
                    if found
                },
            }
        )
        return 0
    shown = [i for i in infos if args.all or not i.builtin]
    rows = [
        (
            i.name,
            i.distribution or "-",
            i.version or "-",
            i.module,
            "\n".join(
                f"{plural(kind)}: {_abbreviate(names)}" for kind, names in i.registered.items()
            )
            or "-",
            i.status if i.status != "broken" else f"BROKEN: {i.error}",
        )
        for i in shown
    ]
    hidden = [i.name for i in infos if i.builtin and not args.all]
    caption = (
        f"{len(hidden)} built-in plugins hidden ({', '.join(hidden)}); use --all" if hidden else ""
    )
    if rows:
        columns = ("plugin", "distribution", "version", "module", "registered", "status")
        print_table(None, columns, rows, caption)
    else:
        print(f"No third-party plugins installed. {caption}.")
    for kind, found in conflicts.items():
        for conflict_name, entries in found.items():
            providers = " and ".join(e.provider for e in entries)
            print(f"CONFLICT: {kind} {conflict_name!r} is registered by {providers}")
    broken = [i for i in infos if i.status == "broken" and i not in shown]
    for info in broken:
        print(f"BROKEN: built-in plugin {info.name}: {info.error}")
    return 0
