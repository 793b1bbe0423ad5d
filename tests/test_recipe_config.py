"""Training recipes: every bad setting is reported by ``bnn validate`` as one paragraph
with its place in the file, and a run's settings are layered in a fixed order
(defaults < environment file < recipe < ``--set`` < flags)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from bnn.cli import main
from bnn.recipe import load_recipe
from bnn.training.layering import env_file, env_overrides, parse_set
from bnn.training.runner import prepare_recipe
from bnn_core.errors import ConfigError

HEAD = "version: 1\nmodel: {name: lenet5, width: 4, hidden: 16}\n"


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


def write(folder: Path, text: str, name: str = "recipe.yaml") -> str:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def assert_one_paragraph(err: str, command: str) -> None:
    """A single error, no traceback, no blank line inside it."""
    assert err.startswith(f"bnn {command}: error: ")
    assert err.count("error:") == 1
    assert "Traceback" not in err
    assert "\n\n" not in err.strip()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "training:\n  optimizers: {name: adamm, lr: 0.1}\n",
            [
                "training.optimizers.0: Unknown optimizer 'adamm'. Did you mean 'adam' or "
                "'adamw'? Registered optimizers: adam, adamw, bop, rmsprop, sgd",
                "plugin may be missing",
            ],
            id="unknown-optimizer",
        ),
        pytest.param(
            "training:\n  optimizers: {name: adam, lr: 0.1, groups: [binary_weight]}\n",
            [
                "training.optimizers.0: unknown parameter group 'binary_weight'; the groups "
                "are ('binary_weights', 'binarizers', 'others')"
            ],
            id="unknown-group",
        ),
        pytest.param(
            "training:\n  optimizers:\n"
            "    - {name: adam, groups: [others, binarizers]}\n"
            "    - {name: sgd, lr: 0.1, groups: others}\n",
            [
                "training: parameter group 'others' is given to both 'adam' and 'sgd'; "
                "each group has one optimizer"
            ],
            id="group-given-twice",
        ),
        pytest.param(
            "training:\n  optimizers: {name: adam, lr: fast}\n",
            ["training.optimizers.0: optimizer 'adam': parameter 'lr': Input should be a valid"],
            id="bad-optimizer-option",
        ),
        pytest.param(
            "training:\n  schedule: {name: cosin}\n",
            ["training.schedule.name: Input should be 'cosine', 'linear', 'step' or 'constant'"],
            id="bad-schedule",
        ),
        pytest.param(
            "training:\n  epochs: 2\n  epochz: 3\noutput: {dir: out, every: 3}\n",
            [
                "(2 problems)",
                "  - training.epochz: unknown key (not part of the schema)",
                "  - output.every: unknown key (not part of the schema)",
            ],
            id="extra-keys",
        ),
        pytest.param(
            "output: {checkpoint_every_steps: -5}\n",
            ["output.checkpoint_every_steps: Input should be greater than or equal to 0"],
            id="negative-checkpoint-interval",
        ),
        pytest.param(
            "stages:\n"
            "  - {name: one, training: {epochs: 1}}\n"
            "  - {name: two, training: {epochs: 1, lr: 0.1}}\n",
            ["(1 problem)", "  - stages.1.training.lr: unknown key (not part of the schema)"],
            id="stage-extra-key",
        ),
        pytest.param(
            "stages:\n"
            "  - {name: one, training: {optimizers: {name: sgdd}}}\n"
            "  - {name: two, training: {schedule: {name: exp}}}\n",
            [
                "(2 problems)",
                "  - stages.0.training.optimizers.0: Unknown optimizer 'sgdd'. Did you mean 'sgd'?",
                "  - stages.1.training.schedule.name: Input should be 'cosine'",
            ],
            id="stage-bad-values",
        ),
        pytest.param(
            "stages:\n  - {training: {epochs: 1}}\n",
            ["stages.0.name: required key is missing"],
            id="stage-without-name",
        ),
        pytest.param(
            "distillation:\n  teacher: {name: lenet6}\n",
            ["distillation.teacher: Unknown model 'lenet6'. Did you mean 'lenet5'?"],
            id="unknown-teacher",
        ),
        pytest.param(
            "distillation:\n  teacher: lenet5\n  alpha: 1.5\n",
            ["distillation.alpha: Input should be less than or equal to 1"],
            id="bad-alpha",
        ),
    ],
)
def test_validate_reports_bad_training_settings(capsys, tmp_path, body, expected):
    code, out, err = run(capsys, "validate", write(tmp_path, HEAD + body))
    assert code == 2 and out == ""
    assert_one_paragraph(err, "validate")
    assert f"{tmp_path / 'recipe.yaml'} is invalid" in err
    for text in expected:
        assert text in err


def test_validate_requires_the_version(capsys, tmp_path):
    code, out, err = run(capsys, "validate", write(tmp_path, "model: lenet5\n"))
    assert code == 2 and out == ""
    assert_one_paragraph(err, "validate")
    assert "(1 problem)" in err and "  - version: required key is missing" in err


def test_binarize_default_takes_the_declared_binarization(capsys, tmp_path):
    path = write(tmp_path, HEAD + "binarize: default\n")
    code, out, err = run(capsys, "validate", path)
    assert code == 0 and err == ""
    assert out == f"{path}: valid (model lenet5, 2 of 4 layers binarized)\n"
    spec = load_recipe(path).binarization()
    assert spec.bconfig.model_dump(mode="json")["activation_pre_process"] == "ste_sign"
    assert set(spec.custom_config_layers_name) == {"_first_", "_last_"}


STAGED = """\
binarize: default
training: {epochs: 5, optimizers: {name: adam, lr: 0.01}}
stages:
  - name: activations
    binarize: {bconfig: {activation_pre_process: ste_sign}}
    training: {epochs: 2}
  - name: weights
    training: {schedule: {name: constant}}
  - name: float
    binarize: null
