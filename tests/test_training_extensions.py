"""Losses, metrics and callbacks as extension points: a plugin registered in-process
provides one of each, a recipe names them with the built-in ``flip_ratio`` metric and
``bop_gamma`` callback, and a short run on the embedded Fashion-MNIST subset uses them all;
names and options a recipe gets wrong are reported before anything runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from bnn.cli import main
from bnn.training import checkpoint
from bnn.training.callbacks import Callback
from bnn.training.metrics import Metric
from bnn.training.runner import prepare_recipe, train_recipe
from bnn_core import hookimpl, register_plugin

pytestmark = pytest.mark.usefixtures("fresh_plugins")

GAMMA = 1e-3


class ScaledCrossEntropy(nn.Module):
    """Cross-entropy times ``scale``; counts its calls."""

    calls = 0

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ScaledCrossEntropy.calls += 1
        return self.scale * F.cross_entropy(logits, targets)


class MeanConfidence(Metric):
    """The mean largest softmax probability of the training samples."""

    def update(self, context):
        probabilities = context.logits.softmax(1).max(1).values
        return {"confidence.sum": float(probabilities.sum())}

    def result(self, totals):
        return {"train_confidence": totals["confidence.sum"] / totals["count"]}


class GammaRecorder(Callback):
    """Records Bop's gamma as each epoch starts, in the record too, and keeps a count of
    the batches it saw as its state."""

    seen: list[float] = []

    def __init__(self) -> None:
        self.batches = 0

    def on_epoch_start(self, context):
        gammas = [g["gamma"] for o in context.optimizers for g in o.param_groups if "gamma" in g]
        GammaRecorder.seen.append(gammas[0])

    def on_batch_end(self, context):
        self.batches += 1

    def on_epoch_end(self, context):
        context.record["gamma"] = GammaRecorder.seen[-1]

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state):
        self.batches = state["batches"]


class Crash(Callback):
    """Stops the run like a killed process once ``at_step`` optimizer steps are done."""

    at_step = 0

    def on_batch_end(self, context):
        if context.global_step == Crash.at_step and context.stepped:
            raise KeyboardInterrupt


class ExtensionsPlugin:
    """A plugin with the three hooks, as a third party would write it."""

    @hookimpl
    def bnn_register_losses(self, register):
        register("scaled_ce", ScaledCrossEntropy)

    @hookimpl
    def bnn_register_metrics(self, register):
        register("confidence", MeanConfidence)

    @hookimpl
    def bnn_register_callbacks(self, register):
        register("gamma_recorder", GammaRecorder)
        register("crash", Crash)


def recipe(folder: Path, every_steps: int = 0, **training) -> Path:
    """A tiny binary MLP on the embedded Fashion-MNIST subset: 6 batches an epoch, Bop on
    the binary weights, Adam on the rest."""
    data = {
        "version": 1,
        "name": "extensions",
        "model": {"name": "binarynet_mlp", "hidden": [32, 32]},
        "binarize": "default",
        "data": {"dataset": "fashion_mnist", "batch_size": 2000},
        "training": {
            "epochs": 3,
            "optimizers": [
                {"name": "bop", "gamma": GAMMA, "threshold": 1e-6, "groups": "binary_weights"},
                {"name": "adam", "lr": 0.003, "groups": ["binarizers", "others"]},
            ],
            **training,
        },
        "output": {"dir": str(folder / "run"), "checkpoint_every_steps": every_steps},
        "logging": {"plot": False, "progress_bar": False},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_plugin_loss_metric_and_callback_run_by_name(tmp_path, one_thread):
    register_plugin(ExtensionsPlugin(), name="extensions-plugin")
    ScaledCrossEntropy.calls, GammaRecorder.seen = 0, []
    path = recipe(
        tmp_path,
        loss={"name": "scaled_ce", "scale": 2.0},
        metrics=["accuracy", "flip_ratio", "confidence"],
        callbacks=[{"name": "bop_gamma", "every_epochs": 1, "factor": 0.5}, "gamma_recorder"],
    )
    loaded, output = prepare_recipe(path)
    train_recipe(loaded, output, device="cpu", quiet=True)

    assert ScaledCrossEntropy.calls == 3 * 6
    assert GammaRecorder.seen == pytest.approx([GAMMA, GAMMA / 2, GAMMA / 4])
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert set(row) >= {"train_loss", "train_acc", "flip_ratio", "train_confidence", "gamma"}
        assert 0.0 < row["flip_ratio"] < 1.0  # Bop flips some weights, never all
        assert 0.1 <= row["train_confidence"] <= 1.0
    assert [row["gamma"] for row in rows] == pytest.approx(GammaRecorder.seen)
    assert rows[-1]["flip_ratio"] < rows[0]["flip_ratio"]  # smaller gamma, fewer flips
    assert checkpoint.load(output / "last.pt")["callbacks"] == [None, {"batches": 3 * 6}]


def test_a_run_resumed_mid_epoch_ends_as_the_uninterrupted_one(tmp_path, one_thread):
    register_plugin(ExtensionsPlugin(), name="extensions-plugin")
    training = {
        "epochs": 2,
        "metrics": ["accuracy", "flip_ratio", "confidence"],
        "callbacks": [{"name": "bop_gamma", "milestones": [1]}, "gamma_recorder", "crash"],
    }
    results = []
    for name, crash_at in (("whole", 0), ("resumed", 9)):
        folder = tmp_path / name
        folder.mkdir()
        path = recipe(folder, every_steps=2, **training)
        loaded, output = prepare_recipe(path)
        Crash.at_step = crash_at
        if crash_at:
            with pytest.raises(KeyboardInterrupt):
                train_recipe(loaded, output, device="cpu", quiet=True)
            assert checkpoint.load(output / "last.pt")["global_step"] == 8
            Crash.at_step = 0
            train_recipe(loaded, output, device="cpu", quiet=True, resume=True)
        else:
            train_recipe(loaded, output, device="cpu", quiet=True)
        results.append(
            ((output / "metrics.jsonl").read_text(), checkpoint.load(output / "last.pt"))
        )
    (whole_rows, whole), (resumed_rows, resumed) = results
    assert resumed_rows == whole_rows
    assert resumed["callbacks"] == whole["callbacks"] == [None, {"batches": 12}, None]
    for key, weight in whole["model"].items():
        assert torch.equal(resumed["model"][key], weight), key


def test_the_defaults_keep_the_loss_and_fields_of_earlier_runs(tmp_path, one_thread):
    path = recipe(tmp_path, epochs=1, label_smoothing=0.1)
    loaded, output = prepare_recipe(path)
    train_recipe(loaded, output, device="cpu", quiet=True)
    row = json.loads((output / "metrics.jsonl").read_text())
    fields = ["stage", "epoch", "train_loss", "train_acc", "lr", "eval_loss", "eval_acc"]
    assert list(row) == fields
    assert checkpoint.load(output / "last.pt")["running"] == {"loss_sum": 0.0, "count": 0.0}


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        ({"loss": "scaled_cee"}, r"training\.loss: Unknown loss 'scaled_cee'\. Did you mean"),
        (
            {"loss": {"name": "scaled_ce", "scale": "big"}},
            r"training\.loss: loss 'scaled_ce': parameter 'scale'",
        ),
        ({"metrics": ["flip_ration"]}, r"training\.metrics\.0: Unknown metric .*'flip_ratio'"),
        (
            {"callbacks": [{"name": "bop_gamma", "factor": 3}]},
            r"training\.callbacks\.0: callback 'bop_gamma': parameter 'factor'",
        ),
        ({"loss": "distillation"}, r"training\.loss: the loss 'distillation' learns from a"),
        ({"loss": "cross_entropy", "label_smoothing": 0.1}, r"label_smoothing applies to the"),
    ],
)
def test_bad_names_and_options_are_reported_by_validate(tmp_path, capsys, training, expected):
    register_plugin(ExtensionsPlugin(), name="extensions-plugin")
    assert main(["validate", str(recipe(tmp_path, **training))]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert re.search(expected, error), error
