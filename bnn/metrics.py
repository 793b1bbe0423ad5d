"""Training metrics specific to binary networks.

:class:`FlipRatio` measures how many binary weights change sign between two points of
training. It is the binary counterpart of an update size: high early in training, it
should fall as the network settles, and a ratio stuck near 0 (weights clipped or
decayed to a dead range) or staying high (too large a learning rate or Bop ``gamma``)
points at a problem.
"""

from __future__ import annotations

import torch
from torch import nn

from bnn.latent import binary_weights


def _signs(weight: torch.Tensor) -> torch.Tensor:
    """``weight >= 0`` as a bool tensor: the library's sign, +1 for 0."""
    return weight.detach() >= 0


class FlipRatio:
    """The share of binary weights whose sign changed since the previous :meth:`update`.

    Tracks the latent weights of ``model``'s binary layers whose weight binarizer
    binarizes (see :mod:`bnn.latent`), by parameter name. Construction takes the first
    snapshot; each :meth:`update` compares the current signs with the last snapshot,
    returns the flipped share over all tracked weights, records the share of each weight
    tensor in :attr:`per_layer`, and takes a new snapshot. Weights that appear later (a
    model prepared again) count from their first snapshot. Call it after
    ``optimizer.step()``, every step or every epoch. The sign is that of the latent
    weight, +1 for 0, which is the sign of the binarized weight for sign-based weight
    binarizers (``ste_sign``, ``xnor_weight`` without centring); for binarizers that
    centre the weight first it approximates the flips of the binarized weight.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.per_layer: dict[str, float] = {}
        self._snapshot = {name: _signs(w) for name, w in binary_weights(model).items()}

    def update(self) -> float:
        """The flipped share since the last snapshot (0.0 when no weight is tracked)."""
        counts: dict[str, tuple[torch.Tensor, int]] = {}
        snapshot: dict[str, torch.Tensor] = {}
        for name, weight in binary_weights(self.model).items():
            signs = _signs(weight)
            previous = self._snapshot.get(name)
            if previous is not None and previous.shape == signs.shape:
                counts[name] = ((previous != signs).sum(), signs.numel())
            snapshot[name] = signs
        self._snapshot = snapshot
        changed = torch.stack([c for c, _ in counts.values()]).tolist() if counts else []
        sizes = [n for _, n in counts.values()]
        self.per_layer = {
            name: c / n if n else 0.0 for name, c, n in zip(counts, changed, sizes, strict=True)
        }
        total = sum(sizes)
        return sum(changed) / total if total else 0.0
