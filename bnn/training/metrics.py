"""The training metrics a recipe names in ``training.metrics``, and the protocol they
follow.

A metric accumulates sums over an epoch and turns them into record fields at its end,
so that data-parallel processes add their sums before the fields are computed:

* ``start(context)`` (optional) is called when a stage starts, after a resumed run's
  weights are loaded;
* ``update(context)`` is called after every training batch (and after the optimizer step
  that batch completes, if any) and returns the batch's contributions to the sums, a
  mapping of names to numbers, the same names on every batch and every process; prefix
  them with the metric's name;
* ``result(totals)`` receives every sum of the epoch, added over batches and processes,
  including the trainer's own ``count`` (training samples) and ``loss_sum``, and returns
  the fields it adds to the epoch's record (``metrics.csv``, ``metrics.jsonl``).

Sums are saved in checkpoints, so a run resumed in the middle of an epoch reports the
epoch as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import Field

from bnn.metrics import FlipRatio as FlipCounter
from bnn.training.context import TrainingContext


class Metric:
    """Base class of training metrics: override :meth:`update` and :meth:`result`."""

    def start(self, context: TrainingContext) -> None:
        """Called when a stage starts; nothing by default."""

    def update(self, context: TrainingContext) -> Mapping[str, float]:
        """The last batch's contributions to the epoch's sums."""
        return {}

    def result(self, totals: Mapping[str, float]) -> dict[str, float]:
        """The record fields from the epoch's sums."""
        raise NotImplementedError


class Accuracy(Metric):
    """Top-1 accuracy on the training batches (``train_acc``)."""

    def update(self, context: TrainingContext) -> Mapping[str, float]:
        """Samples whose largest logit is their label."""
        assert context.logits is not None and context.targets is not None
        return {"correct": float((context.logits.detach().argmax(1) == context.targets).sum())}

    def result(self, totals: Mapping[str, float]) -> dict[str, float]:
        """``train_acc``: the share of training samples classified right."""
        return {"train_acc": totals["correct"] / max(totals["count"], 1)}


class TopK(Metric):
    """Top-k accuracy on the training batches (``train_top5`` for ``k`` = 5): a sample
    counts when its label is among its ``k`` largest logits."""

    def __init__(self, k: Annotated[int, Field(ge=1, le=1000)] = 5) -> None:
        self.k = k

    def update(self, context: TrainingContext) -> Mapping[str, float]:
        """Samples whose label is among their ``k`` largest logits."""
        assert context.logits is not None and context.targets is not None
        logits = context.logits.detach()
        best = logits.topk(min(self.k, logits.shape[1]), dim=1).indices
        return {f"top{self.k}.correct": float((best == context.targets[:, None]).sum())}

    def result(self, totals: Mapping[str, float]) -> dict[str, float]:
        """``train_top<k>``: the share of training samples with their label in the top k."""
        return {f"train_top{self.k}": totals[f"top{self.k}.correct"] / max(totals["count"], 1)}


class FlipRatio(Metric):
    """``flip_ratio``: the share of binary weights whose sign an optimizer step changed,
    averaged over the epoch's steps (see :class:`bnn.metrics.FlipRatio`). High early in
    training, it should fall as the network settles."""

    counter: FlipCounter

    def start(self, context: TrainingContext) -> None:
        """Take the first snapshot of the signs."""
        self.counter = FlipCounter(context.model)

    def update(self, context: TrainingContext) -> Mapping[str, float]:
        """The flipped share of this batch's step (nothing when it did not step)."""
        if not context.stepped:
            return {"flip_ratio.sum": 0.0, "flip_ratio.steps": 0.0}
        return {"flip_ratio.sum": self.counter.update(), "flip_ratio.steps": 1.0}

    def result(self, totals: Mapping[str, float]) -> dict[str, float]:
        """The mean flipped share per step."""
        return {"flip_ratio": totals["flip_ratio.sum"] / max(totals["flip_ratio.steps"], 1)}
