"""The trained model that ships in bnn_models: its files match its model card, it loads by
name, fine-tunes from a recipe, and ``bnn eval`` reproduces the card's accuracy in PyTorch
and in the packed runtime."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from bnn.cli import main
from bnn_core.layers import is_binary_layer
from bnn_core.registries import create_model

NAME = "lenet5_fashion_mnist"
FOLDER = Path(__file__).resolve().parents[1] / "bnn_models" / "weights"
CARD = yaml.safe_load((FOLDER / f"{NAME}.card.yaml").read_text())
FULL_DATA = Path("/usr/share/datasets/fashion-mnist")


def run_json(capsys, *arguments: str) -> dict:
    assert main([*arguments, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_files_are_those_the_card_describes():
    for name, described in CARD["files"].items():
        data = (FOLDER / name).read_bytes()
        assert len(data) == described["bytes"]
        assert hashlib.sha256(data).hexdigest() == described["sha256"]
    assert CARD["sha256"] == CARD["files"][f"{NAME}.pt"]["sha256"]


def test_it_loads_by_name_binarized_and_is_listed(capsys):
    model = create_model(NAME, pretrained=True)
    binary = [name for name, module in model.named_modules() if is_binary_layer(module)]
    assert binary == ["conv2", "fc1"]
    untrained = create_model(NAME)
    assert not torch.equal(model.fc1.weight, untrained.fc1.weight)
    rows = run_json(capsys, "list", "models", "lenet5*")
    assert {row["name"]: row["pretrained"] for row in rows} == {"lenet5": False, NAME: True}


def test_bnn_eval_reproduces_the_cards_embedded_test_accuracy(capsys):
    expected = CARD["accuracy"]["embedded_test"]
    result = run_json(capsys, "eval", NAME)
    assert result["samples"] == expected["images"] == 2000
    assert round(result["eval_acc"], 4) == expected["pytorch"]
    packed = run_json(capsys, "eval", str(FOLDER / f"{NAME}.bnnpack"))
    assert round(packed["eval_acc"], 4) == expected["packed_runtime"]


@pytest.mark.skipif(not FULL_DATA.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_bnn_eval_reproduces_the_cards_full_test_accuracy(capsys):
    expected = CARD["accuracy"]["full_test"]
    result = run_json(capsys, "eval", NAME, "--root", str(FULL_DATA))
    assert result["samples"] == expected["images"] == 10_000
    assert round(result["eval_acc"], 4) == expected["pytorch"] >= 0.938


def test_a_recipe_fine_tunes_from_the_shipped_weights(tmp_path):
    from bnn.recipe import load_recipe

    recipe = tmp_path / "fine_tune.yaml"
    recipe.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            name: fine_tune
            model: {{name: {NAME}, pretrained: true}}
            binarize: default
            """
        )
    )
    built = load_recipe(recipe).build_model().state_dict()
    shipped = create_model(NAME, pretrained=True).state_dict()
    assert built.keys() == shipped.keys()
    assert all(torch.equal(built[k], shipped[k]) for k in built)


def test_the_packed_files_float_twin_is_float():
    from bnn.deploy.bench import float_twin_from_metadata
    from bnn_runtime.executor import load

    twin = float_twin_from_metadata(load(FOLDER / f"{NAME}.bnnpack"))
    assert not any(is_binary_layer(module) for module in twin.modules())
    assert isinstance(twin.fc1, torch.nn.Linear)


def test_eval_errors_are_one_clear_line(capsys, tmp_path):
    assert main(["eval", "lenet5"]) == 2
    assert "ships no weights" in capsys.readouterr().err
    checkpoint = tmp_path / "run.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    assert main(["eval", str(checkpoint), "--root", str(tmp_path)]) == 2
    assert "apply to a model name or a .bnnpack" in capsys.readouterr().err
    foreign = tmp_path / "foreign.bnnpack"
    foreign.write_bytes(b"\x00" * 64)
    assert main(["eval", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "foreign.bnnpack" in err
