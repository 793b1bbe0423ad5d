"""The progress hook: how a training loop tells binarizers where training stands.

Binarizers whose behaviour follows a schedule (ReCU's quantile, FDA's number of Fourier
terms, IR-Net's gradient sharpness, ...) implement ``on_progress(step, total)``; the
loop calls :func:`apply_progress` once per epoch (or per iteration).
"""

from __future__ import annotations

from torch import nn


def apply_progress(model: nn.Module, step: float, total: float) -> int:
    """Call ``on_progress(step, total)`` on every submodule that has it; returns how
    many were told. ``step`` runs from 0 to ``total`` (epochs or iterations)."""
    if total <= 0:
        raise ValueError(f"total must be positive, got {total}")
    told = 0
    for module in model.modules():
        hook = getattr(module, "on_progress", None)
        if callable(hook):
            hook(step, total)
            told += 1
        module.__dict__.pop("_weight_cache", None)  # a schedule may change the forward
    return told
