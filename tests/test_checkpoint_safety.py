"""Run directories and checkpoints under misuse and damage: one run per directory (a lock
that a killed holder does not keep), a checkpoint rotation that always leaves a loadable
``last.pt``, checksums that catch any changed byte, temporaries that follow no planted
link and do not pile up, and a clear error for every kind of file that is not a usable
checkpoint."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from bnn.cli import main
from bnn.training import checkpoint, rundir
from bnn.training.checkpoint import CheckpointError

TOY_RECIPE = """\
version: 1
name: toy
seed: 0
model: {{name: lenet5, width: 2, hidden: 8}}
binarize: default
data:
  dataset: {{name: synthetic, learnable: true, length: 32}}
  batch_size: 16
training:
  epochs: 1
  optimizers: {{name: adam, lr: 0.01}}
output: {{dir: "{folder}"}}
logging: {{plot: false}}
"""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_recipe(folder: Path, output: Path, **changes: str) -> Path:
    text = TOY_RECIPE.format(folder=output)
    for old, new in changes.items():
        text = text.replace(old, new)
    recipe = folder / f"toy-{len(list(folder.glob('toy-*.yaml')))}.yaml"
    recipe.write_text(text)
    return recipe


def train(capsys, recipe: Path, *argv: str) -> tuple[int, str]:
    code, _, err = run(capsys, "train", str(recipe), "--quiet", "--device", "cpu", *argv)
    return code, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The run folder of a finished one-epoch toy run (two steps)."""
    folder = tmp_path_factory.mktemp("trained")
    recipe = write_recipe(folder, folder / "run")
    assert main(["train", str(recipe), "--quiet", "--device", "cpu"]) == 0
    return folder / "run"