"""


def test_stages_inherit_or_replace_the_binarization(tmp_path):
    path = write(tmp_path, HEAD + STAGED)
    stages = load_recipe(path).stages_to_run()
    assert [s.name for s in stages] == ["activations", "weights", "float"]
    assert [s.training.epochs for s in stages] == [2, 5, 5]
    assert [s.training.schedule.name for s in stages] == ["cosine", "constant", "cosine"]
    assert all(s.training.optimizers[0].settings == {"lr": 0.01} for s in stages)
    first, second, third = (s.binarization for s in stages)
    assert first.bconfig.weight_pre_process is None  # only what the stage names
    assert set(first.custom_config_layers_name) == {"_first_", "_last_"}  # declared
    assert second.bconfig.model_dump(mode="json")["weight_pre_process"] == "xnor_weight"
    assert third is None


# --- layering -------------------------------------------------------------------------

ENV = """
PROJECT:
  ROOT: {root}
HARDWARE:
  WORKERS: {workers}
TRAINING:
  EPOCHS: 7
  BATCH_SIZE: 64
EXPERIMENT:
  DIR: experiments
"""

RECIPE = (
    HEAD
    + """
name: from_recipe
seed: 5
data:
  dataset: {name: synthetic, learnable: true, length: 64}
  batch_size: 32
training:
  epochs: 1
