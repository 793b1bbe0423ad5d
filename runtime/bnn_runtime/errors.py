"""Errors of the packed runtime: a file it cannot read, an input it cannot run, a forced
kernel path it does not know or cannot run here.

All derive from :class:`BnnRuntimeError`, the runtime's own base class (the runtime
depends on nothing but NumPy); the ``bnn`` command line prints it as one paragraph and
exits with status 2, as it does for the errors of ``bnn_core``.
"""

from __future__ import annotations


class BnnRuntimeError(Exception):
    """Base class of the errors the runtime raises for bad input: a file, an array or a
    setting (``BNN_RUNTIME_ISA``) it cannot use."""


class RuntimeFormatError(BnnRuntimeError, ValueError):
    """A ``.bnnpack`` file is not one, is truncated or corrupted, has another format
    version, or describes a graph this runtime cannot execute."""


class RuntimeInputError(BnnRuntimeError, ValueError):
    """An input array does not fit the network (rank, channels or dtype)."""


class UnknownPathError(BnnRuntimeError, ValueError):
    """``BNN_RUNTIME_ISA`` names no kernel path."""


class UnsupportedPathError(BnnRuntimeError, RuntimeError):
    """``BNN_RUNTIME_ISA`` forces a kernel path this CPU or build cannot run."""
