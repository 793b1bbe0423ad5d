"""Latent-weight clipping: keep the float weights behind binary layers in [-c, c].

Only the sign of a latent binary weight reaches the network, and the straight-through
estimator passes its gradient only while ``|w| <= 1``. A latent weight that drifts far
from 0 takes ever longer to change sign, and past the clip value of the estimator it
stops learning altogether. BinaryConnect and BinaryNet therefore clip the latent weights
to [-1, 1] after every update; Larq's ``weight_clip`` constraint does the same.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from bnn.latent import binary_weights


def clip_latent_weights(model: nn.Module, c: float = 1.0) -> None:
    """Clamp, in place, the latent weights of ``model``'s binary layers whose weight
    binarizer binarizes to [-c, c]; every other parameter is left as it is."""
    if c <= 0:
        raise ValueError(f"the clip value must be positive, got {c}")
    with torch.no_grad():
        for weight in binary_weights(model).values():
            weight.clamp_(-c, c)


def clip_after_step(optimizer: Optimizer, model: nn.Module, c: float = 1.0) -> RemovableHandle:
    """Clip ``model``'s latent binary weights to [-c, c] after every ``optimizer.step()``.

    Registers a step post-hook, so the training loop stays unchanged; the layers are
    looked up at each step. Call ``.remove()`` on the returned handle to stop."""
    if c <= 0:
        raise ValueError(f"the clip value must be positive, got {c}")

    def clip(_optimizer: Optimizer, _args: object, _kwargs: object) -> None:
        clip_latent_weights(model, c)

    return optimizer.register_step_post_hook(clip)
