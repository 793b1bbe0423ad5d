"""Training schedules of the progress-aware binarizers, as plain functions of progress.

Each takes ``step`` of ``total`` (epochs or iterations, as reported to ``on_progress``)
and returns the scheduled value; ``step`` outside ``[0, total]`` is clamped, so a
schedule never runs past its end value. They import nothing heavy and are easy to
plot or test on their own.
"""

from __future__ import annotations

import math


def fraction(step: float, total: float) -> float:
    """``step / total`` clamped to [0, 1]; ``total`` must be positive."""
    if total <= 0:
        raise ValueError(f"total must be positive, got {total}")
    return min(max(step / total, 0.0), 1.0)


def recu_tau(step: float, total: float, start: float = 0.85, end: float = 0.99) -> float:
    """ReCU's quantile ``tau``, growing exponentially from ``start`` to ``end``:
    ``start + (end - start) (e^p - 1) / (e - 1)`` with ``p = step / total``."""
    p = fraction(step, total)
    return start + (end - start) * (math.exp(p) - 1) / (math.e - 1)


def fourier_terms(step: float, total: float, start: int = 9, end: int = 18) -> int:
    """FDA's number of Fourier terms, ``start + int(p (end - start))`` with
    ``p = step / total``: 9 at the start, 18 at the end by default."""
    return start + int(fraction(step, total) * (end - start))


def ede_sharpness(
    step: float, total: float, t_min: float = 0.1, t_max: float = 10.0
) -> tuple[float, float]:
    """IR-Net's error decay estimator parameters ``(t, k)``:
    ``t = t_min 10^(p log10(t_max / t_min))`` with ``p = step / total`` (log-linear from
    ``t_min`` to ``t_max``) and ``k = max(1 / t, 1)``."""
    t = t_min * 10 ** (fraction(step, total) * math.log10(t_max / t_min))
    return t, max(1 / t, 1.0)
