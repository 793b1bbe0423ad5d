"""The on-disk layout of webdataset shards that ``bnn data shard`` writes and the
``webdataset`` data sets read: shard file names from a printf-style pattern, and the
``shards.json`` index of their sizes, which lets readers know their length.

It lives in the framework so that the writer (in the app) and the reader (in the data
set plugin) share one definition without importing each other.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from bnn_core.errors import ConfigError

log = logging.getLogger(__name__)

#: The file, next to the shards, where ``bnn data shard`` records their sizes.
INDEX_FILE = "shards.json"
INDEX_FORMAT = "bnn-shard-index/1"


def check_pattern(pattern: str) -> None:
    """An output pattern must hold one printf-style number field, such as ``%06d``."""
    try:
        first, second = pattern % 0, pattern % 1
    except (TypeError, ValueError):
        first = second = None
    if first is None or first == second:
        raise ConfigError(
            f"the output pattern {pattern!r} needs one number field for the shard index, "
            "for example shards/train-%06d.tar"
        )


def brace_pattern(pattern: str, count: int) -> str:
    """The webdataset brace pattern naming ``count`` shards written with ``pattern``
    (``out/train-%06d.tar``, 3 -> ``out/train-{000000..000002}.tar``)."""
    match = re.search(r"%0?(\d*)d", pattern)
    if match is None or count < 2:
        return pattern % 0 if count == 1 else pattern
    width = int(match.group(1) or 0)
    span = f"{{{0:0{width}d}..{count - 1:0{width}d}}}"
    return pattern[: match.start()] + span + pattern[match.end() :]


def read_index(folder: Path) -> dict[str, dict[str, int]]:
    """The shard index of ``folder`` (``{shard name: {samples, bytes}}``), empty if none."""
    index = folder / INDEX_FILE
    if not index.is_file():
        return {}
    try:
        content = json.loads(index.read_text(encoding="utf-8"))
        if content.get("format") != INDEX_FORMAT:
            raise ValueError(f"format is not {INDEX_FORMAT}")
        return dict(content["shards"])
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        log.warning("ignoring the shard index %s: %s", index, exc)
        return {}


def record_sizes(written: list[tuple[Path, int]]) -> None:
    """Add the shards' sample counts and byte sizes to ``shards.json`` in their folders
    (written atomically, other entries kept)."""
    for folder in {path.parent for path, _ in written}:
        shards = read_index(folder)
        for path, count in written:
            if path.parent == folder:
                shards[path.name] = {"samples": count, "bytes": path.stat().st_size}
        index = folder / INDEX_FILE
        temporary = index.with_name(f".{INDEX_FILE}.{os.getpid()}")
        content: dict[str, Any] = {"format": INDEX_FORMAT, "shards": dict(sorted(shards.items()))}
        temporary.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        temporary.replace(index)
