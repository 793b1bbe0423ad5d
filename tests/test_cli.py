"""The ``bnn`` command line: outputs, exit codes and one-paragraph errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = str(ROOT / "recipes" / "default.yaml")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_no_command_prints_help(capsys):
    code, out, _ = run(capsys)
    assert code == 2 and "list-plugins" in out and "validate" in out


def test_list_plugins_hides_builtins_unless_all(capsys):
    code, out, _ = run(capsys, "list-plugins")
    assert code == 0 and "No third-party plugins installed" in out and "use --all" in out
    code, out, _ = run(capsys, "list-plugins", "--all")
    assert code == 0
    for text in ("bnn_binarizers", "bnn-core", "bnn_binarizers.plugin", "ste_sign", "loaded"):
        assert text in out


def test_list_plugins_json(capsys):
    code, out, _ = run(capsys, "list-plugins", "--json")
    data = json.loads(out)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert code == 0 and data["conflicts"] == {}
    assert {"lenet5", "binarynet_mlp"} <= set(plugins["bnn_models"]["registered"]["model"])
    assert plugins["bnn_models"]["distribution"] == "bnn-core"
    assert {"version", "module", "status", "error", "builtin"} <= set(plugins["bnn_models"])


def test_list_binarizers_with_pattern(capsys):
    code, out, _ = run(capsys, "list", "binarizers", "*sign*")
    assert code == 0 and "approx_sign" in out and "ste_sign" in out and "xnor" not in out
    code, out, _ = run(capsys, "list", "binarizers")
    assert "  magnitude_aware_sign  " in out  # names are never folded in the table
    code, out, _ = run(capsys, "list", "binarizers", "xnor*", "--json")
    (row,) = json.loads(out)
    assert row["name"] == "xnor_weight" and row["roles"] == ["weight"]
    assert row["options"] == {"compute_alpha": True, "center_weights": False}
    assert row["value_set"] == "alpha*{-1,+1}" and row["packable"] is True
    assert "XNORWeightBinarizer" in row["aliases"]


def test_list_layers_models_datasets(capsys):
    assert "bnn_core.layers:BinaryConvTranspose2d" in run(capsys, "list", "layers")[1]
    models = json.loads(run(capsys, "list", "models", "--json")[1])
    assert {"lenet5", "binarynet_mlp"} <= {m["name"] for m in models}
    assert next(m for m in models if m["name"] == "lenet5")["options"]["num_classes"] == 10
    _, out, _ = run(capsys, "list", "datasets")
    assert "fashion_mnist" in out and "synthetic" in out
    assert "No models match" in run(capsys, "list", "models", "zzz*")[1]


def test_validate_accepts_the_default_recipe(capsys):
    code, out, _ = run(capsys, "validate", DEFAULT)
    assert code == 0 and "valid (model lenet5, 2 of 4 layers binarized)" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\n  model: lenet5\n", "is not valid YAML at line 2, column 8"),
        ("- just\n- a list\n", "must contain a mapping at the top level"),
        ("version: 1\nmodel: lenet6\n", "Unknown model 'lenet6'. Did you mean 'lenet5'?"),
        ("version: 1\nmodel: {name: lenet5, width: wide}\n", "parameter 'width'"),
        ("version: 1\nmodel: lenet5\nepochs: 3\n", "epochs: unknown key"),
        ("version: 2\nmodel: lenet5\n", "version: Input should be 1"),
        (
            "version: 1\nmodel: lenet5\nbinarize:\n  bconfig: {activation_pre_process: ste_sgn}\n",
            "binarize.bconfig.activation_pre_process: Unknown binarizer 'ste_sgn'. Did you mean",
        ),
        (
            "version: 1\nmodel: lenet5\nbinarize:\n  bconfig:\n"
            "    weight_pre_process: {name: xnor_weight, compute_alpha: maybe}\n",
            "parameter 'compute_alpha'",
        ),
        (
            "version: 1\nmodel: lenet5\nbinarize:\n  bconfig: {activation_pre_process: ste_sign}\n"
            "  ignore_layers_name: [fc3]\n",
            "the model has no module named 'fc3'. Did you mean 'fc2'",
        ),
    ],
)
def test_validate_reports_bad_configs_with_exit_2(capsys, tmp_path, text, expected):
    code, out, err = run(capsys, "validate", write(tmp_path, text))
    assert code == 2 and out == ""
    assert err.startswith("bnn validate: error: ")
    assert expected in err
    assert "Traceback" not in err


def test_validate_lists_every_problem(capsys, tmp_path):
    text = """
        version: 1
        model: {name: lenet5, depth: 3}
        binarize:
          bconfig: {activation_pre_process: nope, weight_pre_process: {name: ste_sign, c: 2}}
        extra_key: 1
    """
    code, _, err = run(capsys, "validate", write(tmp_path, text))
    assert code == 2 and "(4 problems)" in err
    for location in ("model:", "activation_pre_process:", "weight_pre_process:", "extra_key:"):
        assert f"  - {location}" in err or f".{location}" in err


def test_missing_config_file(capsys, tmp_path):
    code, _, err = run(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert code == 2 and "does not exist" in err


def test_config_schema_is_built_from_the_registries(capsys):
    code, out, _ = run(capsys, "config-schema")
    schema = json.loads(out)
    assert code == 0 and schema["additionalProperties"] is False
    assert set(schema["properties"]) >= {"version", "model", "binarize", "data"}
    text = json.dumps(schema)
    assert '"xnor_weight"' in text and '"lenet5"' in text and '"fashion_mnist"' in text


def test_explain_prints_the_plan(capsys):
    code, out, _ = run(capsys, "explain", DEFAULT)
    assert code == 0
    assert "lenet5(width=32): 2 of 4 layers binarized" in out
    assert "custom_config_layers_name['_first_']" in out
    assert "xnor_weight(compute_alpha=True)" in out


def test_explain_forward_runs_a_batch_through_the_binary_model(capsys):
    code, out, _ = run(capsys, "explain", DEFAULT, "--forward", "--json")
    result = json.loads(out)
    forward = result["forward"]
    assert code == 0 and forward["input_shape"] == [128, 1, 28, 28]
    assert forward["output_shape"] == [128, 10]
    assert forward["binary_layers"]["conv2"]["input_values"] == "{-1, +1}"
    assert forward["binary_layers"]["fc1"]["weight_values"] == "{-1, +1}"
    assert [layer["binarize"] for layer in result["layers"]] == [False, True, True, False]


def test_errors_in_a_subprocess_have_no_traceback(tmp_path):
    config = write(tmp_path, "version: 1\nmodel: lenet6\n")
    result = subprocess.run(
        [sys.executable, "-m", "bnn", "validate", config],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Unknown model 'lenet6'" in result.stderr and "Traceback" not in result.stderr
