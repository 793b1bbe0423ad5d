"""YAML written by users, read with the checks every reader of it needs.

``yaml.safe_load`` builds no objects from tags, but it still keeps the last of two
equal keys silently and expands aliases without limit: a few hundred bytes of nested
aliases ("billion laughs") stand for billions of values, which everything that walks
the result afterwards (validation, copies) has to visit. The loader here refuses
duplicate keys, recursive aliases and documents whose expansion exceeds
:data:`MAX_EXPANDED_NODES`, and reports every failure as a one-paragraph ConfigError.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

from bnn_core.errors import ConfigError

#: Values a document may stand for once its aliases are expanded; configs have hundreds.
MAX_EXPANDED_NODES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys and alias bombs."""

    def construct_document(self, node: Node) -> Any:
        """Check the size of the expanded document before building any value of it."""
        _check_expansion(node)
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping whose keys are all different (merge keys ``<<`` may be overridden)."""
        if isinstance(node, MappingNode):
            first_seen: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first_seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if earlier is not key_node:
                    raise ConstructorError(
                        problem=f"duplicate key {key!r} (first given at line "
                        f"{earlier.start_mark.line + 1}); each key may appear once",
                        problem_mark=key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _check_expansion(root: Node) -> None:
    """Count the values ``root`` expands to (an alias counts as a full copy of its
    anchor), without expanding it: each distinct node is visited once."""
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            ancestors.discard(key)
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > MAX_EXPANDED_NODES:
                raise ConstructorError(
                    problem=f"its aliases expand to more than {MAX_EXPANDED_NODES:,} values, "
                    "far more than any config needs (an alias bomb?)",
                    problem_mark=node.start_mark,
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in ancestors:
            raise ConstructorError(
                problem="an alias refers to a value that contains it (a recursive alias)",
                problem_mark=node.start_mark,
            )
        ancestors.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def load_text(text: str, source: str) -> Any:
    """Parse ``text`` (one YAML document) with :class:`StrictSafeLoader`; ``source``
    names it in the ConfigError raised for any problem (a file name, ``--set key``)."""
    try:
        return yaml.load(text, Loader=StrictSafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source} is not valid YAML: its values are nested too deeply") from None
