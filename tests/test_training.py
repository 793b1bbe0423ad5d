"""Training end to end: the Python API on a model and data built by hand, ``bnn train`` and
``bnn eval`` on a learnable toy task, the seed-style ``examples/run_dev.py``, two-stage
training that carries learned parameters over, and knowledge distillation."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import textwrap
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import TensorDataset

from bnn import BConfig, prepare_binary_model
from bnn.cli import main
from bnn.training import checkpoint
from bnn.training.data import make_loader, start_epoch
from bnn.training.distill import build_teacher, distillation_loss
from bnn.training.runner import checkpoint_recipe
from bnn.training.spec import DistillationSpec
from bnn.training.trainer import Trainer, train
from bnn_core import create_model
from bnn_core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FILES = ("config.yaml", "metrics.csv", "metrics.jsonl", "curves.png")
CHECKPOINTS = ("last.pt", "previous.pt", "best.pt")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest, and reproducibly, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def toy_data(length: int, seed: int, shape: tuple[int, ...] = (64,), classes: int = 4):
    """A learnable task: each class is a fixed pattern (the same in every split) plus noise."""
    patterns = torch.randn((classes, *shape), generator=torch.Generator().manual_seed(1234))
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(classes, (length,), generator=generator)
    inputs = patterns[targets] + 0.8 * torch.randn((length, *shape), generator=generator)
    return TensorDataset(inputs, targets)


def mlp(features: int = 64, hidden: int = 32, classes: int = 4) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(features, hidden),
            act1=nn.Hardtanh(),
            fc2=nn.Linear(hidden, hidden),
            act2=nn.Hardtanh(),
            fc3=nn.Linear(hidden, classes),
        )
    )


def binary_mlp(**sizes: int) -> nn.Module:
    """fc2 binary (sign inputs, XNOR weights, learned output scale); fc1, fc3 float."""
    torch.manual_seed(0)
    bconfig = BConfig(
        activation_pre_process="ste_sign",
        weight_pre_process="xnor_weight",
        activation_post_process="basic_scale",
    )
    float_ends = {"fc1": BConfig(), "fc3": BConfig()}
    return prepare_binary_model(mlp(**sizes), bconfig, custom_config_layers_name=float_ends)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_same_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


# --- the Python API -------------------------------------------------------------------


def test_train_a_hand_built_binary_model_with_the_python_api(tmp_path, capsys):
    model = binary_mlp()
    with torch.no_grad():  # outside [-1, 1]: clipping must pull back the binary latent one
        model.fc1.weight[0, 0] = 5.0
        model.fc2.weight[0, 0] = 5.0
    config = {
        "name": "api",
        "seed": 1,
        "data": {"batch_size": 16},
        "training": {"epochs": 3, "optimizers": {"name": "adam", "lr": 0.02}},
    }
    result = train(
        model, toy_data(256, 1), toy_data(128, 2), config, output_dir=tmp_path / "run", device="cpu"
    )
    out = capsys.readouterr().out
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert {r["stage"] for r in result.history} == {"main"}
    accuracies = [r["eval_acc"] for r in result.history]
    assert result.final_accuracy == accuracies[-1]
    assert result.best_accuracy == max(accuracies) and result.best_accuracy > 0.8
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1
    assert result.best_stage == "main" and result.output_dir == tmp_path / "run"
    assert result.wall_time > 0
    assert out.count("[main] epoch ") == 3 and result.summary_line() in out
    # the lr follows the cosine schedule to 0 at the last step
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert result.history[0]["lr"] == pytest.approx(0.02 * 0.5 * (1 + math.cos(math.pi / 3)))

    folder = tmp_path / "run"
    for name in FILES + CHECKPOINTS:
        assert (folder / name).stat().st_size > 0, name
    saved = yaml.safe_load((folder / "config.yaml").read_text())["run"]
    assert saved["name"] == "api" and saved["seed"] == 1
    assert saved["training"]["optimizers"] == [{"name": "adam", "lr": 0.02}]
    last = checkpoint.load(folder / "last.pt")
    assert_same_state(last["model"], model.state_dict())
    steps = math.ceil(256 / 16)
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (3, 0, 3 * steps)
    assert checkpoint.load(folder / "previous.pt")["epoch"] == 2
    assert checkpoint.load(folder / "best.pt")["epoch"] == result.best_epoch
    assert last["history"] == result.history
    rows = read_csv(folder / "metrics.csv")
    assert [float(r["eval_acc"]) for r in rows] == accuracies
    assert [float(r["train_loss"]) for r in rows] == [r["train_loss"] for r in result.history]

    # latent binary weights are clipped to [-1, 1]; float layers are not
    assert model.fc2.weight.abs().max() <= 1.0
    assert model.fc1.weight[0, 0] > 3.0


def test_same_seed_same_weights_other_seed_other_order(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        "seed: 3\ndata: {batch_size: 32}\ntraining: {epochs: 2}\nlogging: {plot: false}\n"
    )
    states = []
    for index, seed in enumerate([None, None, 4]):
        options = {"output_dir": tmp_path / f"run{index}", "quiet": True, "device": "cpu"}
        model = binary_mlp()
        torch.manual_seed(100 + index)  # the order comes from the config's seed alone
        if seed is None:
            train(model, toy_data(128, 1), None, config_file, **options)
        else:
            config = {
                "seed": seed,
                "data": {"batch_size": 32},
                "training": {"epochs": 2},
                "logging": {"plot": False},
            }
            train(model, toy_data(128, 1), None, config, **options)
        states.append(checkpoint.load(tmp_path / f"run{index}" / "last.pt")["model"])
    assert_same_state(states[0], states[1])
    assert not torch.equal(states[0]["fc1.weight"], states[2]["fc1.weight"])


def test_each_parameter_group_gets_its_own_optimizer_and_unnamed_groups_stay_frozen(tmp_path):
    model = binary_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = {
        "data": {"batch_size": 32},
        "logging": {"plot": False},
        "training": {
            "epochs": 1,
            "schedule": {"name": "constant"},
            "optimizers": [
                {"name": "sgd", "lr": 0.1, "momentum": 0.9, "groups": "binary_weights"},
                {"name": "adam", "lr": 0.01, "weight_decay": 0.1, "groups": ["others"]},
            ],
        },
    }
    train(model, toy_data(128, 1), None, config, output_dir=tmp_path, quiet=True, device="cpu")
    after = model.state_dict()
    assert torch.equal(
        after["fc2.activation_post_process.alpha"], before["fc2.activation_post_process.alpha"]
    )  # the binarizers group is given to no optimizer
    assert not torch.equal(after["fc2.weight"], before["fc2.weight"])
    assert not torch.equal(after["fc1.weight"], before["fc1.weight"])
    sgd, adam = checkpoint.load(tmp_path / "last.pt")["optimizers"]
    assert [g["name"] for g in sgd["param_groups"]] == ["binary_weights"]
    assert sgd["param_groups"][0]["weight_decay"] == 0.0 and sgd["param_groups"][0]["lr"] == 0.1
    assert all("momentum_buffer" in s for s in sgd["state"].values())
    assert [g["name"] for g in adam["param_groups"]] == ["others"]
    assert adam["param_groups"][0]["weight_decay"] == 0.1
    assert len(adam["state"]) == 5  # fc1 and fc3 weight and bias, fc2 bias


def plain_binary_mlp() -> nn.Module:
    """The binary MLP without the learned scale: every step is plain arithmetic."""
    torch.manual_seed(0)
    bconfig = BConfig(activation_pre_process="ste_sign", weight_pre_process="xnor_weight")
    float_ends = {"fc1": BConfig(), "fc3": BConfig()}
    return prepare_binary_model(mlp(), bconfig, custom_config_layers_name=float_ends)


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    """Batches of 16 accumulated in pairs train as batches of 32, the epoch's last, single
    batch of 16 included (144 samples: 9 batches, 5 optimizer steps per epoch)."""
    data = toy_data(144, 1)
    states, histories = [], []
    for name, batch, accumulation in (("big", 32, 1), ("accumulated", 16, 2)):
        model = plain_binary_mlp()
        config = {
            "data": {"batch_size": batch},
            "training": {
                "epochs": 2,
                "grad_accumulation": accumulation,
                "optimizers": {"name": "sgd", "lr": 0.2, "momentum": 0.9},
            },
            "logging": {"plot": False},
        }
        result = train(
            model, data, None, config, output_dir=tmp_path / name, quiet=True, device="cpu"
        )
        histories.append(result.history)
        states.append(model.state_dict())
        assert checkpoint.load(tmp_path / name / "last.pt")["global_step"] == 2 * 5
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], atol=1e-6, rtol=0, msg=key)
    for big, accumulated in zip(*histories, strict=True):
        assert accumulated["train_loss"] == pytest.approx(big["train_loss"], rel=1e-6)
        assert accumulated["lr"] == pytest.approx(big["lr"])


def test_python_api_reports_bad_stage_settings_with_their_place():
    config = {"stages": [{"name": "one"}, {"name": "two", "training": {"lr": 0.1}}]}
    with pytest.raises(ConfigError) as caught:
        Trainer(binary_mlp(), toy_data(8, 1), None, config)
    assert str(caught.value) == (
        "the run config is invalid (1 problem):\n"
        "  - stages.1.training.lr: unknown key (not part of the schema)"
    )


def test_eval_refuses_a_checkpoint_of_the_python_api(tmp_path, capsys):
    config = {"training": {"epochs": 1}, "logging": {"plot": False}}
    train(binary_mlp(), toy_data(32, 1), None, config, output_dir=tmp_path, device="cpu")
    capsys.readouterr()
    code, out, err = run(capsys, "eval", str(tmp_path / "last.pt"))
    assert code == 2 and out == ""
    assert "was written by the Python API, which has no model recipe" in err
    assert "Traceback" not in err


# --- bnn train and bnn eval -----------------------------------------------------------

TOY_RECIPE = """\
version: 1
name: toy
seed: 0
model: {name: lenet5, width: 4, hidden: 16}
binarize: default
data:
  dataset: {name: synthetic, learnable: true, length: 512}
  batch_size: 32
