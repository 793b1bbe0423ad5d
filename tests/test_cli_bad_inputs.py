"""Bad input to any ``bnn`` command ends with exit status 2 and one paragraph on stderr:
YAML traps, out-of-range numbers, unsafe output templates, unusable output paths,
missing devices, directories given as files and wrong input shapes.
(``scripts/cli_bad_inputs.py`` runs many more of them, each in its own process.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from bnn.cli import main
from bnn.cli.paths import check_output_dir, check_output_file
from bnn.training.runner import prepare_recipe
from bnn_core.errors import ConfigError
from bnn_core.safe_yaml import MAX_EXPANDED_NODES, load_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "recipes" / "default.yaml"

BOMB = "\n".join(
    ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    + [
        f"{b}: &{b} [{', '.join(['*' + a] * 9)}]"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    ]
)


def fails(capsys, *argv: str) -> str:
    """Run ``bnn argv`` in this process; assert exit 2 and a clean message; return it."""
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith(f"bnn {argv[0]}: error: ")
    assert "Traceback" not in err and "\n\n" not in err.strip()
    return err


def recipe(tmp_path: Path, **changes: object) -> Path:
    """A valid small recipe (synthetic data, one epoch) with dotted-key ``changes``."""
    data: dict = {
        "version": 1,
        "model": {"name": "lenet5", "width": 8},
        "data": {"dataset": {"name": "synthetic", "length": 32}, "batch_size": 16},
        "training": {"epochs": 1},
        "output": {"dir": str(tmp_path / "runs" / "{name}")},
    }
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = data
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- YAML -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nmodel: lenet5\nmodel: lenet5\n", "line 3, column 1: duplicate key 'model'"),
        ("version: 1\nmodel: {name: lenet5, name: x}\n", "duplicate key 'name' (first given at"),
        ("version: 1\nmodel: lenet5\nx: &x [1, *x]\n", "recursive alias"),
        (BOMB, f"more than {MAX_EXPANDED_NODES:,} values"),
        ("x: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("version: 1\nmodel: !!python/object/apply:os.system ['true']\n", "could not determine"),
        ("", "must contain a mapping at the top level, got an empty file"),
    ],
)
def test_yaml_traps_are_refused(capsys, tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    started = time.perf_counter()
    err = fails(capsys, "validate", path)
    assert expected in err and str(path) in err
    assert time.perf_counter() - started < 5


def test_merge_keys_and_shared_anchors_still_load():
    text = "base: &b {x: 1, y: 2}\nover: {<<: *b, x: 3}\nlist: &l [1, 2]\ntwice: [*l, *l]\n"
    data = load_text(text, "t.yaml")
    assert data["over"] == {"x": 3, "y": 2} and data["twice"] == [[1, 2], [1, 2]]


def test_set_and_data_options_use_the_strict_loader(capsys, tmp_path):
    err = fails(capsys, "train", recipe(tmp_path), "--set", "model={name: a, name: b}")
    assert "the value of --set model is not valid YAML" in err and "duplicate key 'name'" in err
    err = fails(capsys, "data", "shard", "synthetic", "-o", tmp_path / "s-%d.tar", "-O", "shape=[1")
    assert "the value of -O shape is not valid YAML" in err


@pytest.mark.parametrize("kind", ["directory", "fifo", "binary"])
def test_config_paths_that_are_not_yaml_files(capsys, tmp_path, kind):
    path = tmp_path / "c.yaml"
    if kind == "directory":
        path.mkdir()
        expected = "is a directory, not a YAML file"
    elif kind == "fifo":
        os.mkfifo(path)
        expected = "is not a regular file"
    else:
        path.write_bytes(bytes(range(256)))
        expected = "is not a text file (not UTF-8 at byte 128)"
    assert expected in fails(capsys, "validate", path)


# --- schema ranges and the output.dir template ------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"data__batch_size": 1e30}, "data.batch_size: Input should be a valid integer"),
        ({"data__batch_size": 2**40}, "data.batch_size: Input should be less than or equal"),
        ({"data__batch_size": True}, "data.batch_size: Input should be a valid integer"),
        ({"seed": 1e23}, "seed: Input should be a valid integer"),
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"data__workers": 10**6}, "data.workers: Input should be less than or equal to 256"),
        ({"training__epochs": 10**9}, "training.epochs: Input should be less than or equal"),
        ({"training__optimizers": {"name": "adam", "lr": -1}}, "lr must be at least 0, got -1"),
        ({"training__optimizers": {"name": "sgd", "lr": float("nan")}}, "must be a finite"),
        ({"training__optimizers": {"name": "adam", "betas": [1.5, 0.9]}}, "each beta must be"),
        ({"training__schedule": {"warmup_epochs": float("inf")}}, "warmup_epochs: Input should"),
        ({"output__dir": "runs/{"}, "output.dir: 'runs/{' holds a brace"),
        ({"output__dir": "runs/{0}"}, "{name} (the experiment name) is the only placeholder"),
        ({"output__dir": "runs/{name.__class__}"}, "output.dir: 'runs/{name.__class__}' holds"),
        ({"name": "../up"}, "name: '../up' is not a usable experiment name"),
        ({"model__width": -3}, "model 'lenet5' cannot be built with the options {'width': -3}"),
    ],
)
def test_validate_checks_ranges_and_templates(capsys, tmp_path, changes, expected):
    assert expected in fails(capsys, "validate", recipe(tmp_path, **changes))


def test_output_dir_substitutes_only_the_name(tmp_path):
    _, output = prepare_recipe(DEFAULT)
    assert output == Path("runs/default")
    _, output = prepare_recipe(recipe(tmp_path, output__dir="out/{name}-{name}"), exp_name="x")
    assert output == Path("out/x-x")


# --- output paths, checked before any work ----------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("file", "exists and is not a directory"),
        ("under_file", "cannot be created: "),
        ("proc", "files cannot be created in /proc"),
    ],
)
def test_train_checks_the_run_folder_first(capsys, tmp_path, where, expected):
    afile = tmp_path / "afile"
    afile.write_text("x")
    folder = {"file": afile, "under_file": afile / "run", "proc": Path("/proc/bnn-run")}[where]
    err = fails(capsys, "train", recipe(tmp_path), "--set", f"output.dir={folder}")
    assert "the run folder (output.dir)" in err and expected in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only directories")
def test_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="is not writable"):
            check_output_dir(folder / "run", "the run folder")
    finally:
        folder.chmod(0o755)


def test_output_file_checks(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        check_output_file(fifo, "-o")
    with pytest.raises(ConfigError, match="is a directory; give the name of the file"):
        check_output_file(tmp_path, "-o")
    check_output_file(tmp_path / "new" / "m.bnnpack", "-o")  # creatable: no error
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["export", "lenet5", "-o", "{dir}"], "the output file (-o) {dir} is a directory"),
        (["export", "lenet5", "-o", "{file}/m.bnnpack"], "{file} is a file, not a directory"),
        (["data", "shard", "synthetic", "-o", "{file}/s-%06d.tar"], "the first shard file (-o)"),
        (["eval", "{dir}"], "checkpoint {dir} is a directory, not a file"),
        (["train", "{good}", "--resume", "{dir}"], "--resume) {dir} is a directory"),
        (["export", "{dir}", "-o", "{dir}/m.bnnpack"], "{dir} is a directory; give a checkpoint"),
        (["bench", "{dir}/m.bnnpack"], "the packed model {dir}/m.bnnpack does not exist"),
        (["bench", "{file}.bnnpack"], "is not a .bnnpack file"),
        (["summary", "{dir}"], "is a directory; give a registered model name"),
    ],
)
def test_paths_of_the_wrong_kind(capsys, tmp_path, argv, expected):
    names = {"dir": tmp_path, "file": tmp_path / "afile", "good": recipe(tmp_path)}
    (tmp_path / "afile").write_text("x")
    (tmp_path / "afile.bnnpack").write_bytes(b"not a packed model at all")
    argv = [a.format(**names) for a in argv]
    assert expected.format(**names) in fails(capsys, *argv)


# --- devices, shapes and options --------------------------------------------------------


def test_devices_are_checked(capsys, tmp_path):
    good = recipe(tmp_path)
    assert "unknown device 'bogus': use cpu, cuda" in fails(
        capsys, "train", good, "--device", "bogus"
    )
    assert "unknown device 'meta'" in fails(capsys, "eval", good, "--device", "meta")
    assert "--gpu is a GPU index" in fails(capsys, "train", good, "--gpu", "-1")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        err = fails(capsys, "train", good, "--gpu", str(count))
        assert f"{count} CUDA device(s) are present" in err
    else:
        err = fails(capsys, "train", good, "--gpu", "0")
        assert "this machine has no CUDA device" in err
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_wrong_input_shape_has_no_fx_traceback(capsys, tmp_path):
    err = fails(
        capsys, "export", "lenet5", "-o", tmp_path / "m.bnnpack", "--input-shape", "3,32,32"
    )
    assert "failed (is the input shape right?)" in err and "expected input[1, 3, 32, 32]" in err
    assert "ShapeProp" not in err
    err = fails(capsys, "summary", "lenet5", "--input-shape", "3,99999,99999")
    assert "is too large" in err


def test_bench_options_are_bounded(capsys):
    assert "--batch must be a positive integer and at most 4,096" in fails(
        capsys, "bench", "lenet5", "--batch", "1000000000"
    )


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["list", "bogus"])
    assert raised.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err


def test_alias_bomb_in_a_fresh_process_is_quick(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bnn", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "alias" in done.stderr and "Traceback" not in done.stderr
    assert time.perf_counter() - started < 60
