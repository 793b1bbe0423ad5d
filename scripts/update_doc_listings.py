"""Regenerate the command listings of the docs by running the real ``bnn`` command.

A listing is a fenced block right after a line ``<!-- bnn-listing: SETUP -->``. Its lines
starting with ``$ `` are shell commands and the lines after each command are that
command's output (stdout and stderr together), which this script rewrites. The commands
of one block run in one ``bash``, in a scratch folder holding every block of the same
doc marked ``<!-- file: PATH -->`` (a config the commands read, say), with ``bnn`` from
this interpreter's environment and SETUP's plugins installed:

* ``builtin``: bnn's own plugins only;
* ``example``: plus the example plugin of ``plugins/bnn-example-plugin``;
* ``conflict``: plus ``bnn-broken-plugin``, whose ``plugin.py`` imports a missing module,
  and ``bnn-other-plugin``, which registers the example's binarizer name again.

Installed means a ``.dist-info`` folder with the entry point, as pip writes it, in a
folder on ``PYTHONPATH``, rebuilt under ``/tmp/bnn-docs`` on every run (a fixed path,
since a broken plugin's listing shows where it failed). The JSON of
``bnn list-plugins --json`` keeps only the third-party plugins, built-ins elided as
``...``.

Usage: ``python scripts/update_doc_listings.py`` rewrites the docs;
``python scripts/update_doc_listings.py --check`` only reports the listings that differ
from what the commands print now (exit status 1).
"""

from __future__ import annotations

import argparse
import difflib
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
EXAMPLE_PLUGIN = ROOT / "plugins" / "bnn-example-plugin"
SCRATCH = Path("/tmp/bnn-docs")
SEPARATOR = "--- bnn-listing output ends ---"
SETUPS = ("builtin", "example", "conflict")
PLUGIN_SWITCHES = (
    "BNN_PLUGINS",
    "BNN_DISABLED_PLUGINS",
    "BNN_DISABLE_PLUGIN_AUTOLOAD",
    "BNN_STRICT_PLUGINS",
)
MARKER = re.compile(r"<!-- (?P<key>[\w-]+):? ?(?P<value>[^>]*?) -->")
FENCE = re.compile(r"```(?P<language>[\w-]*)[^`]*")

BROKEN_PLUGIN = "import some_missing_dependency\n"
OTHER_PLUGIN = """from bnn_core import hookimpl


@hookimpl
def bnn_register_binarizers(register):
    register("example_swish_sign", "bnn_other_plugin.binarizers:OtherSwishSign")
"""


@dataclass
class Block:
    """A fenced block of a Markdown file: ``lines[start]`` is its opening fence and
    ``lines[end]`` its closing one; ``marker`` is the HTML comment on the line before it
    (``("file", "my_plugin/plugin.py")``, ``("bnn-listing", "example")``, ``("excerpt",
    "")``) or ``None``."""

    language: str
    start: int
    end: int
    body: list[str]
    marker: tuple[str, str] | None


def fenced_blocks(lines: list[str]) -> list[Block]:
    """Every fenced block of a Markdown file's ``lines``, with the marker before it."""
    blocks = []
    index = 0
    while index < len(lines):
        opening = FENCE.fullmatch(lines[index])
        if not opening:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i] == "```")
        marker = MARKER.fullmatch(lines[index - 1]) if index else None
        blocks.append(
            Block(
                opening["language"],
                index,
                end,
                lines[index + 1 : end],
                (marker["key"], marker["value"]) if marker else None,
            )
        )
        index = end + 1
    return blocks