def python(code: str) -> subprocess.Popen:
    """A Python process running ``code``, its output read line by line."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_one_line_error(code: int, err: str, *phrases: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for phrase in phrases:
        assert phrase in err, (phrase, err)


# --- one run per directory ---------------------------------------------------------


def test_a_second_run_on_a_locked_directory_fails_at_once_naming_the_holder(tmp_path, capsys):
    output = tmp_path / "run"
    recipe = write_recipe(tmp_path, output)
    with rundir.claim(output):
        code, err = train(capsys, recipe)
        assert_one_line_error(
            code,
            err,
            f"the run directory {output} is in use by another run: process {os.getpid()} on "
            f"host {socket.gethostname()}, since ",
            "--exp-name NAME or --set output.dir=PATH",
        )
        assert sorted(p.name for p in output.iterdir()) == [".lock"]  # nothing written
    assert (output / ".lock").read_text() == ""  # released: no holder
    code, err = train(capsys, recipe)
    assert code == 0, err
    assert (output / ".lock").read_text() == ""
    assert checkpoint.load(output / "last.pt")["epoch"] == 1


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    holder = python(
        f"""
        from pathlib import Path
        from bnn.training import rundir
        lock = rundir.claim(Path({str(tmp_path)!r}))
        print("locked", flush=True)
        input()
        """
    )
    try:
        assert holder.stdout.readline() == "locked\n", holder.stderr.read()
        with pytest.raises(rundir.RunDirectoryError, match=f"process {holder.pid} on host "):
            rundir.claim(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
    assert str(holder.pid) in (tmp_path / ".lock").read_text()  # the dead holder's record
    with caplog.at_level(logging.WARNING), rundir.claim(tmp_path):
        assert f'"pid": {os.getpid()}' in (tmp_path / ".lock").read_text()
    assert f"took over the lock of the run directory {tmp_path} from process {holder.pid}" in (
        caplog.text
    )


def test_forked_children_do_not_keep_the_lock(tmp_path):
    """A data-loading worker forked by a run does not hold the lock once the run is gone."""
    lock = rundir.claim(tmp_path)
    started, ready = os.pipe()
    child = os.fork()
    if child == 0:  # the worker, started (fork hooks run), outlives the run for a while
        os.write(ready, b"1")
        time.sleep(30)
        os._exit(0)
    try:
        assert os.read(started, 1) == b"1"
        lock.release()  # the run ends (as a killed one does: its descriptor closes)
        with rundir.claim(tmp_path):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(started)
        os.close(ready)


def test_a_symbolic_link_as_lock_file_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(victim)
    with pytest.raises(rundir.RunDirectoryError, match="is a symbolic link; remove it"):
        rundir.claim(tmp_path / "run")
    assert victim.read_text() == "keep"


# --- rotation and temporaries -------------------------------------------------------


def test_rotation_killed_between_its_renames_keeps_a_loadable_last(tmp_path):
    """The process dies (no clean-up runs) after previous.pt was replaced, before the new
    file was renamed to last.pt: last.pt still holds the state before."""
    killed = python(
        f"""
        import os
        import torch
        from bnn.training import checkpoint

        path = {str(tmp_path / "last.pt")!r}
        checkpoint.save({{"value": torch.tensor(1)}}, path, keep_previous=True)
        checkpoint.save({{"value": torch.tensor(2)}}, path, keep_previous=True)
        replace, calls = os.replace, []

        def replace_then_die(source, target):
            calls.append(target)
            if str(target).endswith("last.pt"):
                os._exit(9)
            replace(source, target)

        checkpoint.os.replace = replace_then_die
        checkpoint.save({{"value": torch.tensor(3)}}, path, keep_previous=True)
        """
    )
    _, err = killed.communicate(timeout=120)
    assert killed.returncode == 9, err
    assert checkpoint.load(tmp_path / "last.pt")["value"] == 2
    assert checkpoint.load(tmp_path / "previous.pt")["value"] == 2
    (leftover,) = checkpoint.temporaries(tmp_path / "last.pt")  # the complete new state
    assert checkpoint.load(leftover)["value"] == 3
    with rundir.claim(tmp_path):  # last.pt exists: the leftover is only removed
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "last.pt", "previous.pt"]
    assert checkpoint.load(tmp_path / "last.pt")["value"] == 2


def test_a_missing_last_falls_back_to_its_complete_temporary(tmp_path, caplog):
    """What an older rotation (last.pt moved aside first) leaves when stopped in between."""
    checkpoint.save({"value": torch.tensor(1)}, tmp_path / "last.pt", keep_previous=True)
    checkpoint.save({"value": torch.tensor(2)}, tmp_path / "last.pt", keep_previous=True)
    complete = tmp_path / ".last.pt.k3j9x2ab.tmp"
    os.replace(tmp_path / "last.pt", complete)
    damaged = tmp_path / ".last.pt.zzzzzzzz.tmp"  # a newer one, cut while being written
    damaged.write_bytes(complete.read_bytes()[:-100])
    with caplog.at_level(logging.WARNING):
        assert checkpoint.load(tmp_path / "last.pt")["value"] == 2
    assert f"reading the complete checkpoint {complete} it left instead" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING), rundir.claim(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "last.pt", "previous.pt"]
    assert f"restored {tmp_path / 'last.pt'} from the complete checkpoint" in caplog.text
    assert checkpoint.load(tmp_path / "last.pt")["value"] == 2


def test_an_incomplete_temporary_is_never_used(tmp_path):
    checkpoint.save({"value": torch.tensor(1)}, tmp_path / "last.pt", keep_previous=True)
    checkpoint.save({"value": torch.tensor(2)}, tmp_path / "last.pt", keep_previous=True)
    cut = tmp_path / ".last.pt.abcdefgh.tmp"
    cut.write_bytes((tmp_path / "last.pt").read_bytes()[:-50])
    (tmp_path / "last.pt").unlink()
    with pytest.raises(CheckpointError, match=r"does not exist\. The previous checkpoint is"):
        checkpoint.load(tmp_path / "last.pt")
    with rundir.claim(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "previous.pt"]


def test_planted_links_at_temporary_names_are_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    for name in (".last.pt.tmp", ".previous.pt.tmp", ".best.pt.tmp"):  # the old fixed names
        (run / name).symlink_to(victim)
    checkpoint.save({"value": torch.tensor(1)}, run / "last.pt", keep_previous=True)
    checkpoint.save({"value": torch.tensor(2)}, run / "last.pt", keep_previous=True)
    checkpoint.save({"value": torch.tensor(3)}, run / "best.pt")
    assert victim.read_text() == "precious"
    for name in ("last.pt", "previous.pt", "best.pt"):
        assert (run / name).is_file() and not (run / name).is_symlink()
    mask = os.umask(0o022)
    os.umask(mask)
    assert (run / "last.pt").stat().st_mode & 0o777 == 0o666 & ~mask
    with rundir.claim(run):  # our leftover names go, links removed without touching targets
        assert sorted(p.name for p in run.iterdir()) == [
            ".lock",
            "best.pt",
            "last.pt",
            "previous.pt",
        ]
    assert victim.read_text() == "precious"


def test_leftovers_of_killed_runs_are_cleaned_and_nothing_else(tmp_path):
    ours = [".last.pt.x1y2z3ab.tmp", ".best.pt.tmp", ".previous.pt.0a1b2c3d.tmp"]
    theirs = [".notes.tmp", "keep.tmp", ".last.pt.bak", "last.pt.x1y2z3ab.tmp"]
    checkpoint.save({"value": torch.tensor(1)}, tmp_path / "last.pt")
    for name in ours + theirs:
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / ".best.pt.dir.tmp").mkdir()  # a directory is never ours
    with rundir.claim(tmp_path):
        left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([".lock", "last.pt", ".best.pt.dir.tmp", *theirs])


# --- checksums ----------------------------------------------------------------------


def test_a_flipped_weight_byte_is_a_checksum_error_offering_previous(tmp_path):
    weights = torch.arange(64, dtype=torch.float32)
    checkpoint.save({"model": {"w": weights}}, tmp_path / "last.pt", keep_previous=True)
    checkpoint.save({"model": {"w": weights + 1}}, tmp_path / "last.pt", keep_previous=True)
    data = bytearray((tmp_path / "last.pt").read_bytes())
    where = data.find((weights + 1).numpy().tobytes())
    assert where > 0
    data[where + 17] ^= 0x01
    (tmp_path / "last.pt").write_bytes(data)
    plain = torch.load(tmp_path / "last.pt", weights_only=True)  # torch alone sees nothing
    assert not torch.equal(plain["model"]["w"], weights + 1)
    with pytest.raises(CheckpointError) as error:
        checkpoint.load(tmp_path / "last.pt")
    assert str(error.value) == (
        f"checkpoint {tmp_path / 'last.pt'} is corrupted: its contents do not match the SHA-256 "
        "checksum stored in it, so it changed after it was written. The previous checkpoint is "
        f"intact: resume with --resume {tmp_path / 'previous.pt'}."
    )


def test_no_single_changed_byte_goes_unnoticed(tmp_path):
    """Every byte of a small checkpoint flipped in turn: the file still loads the same
    contents (a byte torch does not read), or loading it is a CheckpointError."""
    path = tmp_path / "last.pt"
    state = {
        "model": {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)},
        "epoch": 1,
        "history": [{"loss": 0.5, "stage": "main", "lr": None, "ok": True}],
    }
    checkpoint.save(state, path)
    expected = checkpoint.digest(checkpoint.load(path))
    data = path.read_bytes()
    kinds = set()
    with open(path, "r+b") as handle:
        for index, byte in enumerate(data):
            os.pwrite(handle.fileno(), bytes([byte ^ 0x10]), index)
            try:
                loaded = checkpoint.load(path)
            except CheckpointError as exc:
                kinds.add(str(exc).split(":")[0].split(" (")[0])
            else:
                assert checkpoint.digest(loaded) == expected, index
            os.pwrite(handle.fileno(), bytes([byte]), index)
    assert f"checkpoint {path} is corrupted" in kinds  # the checksum's own catches


def test_checkpoints_without_a_checksum(tmp_path, caplog):
    old = tmp_path / "old.pt"
    torch.save({"format": "bnn-checkpoint", "format_version": 1, "model": {}, "epoch": 0}, old)
    with caplog.at_level(logging.WARNING):
        assert checkpoint.load(old)["epoch"] == 0
    assert "format version 1) without a checksum" in caplog.text
    stripped = tmp_path / "stripped.pt"
    torch.save({"format": "bnn-checkpoint", "format_version": 2, "model": {}}, stripped)
    with pytest.raises(CheckpointError, match="has no checksum, which its format version 2"):
        checkpoint.load(stripped)


# --- files that are not usable checkpoints ------------------------------------------


class RunsCode:
    """An object whose unpickling would call a function: what weights_only refuses."""

    def __reduce__(self):
        return (os.getpid, ())


def written(target: Path, data: bytes) -> Path:
    target.write_bytes(data)
    return target


def saved_by_torch(target: Path, state: dict) -> Path:
    torch.save(state, target)
    return target


def resaved(trained: Path, target: Path, change) -> Path:
    """The trained run's last.pt with ``change`` applied, written with a valid checksum."""
    state = checkpoint.load(trained / "last.pt")
    for key in ("format", "format_version", "sha256"):
        state.pop(key)
    change(state)
    checkpoint.save(state, target)
    return target