training:
  epochs: 2
  optimizers: {name: adam, lr: 0.01}
output: {dir: "runs/{name}"}
"""


def test_bnn_train_then_eval_on_a_learnable_task(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("toy.yaml").write_text(TOY_RECIPE)
    code, out, err = run(capsys, "train", "toy.yaml", "--device", "cpu")
    assert code == 0, err
    folder = tmp_path / "runs" / "toy"
    lines = out.splitlines()
    assert lines[0].startswith("[main] epoch 1: train loss ")
    assert lines[1].startswith("[main] epoch 2: train loss ")
    assert lines[2].startswith("best accuracy ") and "outputs in runs/toy" in lines[2]
    for name in FILES + CHECKPOINTS:
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = read_csv(folder / "metrics.csv")
    assert [(r["stage"], r["epoch"]) for r in rows] == [("main", "1"), ("main", "2")]
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval_acc"] for r in records] == [float(r["eval_acc"]) for r in rows]
    first, second = (r["eval_acc"] for r in records)
    assert second > first > 0.5  # it learns
    assert records[1]["train_loss"] < records[0]["train_loss"]
    assert f"best accuracy {second:.2%} (epoch 2)" in lines[2]

    last, previous, best = (checkpoint.load(folder / n) for n in CHECKPOINTS)
    assert (last["epoch"], previous["epoch"], best["epoch"]) == (2, 1, 2)
    assert_same_state(last["model"], best["model"])
    assert best["best"] == {"accuracy": second, "stage": "main", "epoch": 2}

    # the stored recipe names the binarization in full, so it rebuilds the trained model
    recipe, _ = checkpoint_recipe(folder / "best.pt")
    stored = recipe.model_dump(mode="json", exclude_unset=True)["binarize"]
    assert stored["bconfig"] == {
        "activation_pre_process": "ste_sign",
        "weight_pre_process": "xnor_weight",
    }
    assert stored["custom_config_layers_name"] == {"_first_": {}, "_last_": {}}
    rebuilt = recipe.build_model()
    assert type(rebuilt.conv1) is nn.Conv2d and type(rebuilt.fc2) is nn.Linear
    assert type(rebuilt.conv2) is not nn.Conv2d
    rebuilt.load_state_dict(best["model"])

    code, out, err = run(capsys, "eval", str(folder / "best.pt"), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["eval_acc"] == second and result["eval_loss"] == records[1]["eval_loss"]
    assert (result["stage"], result["epoch"], result["samples"]) == ("main", 2, 512)
    assert (result["dataset"], result["split"]) == ("synthetic", "test")

    code, out, err = run(capsys, "eval", "toy.yaml")
    assert code == 0, err
    assert out == (
        f"runs/toy/best.pt (main, epoch 2): accuracy {second:.2%}, loss "
        f"{records[1]['eval_loss']:.4f} on 512 samples of synthetic (test)\n"
    )


def test_bnn_eval_of_a_run_with_ema_evaluates_the_average(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("toy.yaml").write_text(TOY_RECIPE.replace("length: 512", "length: 256"))
    argv = ["toy.yaml", "--quiet", "--device", "cpu", "--set", "training.ema={decay: 0.8}"]
    assert run(capsys, "train", *argv)[0] == 0
    folder = tmp_path / "runs" / "toy"
    best = checkpoint.load(folder / "best.pt")
    row = read_csv(folder / "metrics.csv")[best["best"]["epoch"] - 1]
    average = checkpoint.evaluated_weights(best)
    assert average.keys() == best["model"].keys()
    assert not torch.equal(average["conv2.weight"], best["model"]["conv2.weight"])
    code, out, err = run(capsys, "eval", str(folder / "best.pt"), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["eval_acc"] == float(row["eval_acc"]) == best["best"]["accuracy"]
    assert result["eval_loss"] == float(row["eval_loss"])


STAGED_RECIPE = """\
version: 1
name: staged
model: {name: lenet5, width: 4, hidden: 16}
data:
  dataset: {name: synthetic, learnable: true, length: 256}
  batch_size: 32
