"""Optimizer helpers for binary networks, in plain PyTorch (no trainer needed).

* :func:`param_groups` splits a model's parameters into latent binary weights,
  binarizer parameters and the rest, as optimizer param groups with per-group settings
  (no weight decay on latent binary weights by default);
* :class:`Bop` is the latent-free binary optimizer of Helwegen et al. (2019), usually
  given the binary-weight group while another optimizer trains the rest;
* :class:`HyperparameterScheduler` changes any per-group value (Bop's ``gamma`` and
  ``threshold``) over training, as ``torch.optim.lr_scheduler.LambdaLR`` does for ``lr``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from bnn.latent import binarizer_parameters, binary_weights

BINARY_WEIGHTS = "binary_weights"
BINARIZERS = "binarizers"
OTHERS = "others"
GROUPS = (BINARY_WEIGHTS, BINARIZERS, OTHERS)

#: Settings each group gets unless the call overrides them. Latent binary weights take no
#: weight decay (it pulls them to 0, where their sign flips at random); learned scales and
#: thresholds take none either (decay shrinks a scale towards 0, and thresholds are biases).
GROUP_DEFAULTS: dict[str, dict[str, Any]] = {
    BINARY_WEIGHTS: {"weight_decay": 0.0},
    BINARIZERS: {"weight_decay": 0.0},
    OTHERS: {},
}


def _check_group_names(names: Iterable[str], where: str) -> None:
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        raise ValueError(f"{where}: unknown group {unknown[0]!r}; the groups are {list(GROUPS)}")


def param_groups(
    model: nn.Module,
    *,
    include: Iterable[str] = GROUPS,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    **settings: Any,
) -> list[dict[str, Any]]:
    """Optimizer param groups of ``model``: every parameter exactly once, in one of

    * ``"binary_weights"``: the latent weights of binary layers whose weight binarizer
      binarizes (see :mod:`bnn.latent`);
    * ``"binarizers"``: parameters inside the binarizers of binary layers;
    * ``"others"``: everything else (float layers, biases, batch norm, blocks, ...).

    Each group is ``{"name": ..., "params": [...], **settings}``; ``settings`` (``lr``,
    ``weight_decay``, ...) apply to every group, then :data:`GROUP_DEFAULTS`, then
    ``overrides[group]``. ``include`` keeps only the named groups, so two optimizers can
    share a model; empty groups are left out. Usable directly::

        torch.optim.Adam(param_groups(model, lr=1e-3, weight_decay=5e-4))
    """
    include = tuple(include)
    overrides = dict(overrides or {})
    _check_group_names(include, "include")
    _check_group_names(overrides, "overrides")
    binary = {id(p) for p in binary_weights(model).values()}
    binarizer = {id(p) for p in binarizer_parameters(model).values()} - binary
    members: dict[str, list[nn.Parameter]] = {group: [] for group in GROUPS}
    for parameter in model.parameters():
        key = id(parameter)
        group = BINARY_WEIGHTS if key in binary else BINARIZERS if key in binarizer else OTHERS
        members[group].append(parameter)
    return [
        {
            "name": group,
            "params": members[group],
            **settings,
            **GROUP_DEFAULTS[group],
            **overrides.get(group, {}),
        }
        for group in GROUPS
        if group in include and members[group]
    ]


def _sign(x: torch.Tensor) -> torch.Tensor:
    """+1 for ``x >= 0``, -1 otherwise (the library's sign convention)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class Bop(Optimizer):
    """Bop, the binary optimizer: flips binary weights instead of updating latent ones.

    Helwegen et al., "Latent Weights Do Not Exist: Rethinking Binarized Neural Network
    Optimization", NeurIPS 2019. For each weight ``w`` in {-1, +1} it keeps an exponential
    moving average of the gradient, ``m = (1 - gamma) * m + gamma * g``, and flips
    ``w -> -w`` when ``|m| > threshold`` and ``sign(m) == sign(w)``: the gradient has
    consistently pushed against the current sign for long enough (``gamma`` sets how
    long the memory is, ``threshold`` how strong the push must be).

    The parameters it is given hold the binary weights themselves: after every step each
    holds exactly -1 or +1 (a float value is taken as its sign, +1 for 0, at its first
    step). Give it only latent binary weights (``param_groups(model,
    include=["binary_weights"])``) and train the other parameters with another optimizer;
    the weight binarizer must pass the gradient at ±1 (``ste_sign``, ``xnor_weight``: yes).

    ``gamma`` and ``threshold`` live in each param group, so they can differ per group and
    change during training: set ``group["gamma"]`` yourself or use
    :class:`HyperparameterScheduler`. State per weight: ``m`` (saved in ``state_dict``).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        gamma: float = 1e-4,
        threshold: float = 1e-8,
    ) -> None:
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"Bop: gamma must be in (0, 1], got {gamma}")
        if threshold < 0.0:
            raise ValueError(f"Bop: threshold must be >= 0, got {threshold}")
        super().__init__(params, {"gamma": gamma, "threshold": threshold})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update the gradient averages and flip the weights the rule selects."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            gamma, threshold = group["gamma"], group["threshold"]
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                if weight.grad.is_sparse:
                    raise RuntimeError("Bop does not support sparse gradients")
                state = self.state[weight]
                if "m" not in state:
                    state["m"] = torch.zeros_like(weight, memory_format=torch.preserve_format)
                m = state["m"]
                m.lerp_(weight.grad, gamma)
                sign = _sign(weight)
                weight.copy_(torch.where(m * sign > threshold, -sign, sign))
        return loss


class HyperparameterScheduler:
    """Set ``group[key] = initial * factor(step)`` in every param group of ``optimizer``.

    ``torch.optim.lr_scheduler`` classes only change ``lr``; this does the same for any
    per-group value, such as Bop's ``gamma`` (the paper decays it stepwise) or
    ``threshold``. Call :meth:`step` once per epoch or iteration, after
    ``optimizer.step()``; the initial values are kept in ``group["initial_<key>"]``, so a
    resumed optimizer scales from the same base. ``state_dict``/``load_state_dict`` save
    the step count, like torch schedulers::

        scheduler = HyperparameterScheduler(bop, "gamma", lambda epoch: 0.1 ** (epoch // 30))
    """

    def __init__(self, optimizer: Optimizer, key: str, factor: Callable[[int], float]) -> None:
        for index, group in enumerate(optimizer.param_groups):
            if key not in group:
                raise KeyError(f"param group {index} of {type(optimizer).__name__} has no {key!r}")
            group.setdefault(f"initial_{key}", group[key])
        self.optimizer = optimizer
        self.key = key
        self.factor = factor
        self.last_step = 0
        self._apply()

    def step(self) -> None:
        """Advance one step and set the scheduled values."""
        self.last_step += 1
        self._apply()

    def set_step(self, step: int) -> None:
        """Jump to ``step`` and set its values (for a trainer that counts steps itself)."""
        self.last_step = step
        self._apply()

    def _apply(self) -> None:
        scale = self.factor(self.last_step)
        for group in self.optimizer.param_groups:  # groups added later start from their value
            initial = group.setdefault(f"initial_{self.key}", group[self.key])
            group[self.key] = initial * scale

    def state_dict(self) -> dict[str, Any]:
        """The step count and the key (the factor function is code, not state)."""
        return {"key": self.key, "last_step": self.last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` and set the values for the restored step."""
        if state["key"] != self.key:
            raise ValueError(f"state is for {state['key']!r}, this scheduler sets {self.key!r}")
        self.last_step = int(state["last_step"])
        self._apply()
