"""Checkpoints and resume: a run killed with SIGKILL in the middle of an epoch and resumed
with ``--resume`` ends with exactly the weights and metrics of a run never interrupted,
random binarizers and random augmentation included; a damaged checkpoint is a clear
error that points to the intact ``previous.pt``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bnn.cli import main
from bnn.training import checkpoint
from bnn.training.checkpoint import CheckpointError
from tests.fakedist import write_distribution

pytestmark = pytest.mark.usefixtures("fresh_plugins")

# A learnable data set whose training samples are augmented with torch's random state
# (noise and a random flip), and which, when BNN_TEST_STALL_AFTER is set, stops for good
# after serving that many training samples: a process stuck at a known point of an epoch,
# to be killed there.
PLUGIN = """
import os
import time

import torch
from torch.utils.data import Dataset

from bnn_core import hookimpl


class NoisyPatterns(Dataset):
    served = 0

    def __init__(self, length, split):
        generator = torch.Generator().manual_seed(0)
        patterns = torch.randn((10, 1, 28, 28), generator=generator)
        generator.manual_seed({"train": 1, "val": 2, "test": 2}[split])
        self.targets = torch.randint(10, (length,), generator=generator)
        self.inputs = patterns[self.targets] + torch.randn((length, 1, 28, 28), generator=generator)
        self.augment = split == "train"
        self.stall_after = int(os.environ.get("BNN_TEST_STALL_AFTER", "0"))

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        if self.augment:
            NoisyPatterns.served += 1
            if self.stall_after and NoisyPatterns.served > self.stall_after:
                while True:
                    time.sleep(1)
        x = self.inputs[index]
        if self.augment:
            x = x + 0.5 * torch.randn_like(x)
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
        return x, int(self.targets[index])


def noisy_patterns(length: int = 128, split: str = "train"):
    return NoisyPatterns(length, split)


@hookimpl
def bnn_register_datasets(register):
    register("noisy_patterns", noisy_patterns)
"""

# Random binarizer (stochastic sign), learned scales, two optimizers with state (SGD with
# momentum, Adam), a warm-up, EMA, mid-epoch checkpoints every 3 steps.
RECIPE = """\
version: 1
name: resumable
seed: 11
model: {name: lenet5, width: 4, hidden: 16}
binarize:
  bconfig:
    activation_pre_process: stochastic_input
    weight_pre_process: xnor_weight
    activation_post_process: basic_scale
data:
  dataset: {name: noisy_patterns, length: 160}
  eval_dataset: {name: noisy_patterns, length: 64}
  batch_size: 8
training:
  epochs: 2
  optimizers:
    - {name: adam, lr: 0.01, groups: [binary_weights, binarizers]}
    - {name: sgd, lr: 0.05, momentum: 0.9, groups: others}
  schedule: {name: cosine, warmup_epochs: 0.5}
  ema: {decay: 0.9}
