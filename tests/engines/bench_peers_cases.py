"""The engines ``bnn bench`` times beside the packed network (bnn.deploy.peers): each
peer builds from the float twin and agrees with PyTorch, a missing or broken one is a
one-line note, and the command's table, throughput and JSON carry them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bnn.cli import main
from bnn.deploy import export, peers
from bnn.deploy.source import float_twin
from bnn_core.errors import ConfigError
from bnn_core.registries import create_model
from bnn_runtime.executor import load

SHAPE = (1, 28, 28)
RECIPE = Path(__file__).parents[2] / "recipes" / "default.yaml"


@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """The default binarized LeNet-5 (random weights) and its exported file."""
    torch.manual_seed(0)
    model = create_model("lenet5", binarize=True).eval()
    path = tmp_path_factory.mktemp("peers") / "lenet.bnnpack"
    export(model, path, SHAPE, name="lenet5", source={"model": {"name": "lenet5", "options": {}}})
    return model, path


def bench(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["bench", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_peer_builds_and_agrees_with_torch(lenet, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    model, path = lenet
    twin = float_twin(model)
    calibration, described = peers.random_calibration(SHAPE, batch=2, images=8)
    assert len(calibration) == 4 and calibration[0].shape == (2, *SHAPE)
    assert described.startswith("8 random normal images")
    built, notes = peers.build_peers(twin, SHAPE, 2, calibration, tmp_path)
    assert notes == [] and [peer.name for peer in built] == list(peers.PEER_NAMES)
    with torch.no_grad():
        scale = float(np.abs(twin(torch.from_numpy(calibration[0])).numpy()).max())
    by_name = {peer.name: peer for peer in built}
    assert by_name["torch"].max_abs_diff == 0 and by_name["torch"].top1_agreement == 1
    assert by_name["ort"].max_abs_diff < 1e-4 * scale and by_name["ort"].top1_agreement == 1
    # OpenVINO may run the float layers in bf16 (its default on CPUs with bf16 units)
    assert by_name["ov"].max_abs_diff < 0.02 * scale
    for name in ("ort-int8", "ov-int8"):
        assert 0 < by_name[name].max_abs_diff < 0.2 * scale
        assert by_name[name].top1_agreement >= 0.5
    network = load(path, threads=2)
    report = peers.race(network, calibration[0], built, rounds=2, warmup=0)
    assert report.batch == 2 and report.rounds == 2 and report.packed_ms > 0
    for timing in report.peers:
        assert timing.speedup == pytest.approx(timing.ms / report.packed_ms)
        assert timing.images_per_second == pytest.approx(2e3 / timing.ms)


def test_a_missing_or_broken_peer_is_a_note(lenet, tmp_path, monkeypatch):
    model, _ = lenet
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now fails

    def broken(*_args, **_kwargs):
        raise RuntimeError("no CPU provider")

    monkeypatch.setattr(peers, "_ort_peer", broken)
    calibration, _ = peers.random_calibration(SHAPE, batch=1, images=2)
    built, notes = peers.build_peers(
        float_twin(model), SHAPE, 1, calibration, tmp_path, ("torch", "ort", "ov")
    )
    assert [peer.name for peer in built] == ["torch"]
    assert notes == [
        "ort: could not be built (RuntimeError: no CPU provider)",
        "ov: openvino not installed: pip install bnn-core[bench]",
    ]


def test_bench_prints_the_peers_and_the_throughput_at_a_batch(lenet, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    _, path = lenet
    monkeypatch.setitem(sys.modules, "openvino", None)
    code, out, _ = bench(capsys, str(path), "--batch", "4", "--rounds", "1", "--warmup", "0",
                         "--peers", "ort,ov")  # fmt: skip
    assert code == 0 and "whole network" in out
    assert "throughput at batch 4: packed" in out and "images/s" in out
    assert "ONNX Runtime" in out and "packed is … faster" in out
    assert "calibrated on 16 random normal images" in " ".join(out.split())
    assert "not timed: ov: openvino not installed: pip install bnn-core[bench]" in out


def test_bench_json_carries_the_peers(lenet, capsys):
    pytest.importorskip("onnxruntime")
    _, path = lenet
    code, out, _ = bench(capsys, str(path), "--json", "--rounds", "2", "--warmup", "0",
                         "--peers", "ort-int8,torch", "--calibrate", str(RECIPE))  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["images_per_second"] == pytest.approx(1e3 / report["runtime_ms"])
    race = report["peers"]
    assert race["rounds"] == 2 and race["batch"] == 1 and race["notes"] == []
    assert race["calibration"].startswith("16 images of fashion_mnist (training split")
    assert [peer["name"] for peer in race["peers"]] == ["torch", "ort-int8"]
    for peer in race["peers"]:
        assert peer["speedup"] == pytest.approx(peer["ms"] / race["packed_ms"])
        assert peer["images_per_second"] == pytest.approx(1e3 / peer["ms"])
        assert peer["max_abs_diff"] is not None and 0 <= peer["top1_agreement"] <= 1
    code, out, _ = bench(capsys, str(path), "--json", "--rounds", "1", "--no-peers")
    assert code == 0 and "peers" not in json.loads(out)


def test_bench_refuses_unknown_peers_and_a_mismatched_recipe(lenet, capsys):
    _, path = lenet
    code, _, err = bench(capsys, str(path), "--peers", "ort,tensorrt")
    assert code == 2 and "--peers names unknown engines ['tensorrt']" in err
    with pytest.raises(ConfigError, match=r"fashion_mnist have shape \[1, 28, 28\], the model"):
        peers.recipe_calibration(RECIPE, (3, 28, 28), batch=1)
    code, _, err = bench(capsys, str(path), "--calibrate", "missing.yaml")
    assert code == 2 and "missing.yaml" in err and "Traceback" not in err
