"""Where a run's settings come from, under its earlier import path: the layering lives in
:mod:`bnn.recipe.layering`, below the trainer."""

from bnn.recipe.layering import ENV_KEYS, env_file, env_overrides, merge, nested, parse_set

__all__ = ["ENV_KEYS", "env_file", "env_overrides", "merge", "nested", "parse_set"]
