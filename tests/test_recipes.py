"""Every shipped recipe validates, and trains for one step per stage on generated data of
the shape its real data set has (the CIFAR and ImageNet recipes cannot run here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from bnn.training.runner import prepare_recipe, train_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
# A shape per data set, reduced where the models allow it to keep the step cheap.
SHAPES = {
    "fashion_mnist": [1, 28, 28],
    "mnist": [1, 28, 28],
    "cifar10": [3, 32, 32],
    "imagefolder": [3, 64, 64],
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def on_generated_data(data: dict, classes: int) -> dict:
    """The recipe with two generated samples instead of its data and one epoch a stage."""
    dataset = data["data"]["dataset"]
    name = dataset if isinstance(dataset, str) else dataset["name"]
    data["data"] = {
        "dataset": {
            "name": "synthetic",
            "shape": SHAPES[name],
            "num_classes": classes,
            "length": 2,
            "learnable": True,
        },
        "batch_size": 2,
    }
    data.setdefault("training", {}).update(epochs=1, amp=False)
    for stage in data.get("stages", []):
        stage.setdefault("training", {})["epochs"] = 1
    if "distillation" in data:  # no teacher weights here: an untrained teacher
        data["distillation"]["teacher"].pop("checkpoint", None)
    data["logging"] = {"plot": False}
    return data


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_trains_one_step_on_generated_data(path, tmp_path):
    original, _ = prepare_recipe(path)
    classes = original.model.options.get("num_classes", 10)
    smoke = tmp_path / path.name
    smoke.write_text(yaml.safe_dump(on_generated_data(yaml.safe_load(path.read_text()), classes)))
    recipe, _ = prepare_recipe(smoke)
    result = train_recipe(recipe, tmp_path / "run", device="cpu", quiet=True)
    assert [row["stage"] for row in result.history] == [s.name for s in original.stages_to_run()]
    assert all(0.0 <= row["eval_acc"] <= 1.0 for row in result.history)
    assert (tmp_path / "run" / "last.pt").exists()
