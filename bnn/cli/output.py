"""Terminal output of the CLI: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any


def console() -> Any:
    """A rich console on stdout, 120 columns wide when not attached to a terminal."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120, highlight=False)


def print_table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = ""
) -> None:
    """Print ``rows`` as a table with a header of ``columns``; the first column (the
    names users copy) is never folded, the others fold where the terminal is narrow."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, caption=caption or None, box=box.SIMPLE_HEAD, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, overflow="fold", no_wrap=index == 0)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console().print(table)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
