"""Errors of the packed runtime: a file it cannot read, an input it cannot run, a forced
kernel path it does not know or cannot run here.

All derive from :class:`bnn_core.errors.BnnError` (a torch-free module), so the ``bnn``
command line prints them as one paragraph and exits with status 2.
"""

from __future__ import annotations

from bnn_core.errors import BnnError


class RuntimeFormatError(BnnError, ValueError):
    """A ``.bnnpack`` file is not one, is truncated or corrupted, has another format
    version, or describes a graph this runtime cannot execute."""


class RuntimeInputError(BnnError, ValueError):
    """An input array does not fit the network (rank, channels or dtype)."""


class UnknownPathError(BnnError, ValueError):
    """``BNN_RUNTIME_ISA`` names no kernel path."""


class UnsupportedPathError(BnnError, RuntimeError):
    """``BNN_RUNTIME_ISA`` forces a kernel path this CPU or build cannot run."""
