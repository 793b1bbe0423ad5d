"""Run bad inputs through every ``bnn`` sub-command, each in its own process, and check
that each one ends the way the project promises: exit status 2 and a one-paragraph
message on stderr, with no traceback, in reasonable time, and without side effects.

Usage::

    python scripts/cli_bad_inputs.py            # every case, two at a time
    python scripts/cli_bad_inputs.py -k export  # the cases whose command or input match

It prints one row per case (command, input, exit status, seconds, the first line of
stderr, PASS or FAIL) and a summary line "N passed, M failed"; its own exit status is 1
when a case failed.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    """One bad input: the sub-command, what is wrong, and the arguments after ``bnn``."""

    command: str
    label: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    max_seconds: float = 60.0
    #: a file the command must not create (the proof that no code from the input ran)
    forbidden: Path | None = None


@dataclass
class Outcome:
    """How a case ended, and whether that is what the project promises."""

    case: Case
    code: int | None
    seconds: float
    stderr: str
    problem: str | None

    @property
    def passed(self) -> bool:
        return self.problem is None


class _Evil:
    """A pickle that runs a shell command when loaded without ``weights_only``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def good_recipe(folder: Path) -> dict[str, Any]:
    """A small valid recipe: lenet5 on 32 synthetic samples, one epoch, runs under ``folder``."""
    return {
        "version": 1,
        "name": "good",
        "seed": 0,
        "model": {"name": "lenet5", "width": 8},
        "data": {"dataset": {"name": "synthetic", "length": 32}, "batch_size": 16},
        "training": {"epochs": 1},
        "output": {"dir": str(folder / "runs" / "{name}")},
        "logging": {"progress_bar": False, "plot": False},
    }


