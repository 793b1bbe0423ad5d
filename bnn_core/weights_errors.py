"""The errors of pretrained weights, one class per way they can be unusable; each is a
:class:`~bnn_core.errors.BnnError`, so the CLI prints it as one paragraph (exit 2)."""

from __future__ import annotations

from bnn_core.errors import BnnError


class WeightsError(BnnError, ValueError):
    """Pretrained weights cannot be used; the subclasses say why."""


class WeightsSourceError(WeightsError):
    """The weights' location is malformed, unreachable, missing or needs a hash."""


class WeightsIntegrityError(WeightsError):
    """The weights' SHA-256 is not the one given for them."""


class WeightsFormatError(WeightsError):
    """The file is not a weights file, holds more than tensors, or is too large."""


class WeightsMismatchError(WeightsError):
    """The weights do not fit the model's architecture."""