output: {dir: "runs/{name}", checkpoint_every_steps: 3}
logging: {plot: false}
"""

TRAIN = ["train", "resumable.yaml", "--quiet", "--device", "cpu"]
STEPS = 160 // 8  # per epoch
# stop while loading batch 14 of the second epoch: the newest checkpoint then is the one
# after step 13 of that epoch (global step 33, a multiple of 3), the one before it after
# step 10
STALL_AFTER = 160 + 13 * 8 + 3


@pytest.fixture(autouse=True)
def one_thread():
    """One thread in this process, as in the subprocesses: results then match bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working directory with the recipe and the data set installed as a plugin."""
    site = tmp_path / "site"
    write_distribution(site, "bnn-noisy-data", "bnn_noisy_data", PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resumable.yaml").write_text(RECIPE)
    return tmp_path


def bnn_command(project: Path, *argv: str, **env: str) -> subprocess.Popen:
    """``bnn ARGV`` in a new process that sees the plugin."""
    path = os.pathsep.join(filter(None, [str(project / "site"), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "bnn", *argv],
        cwd=project,
        env={**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_mid_epoch_checkpoint(path: Path, process: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            state = checkpoint.load(path)
        except CheckpointError:  # not written yet, or being replaced
            state = None
        if state is not None and state["epoch"] == 1 and state["step_in_epoch"] == 13:
            return state
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"no mid-epoch checkpoint appeared in {path}")


def assert_same_state(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def train_uninterrupted(capsys, folder: str) -> Path:
    code = main([*TRAIN, "--set", f"output.dir={folder}"])
    assert code == 0, capsys.readouterr().err
    return Path(folder)


def test_sigkill_in_mid_epoch_then_resume_gives_the_uninterrupted_result(project, capsys):
    killed = bnn_command(project, *TRAIN, BNN_TEST_STALL_AFTER=str(STALL_AFTER))
    folder = project / "runs" / "resumable"
    try:
        state = wait_for_mid_epoch_checkpoint(folder / "last.pt", killed)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    state = checkpoint.load(folder / "last.pt")  # nothing was written after it
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 13, STEPS + 13)
    assert state["running"]["count"] == 13 * 8
    assert [r["epoch"] for r in state["history"]] == [1]
    assert checkpoint.load(folder / "previous.pt")["global_step"] == STEPS + 10
    assert (folder / "metrics.csv").read_text().count("\n") == 2  # header and epoch 1

    code = main([*TRAIN, "--resume"])  # a new process's job
    assert code == 0, capsys.readouterr().err

    reference = train_uninterrupted(capsys, str(project / "reference"))
    for name in ("last.pt", "best.pt"):
        expected = checkpoint.load(reference / name)
        got = checkpoint.load(folder / name)
        assert_same_state(got["model"], expected["model"])
        assert_same_state(got["ema"], expected["ema"])
        assert (got["epoch"], got["global_step"]) == (expected["epoch"], expected["global_step"])
        assert got["history"] == expected["history"]
        assert torch.equal(got["rng"]["torch"], expected["rng"]["torch"])
    expected = checkpoint.load(reference / "last.pt")
    got = checkpoint.load(folder / "last.pt")
    for mine, theirs in zip(got["optimizers"], expected["optimizers"], strict=True):
        for index, values in theirs["state"].items():
            assert_same_state(mine["state"][index], values)
    assert got["schedulers"] == expected["schedulers"]
    assert (folder / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    assert (folder / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert expected["global_step"] == 2 * STEPS and len(expected["history"]) == 2


def test_resume_needs_the_saved_random_state(project, capsys, monkeypatch):
    """The stochastic binarizer draws from torch's random state: resumed without the state
    the checkpoint saved, the run would end elsewhere (so the test above has teeth)."""
    reference = train_uninterrupted(capsys, "runs/resumable")
    expected = checkpoint.load(reference / "last.pt")["model"]
    previous = "runs/resumable/previous.pt"  # one step before the end
    main([*TRAIN, "--resume", previous, "--set", "output.dir=a"])
    assert_same_state(checkpoint.load(Path("a/last.pt"))["model"], expected)
    monkeypatch.setattr(checkpoint, "set_rng_state", lambda state: None)
    main([*TRAIN, "--resume", previous, "--set", "output.dir=b"])
    other = checkpoint.load(Path("b/last.pt"))["model"]
    assert not torch.equal(other["conv2.weight"], expected["conv2.weight"])


def test_truncated_last_checkpoint_points_to_the_previous_one(project, capsys):
    folder = train_uninterrupted(capsys, "runs/resumable")
    expected = checkpoint.load(folder / "last.pt")
    for name in ("last.pt", "previous.pt", "best.pt"):  # plain torch.load, weights only
        state = torch.load(folder / name, map_location="cpu", weights_only=True)
        assert state["format"] == "bnn-checkpoint" and "model" in state
    previous = checkpoint.load(folder / "previous.pt")
    assert (previous["epoch"], previous["step_in_epoch"]) == (1, STEPS - 1)  # global step 39

    data = (folder / "last.pt").read_bytes()
    cuts = {
        "empty": b"",
        "header only": data[:10],
        "a third": data[: len(data) // 3],  # torch raises OSError (errno 22) here
        "half": data[: len(data) // 2],
        "end cut off": data[:-20],
        "overwritten": data[:100] + bytes(len(data) - 100),
    }
    for damage, damaged in cuts.items():
        (folder / "last.pt").write_bytes(damaged)
        code = main([*TRAIN, "--resume"])
        out, err = capsys.readouterr()
        assert code == 2 and out == "", damage
        assert err.startswith(
            "bnn train: error: checkpoint runs/resumable/last.pt is truncated or corrupted "
            "and cannot be read ("
        ), damage
        assert "Traceback" not in err and err.count("\n") == 1, damage
        assert err.endswith(
            "The previous checkpoint is intact: resume with --resume runs/resumable/previous.pt.\n"
        ), damage
        assert "weights_only=False" not in err  # torch's advice does not apply here

    code = main([*TRAIN, "--resume", "runs/resumable/previous.pt"])
    assert code == 0, capsys.readouterr().err
    resumed = checkpoint.load(folder / "last.pt")
    assert_same_state(resumed["model"], expected["model"])
    assert resumed["history"] == expected["history"]


def test_missing_last_checkpoint_points_to_the_previous_one(project, capsys):
    folder = train_uninterrupted(capsys, "runs/resumable")
    (folder / "last.pt").unlink()  # killed between moving last.pt aside and renaming the new one
    code = main([*TRAIN, "--resume"])
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "checkpoint runs/resumable/last.pt does not exist. The previous checkpoint is intact: "
        "resume with --resume runs/resumable/previous.pt."
    ) in err


def test_resume_without_any_checkpoint_and_with_other_stages(project, capsys):
    code = main([*TRAIN, "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint runs/resumable/last.pt does not exist." in err
    assert "previous" not in err

    train_uninterrupted(capsys, "runs/resumable")
    staged = RECIPE + "stages:\n  - {name: first}\n  - {name: second}\n"
    (project / "resumable.yaml").write_text(staged)
    code = main([*TRAIN, "--resume"])
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "the checkpoint comes from a run with stages ['main'], this run has ['first', 'second']"
        in err
    )


def test_files_that_are_not_checkpoints(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"model": {}}, plain)
    with pytest.raises(CheckpointError, match="is not a bnn checkpoint"):
        checkpoint.load(plain)
    future = tmp_path / "future.pt"
    checkpoint.save({"model": {}}, future)
    state = torch.load(future, weights_only=True)
    torch.save({**state, "format_version": 99}, future)
    with pytest.raises(CheckpointError, match="has checkpoint format version 99"):
        checkpoint.load(future)


def test_save_is_atomic_and_keeps_the_previous_state(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save({"value": torch.tensor(1)}, path, keep_previous=True)
    assert not (tmp_path / "previous.pt").exists()
    checkpoint.save({"value": torch.tensor(2)}, path, keep_previous=True)
    assert checkpoint.load(path)["value"] == 2
    assert checkpoint.load(tmp_path / "previous.pt")["value"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "previous.pt"]  # no temp
