"""What a run records: one row per epoch in ``metrics.csv`` and ``metrics.jsonl``,
optional TensorBoard scalars, and ``curves.png`` (loss, accuracy and learning rate),
redrawn at the end of every epoch."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PLOTTED = (
    ("loss", ("train_loss", "eval_loss")),
    ("accuracy", ("train_acc", "eval_acc")),
    ("learning rate", ("lr",)),
)


class MetricsLog:
    """Appends epoch records to CSV and JSON lines (and TensorBoard when asked and
    installed); ``history`` holds every record of the run, also across a resume."""

    def __init__(
        self, folder: Path, tensorboard: bool, history: list[dict[str, Any]] | None = None
    ):
        self.folder = folder
        self.history = list(history or [])
        self.writer = _tensorboard(folder) if tensorboard else None

    def append(self, record: dict[str, Any]) -> None:
        """Record one epoch and rewrite the CSV/JSONL files from the whole history (a
        resumed run thereby drops rows of epochs it repeats)."""
        self.history = [
            r
            for r in self.history
            if (r["stage"], r["epoch"]) != (record["stage"], record["epoch"])
        ]
        self.history.append(record)
        if self.folder is None:
            return
        columns = list(dict.fromkeys(key for row in self.history for key in row))
        with open(self.folder / "metrics.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(self.history)
        with open(self.folder / "metrics.jsonl", "w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in self.history)
        if self.writer is not None:
            step = len(self.history)
            for key, value in record.items():
                if isinstance(value, int | float) and key not in {"epoch"}:
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def plot(self) -> Path | None:
        """Draw loss, accuracy and learning rate per epoch into ``curves.png``."""
        if self.folder is None:
            return None
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        figure, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.4))
        x = list(range(1, len(self.history) + 1))
        for axis, (title, keys) in zip(axes, PLOTTED, strict=True):
            for key in keys:
                values = [row.get(key) for row in self.history]
                points = [(i, v) for i, v in zip(x, values, strict=True) if v is not None]
                if points:
                    axis.plot(*zip(*points, strict=True), marker="o", label=key)
            axis.set_title(title)
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
            if title != "learning rate":
                axis.legend()
        for boundary in _stage_boundaries(self.history):
            for axis in axes:
                axis.axvline(boundary + 0.5, color="grey", linestyle=":")
        figure.tight_layout()
        path = self.folder / "curves.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self.writer is not None:
            self.writer.close()


def _stage_boundaries(history: list[dict[str, Any]]) -> list[int]:
    return [i for i in range(1, len(history)) if history[i]["stage"] != history[i - 1]["stage"]]


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed; scalars go to metrics.csv only")
        return None
    return SummaryWriter(str(folder / "tensorboard"))