def _write_distribution(site: Path, name: str, version: str, module: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[bnn_core.plugins]\n{name} = {module}\n")


def _write_package(site: Path, module: str, code: str) -> None:
    path = site / (module.replace(".", "/") + ".py")
    for package in list(path.parents)[: module.count(".")]:
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").touch()
    path.write_text(code)


def _example_version() -> str:
    text = (EXAMPLE_PLUGIN / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', text, re.MULTILINE)
    assert match, "plugins/bnn-example-plugin/pyproject.toml has no version"
    return match[1]


def build_setups(root: Path) -> dict[str, dict[str, str]]:
    """Create each setup's site folder under ``root`` and return the environment that
    makes its plugins visible."""
    environments = {}
    for setup in SETUPS:
        site = root / setup / "site-packages"
        site.mkdir(parents=True)
        paths = [str(site)]
        if setup != "builtin":
            example = "bnn_example_plugin.plugin"
            _write_distribution(site, "bnn-example-plugin", _example_version(), example)
            paths.append(str(EXAMPLE_PLUGIN))
        if setup == "conflict":
            _write_distribution(site, "bnn-broken-plugin", "0.0.1", "bnn_broken_plugin.plugin")
            _write_package(site, "bnn_broken_plugin.plugin", BROKEN_PLUGIN)
            _write_distribution(site, "bnn-other-plugin", "0.0.1", "bnn_other_plugin.plugin")
            _write_package(site, "bnn_other_plugin.plugin", OTHER_PLUGIN)
        environments[setup] = {"PYTHONPATH": os.pathsep.join(paths)}
    return environments


def _environment(extra: dict[str, str]) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if k not in PLUGIN_SWITCHES and k not in {"FORCE_COLOR", "PYTHONPATH", "COLUMNS"}
    }
    path = os.pathsep.join([str(Path(sys.executable).parent), keep.get("PATH", "")])
    return {**keep, **extra, "PATH": path, "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1"}


def _elide_builtins(output: str) -> str:
    """``bnn list-plugins --json`` with the built-in plugins' entries replaced by ``...``."""
    data = json.loads(output)
    marker = "__builtin_plugins_elided__"
    plugins = [p for p in data["plugins"] if not p["builtin"]]
    data["plugins"] = [marker, *plugins] if len(plugins) < len(data["plugins"]) else plugins
    text = json.dumps(data, indent=2)
    return text.replace(f'"{marker}",', "...").replace(f'"{marker}"', "...") + "\n"


def _commands(block: Block) -> list[str]:
    return [line[2:] for line in block.body if line.startswith("$ ")]


def run_block(block: Block, cwd: Path, environment: dict[str, str]) -> list[str]:
    """The block's commands, each followed by what it prints now."""
    commands = _commands(block)
    script = "".join(
        f"{command} 2>&1\nstatus=$?; echo {shlex.quote(SEPARATOR)}; (exit $status)\n"
        for command in commands
    )
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=_environment(environment),
        capture_output=True,
        text=True,
        timeout=300,
    )
    outputs = result.stdout.split(SEPARATOR + "\n")
    if len(outputs) != len(commands) + 1:
        raise RuntimeError(f"the commands {commands} did not all run: {result.stderr}")
    lines = []
    for command, output in zip(commands, outputs[:-1], strict=True):
        if "list-plugins" in command and "--json" in command:
            output = _elide_builtins(output)
        lines.append(f"$ {command}")
        output_lines = [line.rstrip() for line in output.split("\n")]
        while output_lines and not output_lines[-1]:
            output_lines.pop()
        lines += output_lines
    return lines


@dataclass
class Listing:
    """One marked block and what its commands print now."""

    path: Path
    block: Block
    current: list[str]

    @property
    def stale(self) -> bool:
        """Whether the doc shows something else than the commands print now."""
        return self.block.body != self.current

    def diff(self) -> str:
        """A unified diff from the doc's text to the commands' output."""
        where = f"{os.path.relpath(self.path, ROOT)}:{self.block.start + 1}"
        lines = difflib.unified_diff(
            self.block.body, self.current, f"{where} (doc)", f"{where} (now)", lineterm=""
        )
        return "\n".join(lines)


@contextmanager
def _scratch() -> Iterator[Path]:
    """The scratch folder, rebuilt and held under a lock (two runs at once share it)."""
    SCRATCH.parent.mkdir(parents=True, exist_ok=True)
    with open(SCRATCH.parent / "bnn-docs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(SCRATCH, ignore_errors=True)
        SCRATCH.mkdir()
        try:
            yield SCRATCH
        finally:
            shutil.rmtree(SCRATCH, ignore_errors=True)


def collect_listings(documents: tuple[Path, ...] = DOCUMENTS) -> list[Listing]:
    """Run every marked listing of ``documents`` and pair it with its current output."""
    marked = []
    for path in documents:
        blocks = fenced_blocks(path.read_text().split("\n"))
        files = {b.marker[1]: b.body for b in blocks if b.marker and b.marker[0] == "file"}
        for block in blocks:
            if block.marker and block.marker[0] == "bnn-listing":
                if block.marker[1] not in SETUPS:
                    raise ValueError(f"{path}:{block.start}: unknown setup {block.marker[1]!r}")
                marked.append((path, block, files))
    if not marked:
        return []
    with _scratch() as root:
        environments = build_setups(root)
        jobs = []
        for number, (_, block, files) in enumerate(marked):
            cwd = root / f"block{number}"
            for name, body in files.items():
                (cwd / name).parent.mkdir(parents=True, exist_ok=True)
                (cwd / name).write_text("\n".join(body) + "\n")
            cwd.mkdir(exist_ok=True)
            jobs.append((block, cwd, environments[block.marker[1]]))
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            outputs = list(pool.map(lambda job: run_block(*job), jobs))
    return [Listing(p, b, out) for (p, b, _), out in zip(marked, outputs, strict=True)]


def rewrite(listings: list[Listing]) -> list[Path]:
    """Write the current output into the docs; return the files changed."""
    changed = []
    for path in dict.fromkeys(listing.path for listing in listings):
        lines = path.read_text().split("\n")
        stale = [x for x in listings if x.path == path and x.stale]
        for listing in sorted(stale, key=lambda x: x.block.start, reverse=True):
            lines[listing.block.start + 1 : listing.block.end] = listing.current
        if stale:
            path.write_text("\n".join(lines))
            changed.append(path)
    return changed


def main() -> int:
    """Rewrite the listings, or with ``--check`` report the stale ones."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report, do not rewrite")
    args = parser.parse_args()
    listings = collect_listings()
    if args.check:
        stale = [listing for listing in listings if listing.stale]
        for listing in stale:
            print(listing.diff())
        print(f"{len(stale)} of {len(listings)} listings out of date")
        return 1 if stale else 0
    for path in rewrite(listings):
        print(f"updated {os.path.relpath(path, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