BAD_FILES = {
    "random bytes": (
        lambda t, p: written(p, bytes(range(7, 250))),
        "is not a checkpoint: a checkpoint is the zip archive that bnn train writes",
    ),
    "exported model": (
        lambda t, p: written(p, b"BNNPACK\0" + bytes(64)),
        "is an exported model (a .bnnpack file written by bnn export), not a training "
        "checkpoint: it cannot be resumed or evaluated as one; `bnn bench ",
    ),
    "pickled code": (
        lambda t, p: saved_by_torch(p, {"format": "bnn-checkpoint", "x": RunsCode()}),
        "was refused: it holds Python objects or code (posix.getpid) besides tensors, "
        "numbers and strings, and bnn never runs code from a file",
    ),
    "bare pickle": (
        lambda t, p: written(p, pickle.dumps({"model": {}})),
        "is a bare Python pickle, not a checkpoint: bnn does not read pickles",
    ),
    "no epoch": (
        lambda t, p: resaved(t, p, lambda s: s.pop("epoch")),
        "cannot be evaluated: it lacks or mistypes entries that bnn train writes (epoch: missing)",
    ),
    "stage as text": (
        lambda t, p: resaved(t, p, lambda s: s.update(stage="0")),
        "(stage: input should be a valid integer)",
    ),
    "unknown stage": (
        lambda t, p: resaved(t, p, lambda s: s.update(stage=3)),
        "says it stopped in stage number 3 of the stages ['main'], but the recipe stored in "
        "it has the stages ['main']; the file was altered or damaged",
    ),
    "weights of another model": (
        lambda t, p: resaved(
            t,
            p,
            lambda s: s.update(
                ema=None,
                model={
                    **{k: v for k, v in s["model"].items() if not k.startswith(("fc", "bn3"))},
                    "conv1.weight": torch.zeros(5, 1, 5, 5),
                    "extra.weight": torch.zeros(1),
                },
            ),
        ),
        "do not fit the model: 8 missing (fc1.weight, bn3.weight, bn3.bias and 5 more); 1 "
        "unexpected (extra.weight); 1 of another shape (conv1.weight is [5, 1, 5, 5] in the "
        "file, [2, 1, 5, 5] in the model)",
    ),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bnn_eval_explains_each_bad_checkpoint(kind, trained, tmp_path, capsys):
    make, message = BAD_FILES[kind]
    path = make(trained, tmp_path / "bad.pt")
    code, _, err = run(capsys, "eval", str(path))
    assert_one_line_error(code, err, message)
    assert str(path) in err


def test_a_directory_is_not_a_checkpoint(trained):
    with pytest.raises(CheckpointError) as error:
        checkpoint.load(trained)
    assert str(error.value) == (
        f"{trained} is a directory, not a checkpoint file. Give a file in it, such as "
        f"{trained / 'best.pt'}."
    )


def test_resume_checks_what_the_checkpoint_holds(trained, tmp_path, capsys):
    output = tmp_path / "run"
    recipe = write_recipe(tmp_path, output)
    broken = resaved(trained, tmp_path / "broken.pt", lambda s: s.pop("optimizers"))
    code, err = train(capsys, recipe, "--resume", str(broken))
    assert_one_line_error(code, err, "cannot be resumed", "(optimizers: missing)")

    unknown = resaved(trained, tmp_path / "unknown.pt", lambda s: s.update(stage=1))
    code, err = train(capsys, recipe, "--resume", str(unknown))
    assert_one_line_error(
        code, err, f"checkpoint {unknown} says it stopped in stage number 1, but its run has 1 "
    )

    wider = write_recipe(tmp_path, output, **{"width: 2": "width: 3"})
    code, err = train(capsys, wider, "--resume", str(trained / "last.pt"))
    assert_one_line_error(
        code,
        err,
        f"the model weights in checkpoint {trained / 'last.pt'} do not fit the model: ",
        "conv1.weight is [2, 1, 5, 5] in the file, [3, 1, 5, 5] in the model",
    )

    adam = resaved(trained, tmp_path / "two.pt", lambda s: s["optimizers"].append({}))
    code, err = train(capsys, recipe, "--resume", str(adam))
    assert_one_line_error(code, err, "holds 2 optimizer state(s), this stage has 1 optimizer(s)")
