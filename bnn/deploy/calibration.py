"""Calibration samples for int8 quantization: taken evenly from the training split of a
recipe's dataset, for the int8 export (``bnn export --calibrate``) and for the int8 peers
of ``bnn bench --calibrate`` alike, so that neither ever sees the test split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bnn_core.errors import ConfigError


def recipe_samples(
    recipe: Path, input_shape: Sequence[int], count: int, batch: int
) -> tuple[list[np.ndarray], str]:
    """``count`` samples spread evenly over ``recipe``'s training split (repeated when the
    split is smaller), stacked in batches of ``batch``, and a sentence saying which. A recipe
    without data, an empty split or samples of another shape than ``input_shape`` is a
    :class:`~bnn_core.errors.ConfigError`."""
    from bnn.recipe import prepare_recipe

    loaded, _ = prepare_recipe(recipe)
    if loaded.data is None:
        raise ConfigError(f"--calibrate {recipe}: the recipe has no 'data' section to calibrate on")
    spec = loaded.data.dataset
    data = spec.build(split="train")
    if len(data) == 0:
        raise ConfigError(f"--calibrate {recipe}: the training split of {spec.name} is empty")
    indices = [
        i * len(data) // count if count <= len(data) else i % len(data) for i in range(count)
    ]
    samples = [np.asarray(data[i][0], dtype=np.float32) for i in indices]
    if samples[0].shape != tuple(input_shape):
        raise ConfigError(
            f"--calibrate {recipe}: the samples of {spec.name} have shape "
            f"{list(samples[0].shape)}, the model takes {list(input_shape)}; give a recipe "
            "whose dataset fits the model, or --input-shape"
        )
    batches = [np.stack(samples[i : i + batch]) for i in range(0, count, batch)]
    return batches, f"{count} images of {spec.name} (training split of {recipe})"