training: {epochs: 1, optimizers: {name: adam, lr: 0.01}}
stages:
  - name: activations
    binarize: {bconfig: {activation_pre_process: input_bias}}
  - name: weights
    binarize:
      bconfig: {activation_pre_process: input_bias, weight_pre_process: xnor_weight}
logging: {plot: false}
output: {dir: "runs/{name}"}
"""


def test_bnn_eval_rebuilds_each_stage_of_a_two_stage_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("staged.yaml").write_text(STAGED_RECIPE)
    assert run(capsys, "train", "staged.yaml", "--quiet", "--device", "cpu")[0] == 0
    folder = tmp_path / "runs" / "staged"
    rows = read_csv(folder / "metrics.csv")
    assert [(r["stage"], r["epoch"]) for r in rows] == [("activations", "1"), ("weights", "1")]
    stored = yaml.safe_load((folder / "config.yaml").read_text())["recipe"]["stages"]
    assert stored[1]["binarize"]["bconfig"] == {
        "activation_pre_process": "input_bias",
        "weight_pre_process": "xnor_weight",
    }
    assert stored[1]["binarize"]["custom_config_layers_name"] == {"_first_": {}, "_last_": {}}
    # previous.pt is the end of the first stage, last.pt the end of the second
    for name, row in (("previous.pt", rows[0]), ("last.pt", rows[1])):
        code, out, err = run(capsys, "eval", str(folder / name), "--json")
        assert code == 0, err
        result = json.loads(out)
        assert (result["stage"], result["epoch"]) == (row["stage"], 1)
        assert result["eval_acc"] == float(row["eval_acc"])
        assert result["eval_loss"] == float(row["eval_loss"])


def test_eval_of_a_recipe_that_was_never_trained(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("toy.yaml").write_text(TOY_RECIPE)
    code, _, err = run(capsys, "eval", "toy.yaml")
    assert code == 2
    assert "no checkpoint in runs/toy: train it first with `bnn train toy.yaml`" in err


# --- examples/run_dev.py --------------------------------------------------------------

# run_dev.py trains a width-32 LeNet on all 12,000 embedded images; the test runs the very
# script, with its own flags, on a width-4 LeNet and a sixth of the images.
SMALLER = """\
import runpy, sys
import bnn_core
from torch.utils.data import Subset

