"""Helpers of the export and runtime tests: models with non-trivial folded values, and
the agreement check between the packed runtime and the fake-binarized model.

Tolerance: logits agree within 1e-4 x (1 + the largest logit magnitude) and the
predicted classes are identical. The float parts run in NumPy instead of PyTorch, so
sums round differently (relative differences around 1e-6), and the runtime computes
each binary dot product exactly while the fake-binarized model sums ``+-alpha`` terms
in float. Where a binary layer's input lands within that rounding of its threshold,
the two may take different signs, and one flipped sign, carried through the next
binary layers, moves the logits far more than the tolerance. It needs a value within
about 1e-7 of a threshold: fresh models with default batch norms (a zero dot product
into a batch norm without shift sits exactly on it) make it common, which
:func:`randomise` avoids by giving every batch norm and shift non-trivial values, as
training does; random builds then hit it rarely (one ReActNet ResNet-18 build in about
forty at 48x48), so the tests seed their models (see their ``seeded`` fixtures).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bnn_core.layers import is_binary_layer

RELATIVE_TOLERANCE = 1e-4


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give batch norms, RSign shifts, RPReLU and learned scales non-trivial values, so
    that every fold is exercised (fresh modules hold zeros and ones)."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(tensor: torch.Tensor, low: float, high: float) -> None:
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                uniform(module.running_mean, -0.3, 0.3)
                uniform(module.running_var, 0.5, 2.0)
                uniform(module.weight, -1.5, 1.5)
                uniform(module.bias, -0.3, 0.3)
            for name, parameter in module.named_parameters(recurse=False):
                if name in ("shift_in", "shift_out"):
                    uniform(parameter, -0.2, 0.2)
                elif name == "alpha":
                    uniform(parameter, 0.5, 1.5)
            if is_binary_layer(module) and hasattr(module.activation_pre_process, "bias"):
                uniform(module.activation_pre_process.bias, -0.3, 0.3)
    return model.eval()


def assert_agree(expected: np.ndarray, got: np.ndarray, tolerance: float = RELATIVE_TOLERANCE):
    """The runtime's logits ``got`` agree with the model's ``expected`` (see above)."""
    assert got.shape == expected.shape and got.dtype == np.float32
    scale = 1.0 + float(np.abs(expected).max())
    assert float(np.abs(got - expected).max()) <= tolerance * scale
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
