"""bnn_runtime: the packed CPU runtime for binary networks (NumPy only, no torch).

:mod:`bnn_runtime.kernels` holds the XNOR-popcount convolution and linear kernels over
bit-packed activations and weights (a C library with AVX-512 / AVX2 / portable paths
chosen at run time, docs/runtime-kernels.md); :mod:`bnn_runtime.layers` prepares them
once per layer; :mod:`bnn_runtime.reference` is their NumPy reference.

``load(path)`` (from :mod:`bnn_runtime.executor`, imported on first use) reads a
``.bnnpack`` file written by ``bnn export`` and returns the network, which maps NumPy
arrays to NumPy arrays (docs/deploy.md).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "load":
        from bnn_runtime.executor import load

        return load
    raise AttributeError(f"module 'bnn_runtime' has no attribute {name!r}")