create_model, create_dataset = bnn_core.create_model, bnn_core.create_dataset
bnn_core.create_model = lambda name, **kw: create_model(name, **{**kw, "width": 4, "hidden": 16})


def smaller_dataset(*args, **options):
    dataset = create_dataset(*args, **options)
    return Subset(dataset, range(0, len(dataset), 6))


bnn_core.create_dataset = smaller_dataset
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_run_dev_example_with_the_seed_flags(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "env_dima.yaml").write_text(
        textwrap.dedent(
            f"""\
            PROJECT:
              ROOT: {tmp_path / "project"}
            HARDWARE:
              WORKERS: 0
            TRAINING:
              EPOCHS: 3
              BATCH_SIZE: 100
            EXPERIMENT:
              DIR: experiments
            """
        )
    )
    (tmp_path / "smaller.py").write_text(SMALLER)
    script = str(ROOT / "examples" / "run_dev.py")
    argv = ["--exp_name", "lenet", "--seed", "1", "-u", "dima", "--epochs", "1"]
    result = subprocess.run(
        [sys.executable, "smaller.py", script, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "project" / "experiments" / "lenet"
    assert f"outputs in {folder}" in result.stdout
    assert result.stdout.count("[main] epoch 1:") == 1
    saved = yaml.safe_load((folder / "config.yaml").read_text())["run"]
    assert (saved["name"], saved["seed"]) == ("lenet", 1)
    assert saved["training"]["epochs"] == 1  # --epochs beats the file's 3
    assert saved["data"]["batch_size"] == 100 and saved["data"]["workers"] == 0
    assert saved["training"]["optimizers"] == [{"name": "adam", "lr": 0.003}]
    last = checkpoint.load(folder / "last.pt")
    assert last["global_step"] == 2000 // 100 and last["epoch"] == 1
    assert last["model"]["conv2.weight"].shape == (8, 4, 5, 5)
    assert "conv2.activation_post_process.alpha" in last["model"]  # the seed's BConfig
    assert "conv1.activation_post_process.alpha" not in last["model"]  # kept float
    rows = read_csv(folder / "metrics.csv")
    assert len(rows) == 1 and float(rows[0]["eval_acc"]) > 0.3  # ten classes: chance is 0.1


def test_run_dev_example_with_an_unknown_user(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "env_dima.yaml").write_text("TRAINING:\n  EPOCHS: 1\n")
    monkeypatch.setattr("bnn_core.create_dataset", lambda *a, **kw: toy_data(8, 1, (1, 28, 28)))
    monkeypatch.setattr(sys, "argv", ["run_dev.py", "-u", "bob"])
    import runpy

    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(ROOT / "examples" / "run_dev.py"), run_name="__main__")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("run_dev: error: no environment file for user 'bob'")
    assert "Known users: dima." in err and not (tmp_path / "runs").exists()


# --- two stages -----------------------------------------------------------------------


class Probe(nn.Module):
    """Passes its input through; each time the trainer reports progress (at the start of
    every epoch), records the model's state and the run's newest checkpoint."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.owner: list[nn.Module] = []  # a list, so the model is not a submodule
        self.records: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def on_progress(self, step: float, total: float) -> None:
        last = self.folder / "last.pt"
        self.records.append(
            {
                "step": step,
                "model": {k: v.clone() for k, v in self.owner[0].state_dict().items()},
                "last": checkpoint.load(last) if last.exists() else None,
            }
        )


def test_second_stage_starts_from_what_the_first_learned(tmp_path):
    torch.manual_seed(0)
    probe = Probe(tmp_path)
    model = nn.Sequential(OrderedDict([("probe", probe), *mlp().named_children()]))
    probe.owner.append(model)
    float_ends = {"fc1": {}, "fc3": {}}
    config = {
        "data": {"batch_size": 16},
        "logging": {"plot": False},
        "training": {"epochs": 2, "optimizers": {"name": "adam", "lr": 0.05}},
        "stages": [
            {
                "name": "binary_activations",
                "binarize": {
                    "bconfig": {
                        "activation_pre_process": "input_bias",
                        "weight_pre_process": "identity",
                    },
                    "custom_config_layers_name": float_ends,
                },
            },
            {
                "name": "binary_weights",
                "binarize": {
                    "bconfig": {
                        "activation_pre_process": "input_bias",
                        "weight_pre_process": "xnor_weight",
                    },
                    "custom_config_layers_name": float_ends,
                },
                "training": {"epochs": 1, "optimizers": {"name": "adam", "lr": 0.01}},
            },
        ],
    }
    result = train(
        model,
        toy_data(128, 1),
        toy_data(64, 2),
        config,
        output_dir=tmp_path,
        quiet=True,
        device="cpu",
    )
    assert [(r["stage"], r["epoch"]) for r in result.history] == [
        ("binary_activations", 1),
        ("binary_activations", 2),
        ("binary_weights", 1),
    ]
    assert len(probe.records) == 3
    start_one, _, start_two = probe.records
    end_one = start_two["last"]
    assert (end_one["stage"], end_one["epoch"]) == (0, 2)  # the first stage's last state
    bias = "fc2.activation_pre_process.bias"
    assert torch.equal(start_one["model"][bias], torch.zeros(1, 32))
    assert end_one["model"][bias].abs().sum() > 0  # learned in the first stage
    # re-binarizing for the second stage keeps the learned bias and the latent weights
    assert torch.equal(start_two["model"][bias], end_one["model"][bias])
    for key in ("fc2.weight", "fc2.bias", "fc1.weight", "fc3.weight"):
        assert torch.equal(start_two["model"][key], end_one["model"][key]), key
    assert not torch.equal(start_two["model"]["fc2.weight"], start_one["model"]["fc2.weight"])
    # ...and the second stage goes on training them, now with binary weights
    final = model.state_dict()
    assert not torch.equal(final[bias], end_one["model"][bias])
    assert not torch.equal(final["fc2.weight"], end_one["model"]["fc2.weight"])
    assert type(model.fc2.weight_pre_process).__name__ == "XNORWeightBinarizer"
    assert model.fc2.weight.abs().max() <= 1.0  # now a latent binary weight: clipped
    last = checkpoint.load(tmp_path / "last.pt")
    assert (last["stage"], last["epoch"], last["stages"]) == (
        1,
        1,
        ["binary_activations", "binary_weights"],
    )
    assert last["optimizers"][0]["param_groups"][0]["initial_lr"] == 0.01


# --- distillation ---------------------------------------------------------------------


def test_distillation_loss_by_hand():
    student = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, math.log(3.0)]], requires_grad=True)
    target = torch.tensor([1, 1])
    # T = 1: p_teacher = (3/4, 1/4) (or reversed), p_student = (1/2, 1/2)
    kl_1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert distillation_loss(student, teacher, target).item() == pytest.approx(kl_1, rel=1e-6)
    # T = 2: p_teacher = (r, 1 - r) with r = sqrt(3) / (sqrt(3) + 1), times T^2
    r = math.sqrt(3) / (math.sqrt(3) + 1)
    kl_2 = r * math.log(r / 0.5) + (1 - r) * math.log((1 - r) / 0.5)
    loss = distillation_loss(student, teacher, target, alpha=1.0, temperature=2.0)
    assert loss.item() == pytest.approx(4 * kl_2, rel=1e-6)
    # alpha mixes in the cross-entropy on the labels (at temperature 1): here ln 2
    loss = distillation_loss(student, teacher, target, alpha=0.25, temperature=2.0)
    assert loss.item() == pytest.approx(0.25 * 4 * kl_2 + 0.75 * math.log(2), rel=1e-6)
    smoothed = distillation_loss(student, teacher, target, 0.0, 2.0, label_smoothing=0.2)
    assert smoothed.item() == pytest.approx(
        F.cross_entropy(student, target, label_smoothing=0.2).item(), rel=1e-6
    )
    assert distillation_loss(teacher, teacher, target, 1.0, 3.0).item() == pytest.approx(0.0)
    loss.backward()
    assert teacher.grad is None and student.grad is not None  # the teacher is not trained


def test_trainer_minimises_the_distillation_loss_it_is_configured_with(tmp_path):
    torch.manual_seed(5)
    teacher_weights = tmp_path / "teacher.pt"
    torch.save(create_model("lenet5", width=4, hidden=16).state_dict(), teacher_weights)
    distillation = {
        "teacher": {"name": "lenet5", "width": 4, "hidden": 16, "checkpoint": str(teacher_weights)},
        "alpha": 0.6,
        "temperature": 3.0,
    }
    config = {
        "seed": 2,
        "data": {"batch_size": 16},
        "logging": {"plot": False},
        # learning rate 0: the student stays as it is, so the loss can be recomputed
        "training": {"epochs": 1, "optimizers": {"name": "sgd", "lr": 0.0}},
        "distillation": distillation,
    }
    data = toy_data(64, 1, shape=(1, 28, 28), classes=10)
    student = binary_mlp(features=784, classes=10)
    result = train(
        student, data, None, config, output_dir=tmp_path / "run", quiet=True, device="cpu"
    )

    teacher = build_teacher(DistillationSpec.model_validate(distillation))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert_same_state(teacher.state_dict(), torch.load(teacher_weights, weights_only=True))
    loader = make_loader(data, 16, seed=2, train=True, workers=0)
    start_epoch(loader, 0)
    distilled = plain = 0.0
    with torch.no_grad():
        for inputs, targets in loader:
            logits = student(inputs)
            loss = distillation_loss(logits, teacher(inputs), targets, 0.6, 3.0)
            distilled += float(loss) * len(targets)
            plain += float(F.cross_entropy(logits, targets)) * len(targets)
    recorded = result.history[0]["train_loss"]
    assert recorded == pytest.approx(distilled / 64, rel=1e-6)
    assert recorded != pytest.approx(plain / 64, rel=1e-3)


TEACHER_RECIPE = """\
version: 1
name: teacher
model: {name: lenet5, width: 4, hidden: 16}
data:
  dataset: {name: synthetic, learnable: true, length: 256}
  batch_size: 32
training: {epochs: 1, optimizers: {name: adam, lr: 0.01}}
logging: {plot: false}
output: {dir: "runs/{name}"}
"""

STUDENT_RECIPE = """\
version: 1
name: student
model: {name: lenet5, width: 4, hidden: 16}
binarize: default
data:
  dataset: {name: synthetic, learnable: true, length: 256}
  batch_size: 32
training: {epochs: 2, optimizers: {name: adam, lr: 0.01}}
distillation:
  teacher: {name: lenet5, width: 4, hidden: 16, checkpoint: TEACHER}
  alpha: 0.9
  temperature: 2.0
logging: {plot: false}
output: {dir: "runs/{name}"}
"""


def test_train_a_binary_student_from_a_trained_teacher(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("teacher.yaml").write_text(TEACHER_RECIPE)
    assert run(capsys, "train", "teacher.yaml", "--quiet", "--device", "cpu")[0] == 0
    teacher_file = tmp_path / "runs" / "teacher" / "best.pt"
    teacher_state = checkpoint.load(teacher_file)
    assert teacher_state["best"]["accuracy"] > 0.5

    Path("student.yaml").write_text(STUDENT_RECIPE.replace("TEACHER", str(teacher_file)))
    code, _, err = run(capsys, "train", "student.yaml", "--quiet", "--device", "cpu")
    assert code == 0, err
    folder = tmp_path / "runs" / "student"
    saved = yaml.safe_load((folder / "config.yaml").read_text())["recipe"]["distillation"]
    assert saved["teacher"]["checkpoint"] == str(teacher_file) and saved["alpha"] == 0.9
    rows = read_csv(folder / "metrics.csv")
    assert float(rows[1]["eval_acc"]) > 0.5
    # the teacher's file is read, never written
    assert_same_state(checkpoint.load(teacher_file)["model"], teacher_state["model"])
    spec = DistillationSpec.model_validate(saved)
    assert_same_state(build_teacher(spec).state_dict(), teacher_state["model"])


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (None, "the teacher checkpoint {path} does not exist"),
        (
            lambda path: path.write_bytes(b"not a checkpoint"),
            "the teacher checkpoint {path} is neither a bnn checkpoint nor a state dict",
        ),
        (
            lambda path: torch.save(create_model("lenet5", width=8).state_dict(), path),
            "the teacher checkpoint {path} does not fit the teacher model 'lenet5' with its "
            "options: size mismatch for conv1.weight",
        ),
    ],
    ids=["missing", "garbage", "other-shape"],
)
def test_unusable_teacher_checkpoints_are_clear_errors(
    tmp_path, monkeypatch, capsys, make, expected
):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "teacher.pt"
    if make is not None:
        make(path)
    Path("student.yaml").write_text(STUDENT_RECIPE.replace("TEACHER", str(path)))
    code, out, err = run(capsys, "train", "student.yaml", "--quiet", "--device", "cpu")
    assert code == 2 and out == ""
    assert err.startswith("bnn train: error: ") and "Traceback" not in err
    assert expected.format(path=path) in err
    assert not (tmp_path / "runs" / "student" / "last.pt").exists()