class Fixtures:
    """The files the cases point at, written once into a scratch folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.good = self.recipe("good", {})
        self.afile = self.write("afile.txt", "just text\n")
        self.adir = folder / "adir"
        self.adir.mkdir()
        (self.adir / "config.yaml").mkdir()
        (folder / "empty_folder").mkdir()
        self.garbage = self.write_bytes("garbage.bin", random.Random(0).randbytes(4096))
        self.empty = self.write("empty.yaml", "")
        self.fifo = folder / "fifo.bnnpack"
        os.mkfifo(self.fifo)
        self.marker = folder / "pwned"
        self.evil = self.write_bytes("evil.pt", pickle.dumps(_Evil(self.marker), protocol=2))
        self.readonly = folder / "readonly"
        self.readonly.mkdir()
        self.readonly.chmod(0o555)
        self._torch_fixtures()

    def _torch_fixtures(self) -> None:
        import torch

        self.keyless = self.folder / "keyless.pt"
        torch.save({"a": 1}, self.keyless)
        self.weights = self.folder / "weights.pt"
        torch.save({"conv1.weight": torch.zeros(2, 2)}, self.weights)
        self.pack = self.folder / "model.bnnpack"
        made = subprocess.run(
            [sys.executable, "-m", "bnn", "export", "lenet5", "-o", str(self.pack), "--json"],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise SystemExit(f"cannot write the .bnnpack fixture:\n{made.stderr}")
        data = self.pack.read_bytes()
        self.truncated = self.write_bytes("truncated.bnnpack", data[: len(data) // 2])
        self.junkpack = self.write_bytes("junk.bnnpack", random.Random(1).randbytes(2048))
        self.emptypack = self.write_bytes("empty.bnnpack", b"")

    def write(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        return path

    def write_bytes(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path

    def recipe(self, name: str, changes: dict[str, Any], drop: tuple[str, ...] = ()) -> Path:
        """The good recipe with ``changes`` (dotted keys) applied and ``drop`` keys removed."""
        data = good_recipe(self.folder)
        for dotted, value in changes.items():
            *parents, last = dotted.split(".")
            target = data
            for key in parents:
                target = target.setdefault(key, {})
            target[last] = value
        for key in drop:
            data.pop(key)
        return self.write(f"{name}.yaml", yaml.safe_dump(data, sort_keys=False))


BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{b}: &{b} [{', '.join(['*' + a] * 9)}]"
            for a, b in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def validate_cases(f: Fixtures) -> list[Case]:
    """Files, YAML and schema problems that ``bnn validate`` must report."""
    raw = {
        "empty file": "",
        "only a comment": "# nothing\n",
        "a list at the top": "- a\n- b\n",
        "a scalar at the top": "42\n",
        "bad indentation": "version: 1\n  model: lenet5\n",
        "a tab as indentation": "version: 1\nmodel:\n\tname: lenet5\n",
        "unclosed bracket": "version: 1\nmodel: [lenet5\n",
        "duplicate top-level key": "version: 1\nmodel: lenet5\nmodel: lenet5\n",
        "duplicate nested key": "version: 1\nmodel: {name: lenet5, name: lenet5}\n",
        "alias bomb (billion laughs)": BOMB + "\nversion: 1\nmodel: lenet5\n",
        "recursive alias": "version: 1\nmodel: lenet5\nx: &x [1, *x]\n",
        "undefined alias": "version: 1\nmodel: *nothing\n",
        "10000 nested lists": "x: " + "[" * 10000 + "]" * 10000 + "\n",
        "python object tag": "version: 1\nmodel: !!python/object/apply:os.system ['true']\n",
        "unhashable key": "version: 1\nmodel: lenet5\n? [1]\n: 2\n",
        "missing version": "model: lenet5\n",
        "version 2": "version: 2\nmodel: lenet5\n",
        "missing model": "version: 1\n",
        "model is a number": "version: 1\nmodel: 5\n",
        "NUL in the name": 'version: 1\nmodel: lenet5\nname: "a\\0b"\n',
    }
    cases = [
        Case("validate", label, ["validate", str(f.write(f"raw_{i}.yaml", text))], max_seconds=15)
        for i, (label, text) in enumerate(raw.items())
    ]
    cases += [
        Case("validate", "file does not exist", ["validate", str(f.folder / "missing.yaml")]),
        Case("validate", "a directory", ["validate", str(f.adir)]),
        Case("validate", "a directory named .yaml", ["validate", str(f.adir / "config.yaml")]),
        Case("validate", "binary garbage", ["validate", str(f.garbage)]),
        Case("validate", "/dev/zero (never ends)", ["validate", "/dev/zero"], max_seconds=15),
        Case("validate", "a FIFO", ["validate", str(f.fifo)], max_seconds=15),
        Case(
            "validate",
            "latin-1 text",
            ["validate", str(f.write_bytes("latin1.yaml", "name: caf\xe9\n".encode("latin-1")))],
        ),
        Case(
            "validate",
            "5 MB file",
            ["validate", str(f.write("big.yaml", "version: 1\n" + "# padding\n" * 500_000))],
        ),
    ]
    schema = {
        "unknown top-level key": {"epochz": 3},
        "unknown model": {"model": {"name": "lenet6"}},
        "unknown model option": {"model.depth": 3},
        "model option of a wrong type": {"model.width": "wide"},
        "unknown binarizer": {"binarize": {"bconfig": {"activation_pre_process": "ste_sgn"}}},
        "unknown BConfig slot": {"binarize": {"bconfig": {"input": "ste_sign"}}},
        "unknown bconfig name": {"binarize": {"bconfig": "xnor_plus"}},
        "ignore pattern matching nothing": {"binarize": {"ignore_layers_name": ["$nothing$"]}},
        "custom config of a missing layer": {"binarize": {"custom_config_layers_name": {"f9": {}}}},
        "unknown dataset": {"data.dataset": "imagenet_42"},
        "unknown dataset option": {"data.dataset": {"name": "synthetic", "colour": True}},
        "batch_size 0": {"data.batch_size": 0},
        "batch_size -5": {"data.batch_size": -5},
        "batch_size 1e30": {"data.batch_size": 1e30},
        "batch_size 1e15": {"data.batch_size": 1e15},
        "batch_size '1e30' (a string)": {"data.batch_size": "1e30"},
        "batch_size true": {"data.batch_size": True},
        "batch_size 2.5": {"data.batch_size": 2.5},
        "eval_batch_size -1": {"data.eval_batch_size": -1},
        "workers 100000": {"data.workers": 100000},
        "workers -1": {"data.workers": -1},
        "seed 1e23": {"seed": 1e23},
        "seed -1": {"seed": -1},
        "seed 2**64": {"seed": 2**64},
        "seed 'abc'": {"seed": "abc"},
        "lr -1": {"training.optimizers": {"name": "adam", "lr": -1}},
        "eps 0": {"training.optimizers": {"name": "adam", "eps": 0}},
        "lr nan": {"training.optimizers": {"name": "adam", "lr": float("nan")}},
        "lr inf": {"training.optimizers": {"name": "sgd", "lr": float("inf")}},
        "lr 'fast'": {"training.optimizers": {"name": "adam", "lr": "fast"}},
        "weight_decay -0.1": {"training.optimizers": {"name": "adamw", "weight_decay": -0.1}},
        "betas [1.5, 0.9]": {"training.optimizers": {"name": "adam", "betas": [1.5, 0.9]}},
        "momentum -1": {"training.optimizers": {"name": "sgd", "momentum": -1}},
        "bop gamma 0": {"training.optimizers": {"name": "bop", "gamma": 0}},
        "bop gamma 2": {"training.optimizers": {"name": "bop", "gamma": 2}},
        "unknown optimizer": {"training.optimizers": {"name": "adamx"}},
        "unknown optimizer option": {"training.optimizers": {"name": "adam", "lrate": 0.1}},
        "unknown parameter group": {"training.optimizers": {"name": "adam", "groups": ["all"]}},
        "a group trained twice": {"training.optimizers": [{"name": "adam"}, {"name": "sgd"}]},
        "epochs -1": {"training.epochs": -1},
        "epochs 0": {"training.epochs": 0},
        "epochs 1e9": {"training.epochs": 10**9},
        "epochs 'ten'": {"training.epochs": "ten"},
        "grad_accumulation 0": {"training.grad_accumulation": 0},
        "label_smoothing 1.5": {"training.label_smoothing": 1.5},
        "clip_latent_weights -1": {"training.clip_latent_weights": -1},
        "warmup_epochs inf": {"training.schedule": {"warmup_epochs": float("inf")}},
        "unknown schedule": {"training.schedule": {"name": "exponential"}},
        "milestones [0]": {"training.schedule": {"name": "step", "milestones": [0]}},
        "ema decay 1": {"training.ema": {"decay": 1}},
        "output.dir '{'": {"output.dir": "runs/{"},
        "output.dir '{0}'": {"output.dir": "runs/{0}"},
        "output.dir '{name.__class__}'": {"output.dir": "runs/{name.__class__}"},
        "output.dir '{nam}'": {"output.dir": "runs/{nam}"},
        "output.dir empty": {"output.dir": ""},
        "checkpoint_every_steps -1": {"output.checkpoint_every_steps": -1},
        "name with a slash": {"name": "../escape"},
        "name '..'": {"name": ".."},
        "stage with an unknown key": {"stages": [{"name": "one", "epochs": 2}]},
        "stage with epochs 0": {"stages": [{"name": "one", "training": {"epochs": 0}}]},
        "stage without a name": {"stages": [{"training": {"epochs": 1}}]},
        "teacher unknown model": {"distillation": {"teacher": {"name": "resnet1000"}}},
        "distillation alpha 2": {"distillation": {"teacher": "lenet5", "alpha": 2}},
        "distillation temperature 0": {"distillation": {"teacher": "lenet5", "temperature": 0}},
        "evaluation split 'train2'": {"evaluation": {"split": "train2"}},
        "evaluation every_epochs 0": {"evaluation": {"every_epochs": 0}},
        "logging progress_bar 'maybe'": {"logging": {"progress_bar": "maybe"}},
        "logging a list": {"logging": [1, 2]},
    }
    for i, (label, changes) in enumerate(schema.items()):
        path = f.recipe(f"schema_{i}", changes)
        cases.append(Case("validate", label, ["validate", str(path)]))
    return cases


def train_cases(f: Fixtures) -> list[Case]:
    """Bad runs that ``bnn train`` must refuse before it builds a model or data."""
    good = str(f.good)
    env_dup = f.write("env_dup.yaml", "TRAINING:\n  EPOCHS: 1\nTRAINING:\n  EPOCHS: 2\n")
    env_list = f.write("env_list.yaml", "TRAINING: [1, 2]\n")
    cases = [
        Case("train", "output.dir is a file", ["train", good, "--set", f"output.dir={f.afile}"]),
        Case(
            "train", "output.dir under a file", ["train", good, "--set", f"output.dir={f.afile}/r"]
        ),
        Case("train", "output.dir under /proc", ["train", good, "--set", "output.dir=/proc/r"]),
        Case("train", "output.dir under /sys", ["train", good, "--set", "output.dir=/sys/run"]),
        Case(
            "train",
            "output.dir '{name.__class__}'",
            ["train", good, "--set", "output.dir=runs/{name.__class__}"],
        ),
        Case("train", "output.dir '{0}'", ["train", good, "--set", "output.dir=runs/{0}"]),
        Case("train", "--device bogus", ["train", good, "--device", "bogus"]),
        Case("train", "--device cuda:99", ["train", good, "--device", "cuda:99"]),
        Case("train", "--device meta", ["train", good, "--device", "meta"]),
        Case("train", "--gpu 0 (no CUDA here) or 99", ["train", good, "--gpu", _gpu_index()]),
        Case("train", "--gpu -1", ["train", good, "--gpu", "-1"]),
        Case("train", "--gpu and --device", ["train", good, "--gpu", "0", "--device", "cpu"]),
        Case("train", "--set without '='", ["train", good, "--set", "training.epochs"]),
        Case("train", "--set bad YAML", ["train", good, "--set", "training.epochs=[1"]),
        Case("train", "--set epochs 0", ["train", good, "--set", "training.epochs=0"]),
        Case("train", "--set batch_size 1e30", ["train", good, "--set", "data.batch_size=1.0e+30"]),
        Case("train", "--set seed 1e23", ["train", good, "--set", "seed=1.0e+23"]),
        Case(
            "train",
            "--set lr -1",
            ["train", good, "--set", "training.optimizers={name: adam, lr: -1}"],
        ),
        Case("train", "--set an unknown key", ["train", good, "--set", "training.epochz=1"]),
        Case("train", "--seed -5", ["train", good, "--seed", "-5"]),
        Case("train", "--seed 2**64", ["train", good, "--seed", str(2**64)]),
        Case("train", "--exp-name with a slash", ["train", good, "--exp-name", "a/b"]),
        Case("train", "--env and -u", ["train", good, "--env", str(env_dup), "-u", "me"]),
        Case("train", "-u without its file", ["train", good, "-u", "nobody"]),
        Case("train", "--env missing", ["train", good, "--env", str(f.folder / "env_x.yaml")]),
        Case("train", "--env with a duplicate key", ["train", good, "--env", str(env_dup)]),
        Case("train", "--env section is a list", ["train", good, "--env", str(env_list)]),
        Case("train", "--resume missing file", ["train", good, "--resume", str(f.folder / "x")]),
        Case("train", "--resume a directory", ["train", good, "--resume", str(f.adir)]),
        Case("train", "--resume random bytes", ["train", good, "--resume", str(f.garbage)]),
        Case(
            "train",
            "--resume a pickle with code",
            ["train", good, "--resume", str(f.evil)],
            forbidden=f.marker,
        ),
        Case("train", "recipe is a directory", ["train", str(f.adir)]),
        Case("train", "recipe without data", ["train", str(f.recipe("nodata", {}, ("data",)))]),
        Case(
            "train",
            "dataset root missing",
            [
                "train",
                str(f.recipe("noroot", {"data.dataset": {"name": "cifar10", "root": "/nope"}})),
            ],
        ),
        Case("train", "recipe with an alias bomb", ["train", str(f.write("bomb.yaml", BOMB))]),
    ]
    if os.geteuid() != 0:  # root writes anywhere, so a read-only folder proves nothing
        cases.append(
            Case(
                "train",
                "output.dir read-only",
                ["train", good, "--set", f"output.dir={f.readonly}/run"],
            )
        )
    return cases


def _gpu_index() -> str:
    """An index no GPU has: 0 on a machine without CUDA, 99 elsewhere."""
    import torch

    return "99" if torch.cuda.is_available() else "0"


def eval_cases(f: Fixtures) -> list[Case]:
    """Checkpoints that are not checkpoints, and bad devices."""
    never_trained = f.recipe("untrained", {"output.dir": str(f.folder / "never" / "{name}")})
    return [
        Case("eval", "file does not exist", ["eval", str(f.folder / "missing.pt")]),
        Case("eval", "a directory", ["eval", str(f.adir)]),
        Case("eval", "random bytes", ["eval", str(f.garbage)]),
        Case("eval", "empty file", ["eval", str(f.write_bytes("empty.pt", b""))]),
        Case("eval", "a text file", ["eval", str(f.afile)]),
        Case("eval", "checkpoint lacking keys", ["eval", str(f.keyless)]),
        Case("eval", "a plain state dict", ["eval", str(f.weights)]),
        Case("eval", "a .bnnpack as checkpoint", ["eval", str(f.pack)]),
        Case("eval", "a pickle with code", ["eval", str(f.evil)], forbidden=f.marker),
        Case("eval", "--device bogus", ["eval", str(f.keyless), "--device", "bogus"]),
        Case("eval", "--device cuda:99", ["eval", str(f.keyless), "--device", "cuda:99"]),
        Case("eval", "recipe never trained", ["eval", str(never_trained)]),
        Case("eval", "invalid recipe", ["eval", str(f.recipe("eval_bad", {"seed": -1}))]),
        Case("eval", "a FIFO", ["eval", str(f.fifo)], max_seconds=15),
    ]


def export_cases(f: Fixtures) -> list[Case]:
    """Bad targets, shapes and output paths of ``bnn export``."""
    out = str(f.folder / "out.bnnpack")
    return [
        Case("export", "-o an existing directory", ["export", "lenet5", "-o", str(f.adir)]),
        Case("export", "-o under a file", ["export", "lenet5", "-o", f"{f.afile}/m.bnnpack"]),
        Case("export", "-o under /proc", ["export", "lenet5", "-o", "/proc/m.bnnpack"]),
        Case("export", "-o under /sys", ["export", "lenet5", "-o", "/sys/m.bnnpack"]),
        Case("export", "-o a FIFO", ["export", "lenet5", "-o", str(f.fifo)]),
        Case(
            "export",
            "--onnx with -o x.onnx",
            ["export", "lenet5", "-o", str(f.folder / "x.onnx"), "--onnx"],
        ),
        Case(
            "export",
            "wrong --input-shape",
            ["export", "lenet5", "-o", out, "--input-shape", "3,32,32"],
        ),
        Case(
            "export",
            "too small --input-shape",
            ["export", "lenet5", "-o", out, "--input-shape", "1,2,2"],
        ),
        Case(
            "export", "--input-shape 0,1", ["export", "lenet5", "-o", out, "--input-shape", "0,1"]
        ),
        Case(
            "export",
            "--input-shape huge",
            ["export", "lenet5", "-o", out, "--input-shape", "3,99999,99999"],
        ),
        Case("export", "unknown model", ["export", "lenet6", "-o", out]),
        Case("export", "a directory as target", ["export", str(f.adir), "-o", out]),
        Case("export", "random bytes as checkpoint", ["export", str(f.garbage), "-o", out]),
        Case("export", "checkpoint lacking keys", ["export", str(f.keyless), "-o", out]),
        Case(
            "export", "a pickle with code", ["export", str(f.evil), "-o", out], forbidden=f.marker
        ),
        Case(
            "export",
            "--bconfig with a recipe",
            ["export", str(f.good), "-o", out, "--bconfig", "xnor"],
        ),
        Case("export", "unknown --bconfig", ["export", "lenet5", "-o", out, "--bconfig", "xnorr"]),
        Case(
            "export",
            "not exportable (adabin)",
            ["export", "lenet5", "-o", out, "--bconfig", "adabin"],
        ),
        Case(
            "export",
            "invalid recipe",
            ["export", str(f.recipe("export_bad", {"seed": -1})), "-o", out],
        ),
    ]


def bench_cases(f: Fixtures) -> list[Case]:
    """Files that are not packed models and out-of-range options of ``bnn bench``."""
    pack = str(f.pack)
    return [
        Case("bench", "random bytes .bnnpack", ["bench", str(f.junkpack)]),
        Case("bench", "empty .bnnpack", ["bench", str(f.emptypack)]),
        Case("bench", "truncated .bnnpack", ["bench", str(f.truncated)]),
        Case("bench", "missing .bnnpack", ["bench", str(f.folder / "none.bnnpack")]),
        Case("bench", "a directory .bnnpack", ["bench", str(_folder(f, "dir.bnnpack"))]),
        Case("bench", "a FIFO .bnnpack", ["bench", str(f.fifo)], max_seconds=15),
        Case("bench", "--batch 0", ["bench", pack, "--batch", "0"]),
        Case("bench", "--batch 1e9", ["bench", pack, "--batch", "1000000000"]),
        Case("bench", "--rounds -1", ["bench", pack, "--rounds", "-1"]),
        Case("bench", "--threads 0", ["bench", pack, "--threads", "0"]),
        Case("bench", "--warmup -1", ["bench", pack, "--warmup", "-1"]),
        Case("bench", "unknown model", ["bench", "lenet6"]),
        Case("bench", "wrong --input-shape", ["bench", "lenet5", "--input-shape", "3,32,32"]),
        Case("bench", "a text file as target", ["bench", str(f.afile)]),
        Case("bench", "a directory as target", ["bench", str(f.adir)]),
    ]


def _folder(f: Fixtures, name: str) -> Path:
    path = f.folder / name
    path.mkdir(exist_ok=True)
    return path


def other_cases(f: Fixtures) -> list[Case]:
    """summary, explain, list, list-plugins, config-schema, data and the dispatcher."""
    shard = str(f.folder / "shards" / "s-%06d.tar")
    shard_dir = str(_folder(f, "d-000000.tar").with_name("d-%06d.tar"))  # shard 0 is a folder
    return [
        Case("summary", "unknown model", ["summary", "lenet6"]),
        Case("summary", "a directory", ["summary", str(f.adir)]),
        Case("summary", "missing .yaml", ["summary", str(f.folder / "missing.yaml")]),
        Case("summary", "a text file", ["summary", str(f.afile)]),
        Case("summary", "--input-shape 0,1", ["summary", "lenet5", "--input-shape", "0,1"]),
        Case("summary", "--input-shape abc", ["summary", "lenet5", "--input-shape", "abc"]),
        Case(
            "summary", "--input-shape huge", ["summary", "lenet5", "--input-shape", "3,99999,99999"]
        ),
        Case("summary", "unknown --bconfig", ["summary", "lenet5", "--bconfig", "xnorr"]),
        Case("summary", "--bconfig with a config", ["summary", str(f.good), "--bconfig", "xnor"]),
        Case("summary", "invalid config", ["summary", str(f.recipe("summary_bad", {"seed": -1}))]),
        Case("explain", "missing file", ["explain", str(f.folder / "missing.yaml")]),
        Case("explain", "a directory", ["explain", str(f.adir)]),
        Case("explain", "duplicate key", ["explain", str(f.write("dup.yaml", "a: 1\na: 2\n"))]),
        Case(
            "explain",
            "--forward without data",
            ["explain", str(f.recipe("explain_nodata", {}, ("data",))), "--forward"],
        ),
        Case(
            "explain",
            "invalid config",
            ["explain", str(f.recipe("explain_bad", {"model.width": -3}))],
        ),
        Case("list", "unknown kind", ["list", "bogus"]),
        Case("list", "no kind", ["list"]),
        Case("list-plugins", "unknown option", ["list-plugins", "--bogus"]),
        Case("config-schema", "an extra argument", ["config-schema", "extra"]),
        Case("data", "no action", ["data"]),
        Case("data", "unknown action", ["data", "convert"]),
        Case("data", "unknown dataset", ["data", "shard", "imagenet_42", "-o", shard]),
        Case("data", "pattern without a number", ["data", "shard", "synthetic", "-o", "s.tar"]),
        Case("data", "pattern with two numbers", ["data", "shard", "synthetic", "-o", "%d-%d.tar"]),
        Case(
            "data", "-o under a file", ["data", "shard", "synthetic", "-o", f"{f.afile}/s-%06d.tar"]
        ),
        Case("data", "-o under /proc", ["data", "shard", "synthetic", "-o", "/proc/s-%06d.tar"]),
        Case("data", "-o a directory", ["data", "shard", "synthetic", "-o", shard_dir]),
        Case(
            "data", "--maxcount 0", ["data", "shard", "synthetic", "-o", shard, "--maxcount", "0"]
        ),
        Case("data", "--seed -1", ["data", "shard", "synthetic", "-o", shard, "--seed", "-1"]),
        Case("data", "-O without '='", ["data", "shard", "synthetic", "-o", shard, "-O", "length"]),
        Case("data", "-O bad YAML", ["data", "shard", "synthetic", "-o", shard, "-O", "length=[1"]),
        Case(
            "data",
            "-O duplicate key",
            ["data", "shard", "synthetic", "-o", shard, "-O", "shape={a: 1, a: 2}"],
        ),
        Case(
            "data",
            "-O unknown option",
            ["data", "shard", "synthetic", "-o", shard, "-O", "colour=1"],
        ),
        Case(
            "data",
            "-O wrong type",
            ["data", "shard", "synthetic", "-o", shard, "-O", "length=many"],
        ),
        Case(
            "data",
            "unknown --split",
            ["data", "shard", "fashion_mnist", "-o", shard, "--split", "dev"],
        ),
        Case(
            "data", "--root missing", ["data", "shard", "cifar10", "--root", "/nope", "-o", shard]
        ),
        Case(
            "data",
            "folder without classes",
            ["data", "shard", str(f.folder / "empty_folder"), "-o", shard],
        ),
        Case(
            "data",
            "a folder with --root",
            ["data", "shard", str(f.adir), "--root", "/x", "-o", shard],
        ),
        Case("data", "a file as source", ["data", "shard", str(f.afile), "-o", shard]),
        Case("bnn", "unknown command", ["frobnicate"]),
        Case("bnn", "train without a recipe", ["train"]),
    ]


def all_cases(f: Fixtures) -> list[Case]:
    """Every case, grouped by command."""
    groups = (validate_cases, train_cases, eval_cases, export_cases, bench_cases, other_cases)
    return [case for group in groups for case in group(f)]


def judge(case: Case, code: int | None, seconds: float, stderr: str) -> str | None:
    """Why the outcome breaks the promise, or ``None`` when it keeps it."""
    text = stderr.strip()
    if code is None:
        return f"still running after {case.max_seconds:.0f} s"
    if case.forbidden is not None and case.forbidden.exists():
        return f"code from the input ran: {case.forbidden} was created"
    if "Traceback" in stderr:
        return "traceback on stderr"
    if code != 2:
        return f"exit status {code}, expected 2"
    if not text:
        return "nothing on stderr"
    if "\n\n" in text:
        return "the message is more than one paragraph"
    if "error" not in text:
        return "no error message on stderr"
    if seconds > case.max_seconds:
        return f"took {seconds:.1f} s, more than {case.max_seconds:.0f} s"
    return None


def run_case(case: Case, folder: Path) -> Outcome:
    """Run one case in a fresh process with a time limit."""
    env = {**os.environ, "COLUMNS": "200", **case.env}
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bnn", *case.argv],
            capture_output=True,
            text=True,
            errors="replace",
            cwd=folder,
            env=env,
            timeout=case.max_seconds * 2,
            stdin=subprocess.DEVNULL,
        )
        code, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, stderr = None, (exc.stderr or b"").decode(errors="replace")
    seconds = time.perf_counter() - started
    return Outcome(case, code, seconds, stderr, judge(case, code, seconds, stderr))


def first_line(text: str) -> str:
    """The first non-empty line of ``text``."""
    return next((line for line in text.splitlines() if line.strip()), "")


def main(argv: list[str] | None = None) -> int:
    """Run the cases and print the table; exit status 1 when any case failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--filter", help="only cases whose command or input hold this")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="cases run at once (2)")
    parser.add_argument("--width", type=int, default=110, help="stderr column width (110)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bnn-bad-inputs-") as scratch:
        folder = Path(scratch)
        try:
            cases = all_cases(Fixtures(folder))
            if args.filter:
                cases = [c for c in cases if args.filter in f"{c.command} {c.label}"]
            with ThreadPoolExecutor(max(1, args.jobs)) as pool:
                outcomes = list(pool.map(lambda case: run_case(case, folder), cases))
        finally:
            if (folder / "readonly").exists():
                (folder / "readonly").chmod(0o755)
    label_width = max(len(o.case.label) for o in outcomes)
    print(f"{'command':<13} {'input':<{label_width}} exit  secs  verdict  first line of stderr")
    for o in outcomes:
        shown = "-" if o.code is None else str(o.code)
        verdict = "PASS" if o.passed else "FAIL"
        line = first_line(o.stderr)[: args.width]
        print(
            f"{o.case.command:<13} {o.case.label:<{label_width}} {shown:>4} {o.seconds:5.1f}  "
            f"{verdict:<7}  {line}"
        )
        if not o.passed:
            print(f"{'':<13} {'':<{label_width}} {'':>4} {'':>5}  {'':<7}  ^ {o.problem}")
    failed = sum(not o.passed for o in outcomes)
    print(f"{len(outcomes) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