logging: {plot: false}
"""
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working directory holding configs/env_alice.yaml (the seed's per-user file) whose
    PROJECT.ROOT is a folder beside it, and a recipe."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    root = tmp_path / "project_root"
    (tmp_path / "configs" / "env_alice.yaml").write_text(ENV.format(root=root, workers=3))
    write(tmp_path, RECIPE)
    return tmp_path


def test_user_name_finds_its_environment_file_in_configs(project):
    assert env_file("alice") == project / "configs" / "env_alice.yaml"
    assert env_file("some/where/env.yaml") == Path("some/where/env.yaml")  # a path as is
    overrides, root = env_overrides(env_file("alice"))
    assert root == project / "project_root"
    assert overrides == {
        "data": {"workers": 3, "batch_size": 64},
        "training": {"epochs": 7},
        "output": {"dir": "experiments/{name}"},
    }


def test_precedence_env_file_recipe_set_flags(project):
    recipe, output = prepare_recipe(
        "recipe.yaml",
        parse_set(["data.batch_size=16", "seed=6", "name=from_set", "training.epochs=2"]),
        env="alice",
        exp_name="from_flag",
        seed=7,
    )
    assert recipe.data.workers == 3  # only the environment file sets it
    assert recipe.training.epochs == 2  # env 7 < recipe 1 < --set 2
    assert recipe.data.batch_size == 16  # env 64 < recipe 32 < --set 16
    assert recipe.seed == 7  # recipe 5 < --set 6 < --seed 7
    assert recipe.name == "from_flag"  # recipe < --set < --exp-name
    # EXPERIMENT.DIR gives one folder per experiment, under PROJECT.ROOT
    assert output == project / "project_root" / "experiments" / "from_flag"


def test_recipe_beats_the_environment_file(project):
    recipe, output = prepare_recipe("recipe.yaml", env="alice")
    assert (recipe.training.epochs, recipe.data.batch_size, recipe.seed) == (1, 32, 5)
    assert recipe.name == "from_recipe"
    assert output == project / "project_root" / "experiments" / "from_recipe"


def test_without_environment_file_and_name(project):
    write(project, RECIPE.replace("name: from_recipe\n", ""), "unnamed.yaml")
    recipe, output = prepare_recipe("unnamed.yaml")
    assert recipe.name == "unnamed"  # the file's stem
    assert (recipe.data.workers, recipe.training.epochs) == (0, 1)
    assert output == Path("runs/unnamed")  # relative to the working directory


def test_set_values_are_yaml_and_malformed_ones_are_errors():
    assert parse_set(["a.b=3", "a.c=[1, 2]", "a.b=0.5", "d=text"]) == {
        "a": {"b": 0.5, "c": [1, 2]},
        "d": "text",
    }
    for bad in ("epochs", "=3", "a..b=1"):
        with pytest.raises(ConfigError, match=r"--set expects key\.path=value"):
            parse_set([bad])


def test_train_with_user_set_and_flags_from_the_command_line(project, capsys):
    (project / "configs" / "env_alice.yaml").write_text(
        ENV.format(root=project / "project_root", workers=0)
    )
    code, out, err = run(
        capsys,
        "train",
        "recipe.yaml",
        "-u",
        "alice",
        "--set",
        "data.batch_size=16",
        "--seed",
        "9",
        "--exp_name",
        "layered",
        "--device",
        "cpu",
    )
    assert code == 0, err
    folder = project / "project_root" / "experiments" / "layered"
    assert f"outputs in {folder}" in out
    saved = yaml.safe_load((folder / "config.yaml").read_text())["recipe"]
    assert (saved["name"], saved["seed"]) == ("layered", 9)
    assert saved["data"]["batch_size"] == 16 and saved["data"]["workers"] == 0
    assert saved["training"]["epochs"] == 1
    rows = (folder / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("main,1,")


def test_unknown_user_names_the_missing_file_and_the_known_users(project, capsys):
    code, out, err = run(capsys, "train", "recipe.yaml", "-u", "bob")
    assert code == 2 and out == ""
    assert_one_paragraph(err, "train")
    missing = project / "configs" / "env_bob.yaml"
    assert f"no environment file for user 'bob': {missing} is missing. Known users: alice." in err
    assert not (project / "project_root").exists()


def test_env_and_user_together_are_refused(project, capsys):
    code, _, err = run(capsys, "train", "recipe.yaml", "-u", "alice", "--env", "x.yaml")
    assert code == 2 and "give either --env or -u/--user, not both" in err


def test_env_option_takes_a_file_path(project):
    moved = project / "elsewhere.yaml"
    moved.write_text("TRAINING:\n  BATCH_SIZE: 8\n")
    recipe, _ = prepare_recipe(
        write(project, RECIPE.replace("  batch_size: 32\n", "")), env=str(moved)
    )
    assert recipe.data.batch_size == 8
