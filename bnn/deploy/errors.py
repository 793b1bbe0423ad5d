"""The error of an export that cannot be done: an unsupported binarizer, layer or
operation. It names the layer (or graph node) and the reason; the CLI prints it as
one paragraph and exits with status 2."""

from __future__ import annotations

from bnn_core.errors import BnnError


class ExportError(BnnError, ValueError):
    """The model cannot be written as a packed network."""
