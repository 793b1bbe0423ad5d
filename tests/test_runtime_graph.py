"""The .bnnpack file and the NumPy executor: file checks (corruption, truncation,
format version), the runtime without PyTorch, every float operation against PyTorch,
the bit layout against the kernels, ONNX export, and the ``bnn export`` / ``bnn bench``
commands."""

from __future__ import annotations

import json
import statistics
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn import BConfig, convert
from bnn.cli import main
from bnn.deploy import export
from bnn.deploy.onnx import signed_twin
from bnn_core.registries import create_model
from bnn_runtime import kernels
from bnn_runtime.errors import RuntimeFormatError, RuntimeInputError
from bnn_runtime.executor import load
from bnn_runtime.format import BitTensor
from bnn_runtime.graph import Graph, Node
from tests.bnnpack_edit import read_parts, write_parts
from tests.networks import Everything
from tests.packing import assert_agree, randomise

SHAPE = (1, 28, 28)


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Every test builds its models from the same random state, whatever ran before:
    the runtime and PyTorch agree up to float rounding, and where rounding puts a
    binary layer's input exactly on its threshold the two may take different signs
    (see tests/packing.py), so the weights must not depend on the test order."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> tuple[nn.Module, Path]:
    """A small binarized LeNet-5 and its exported file."""
    torch.manual_seed(0)
    model = randomise(create_model("lenet5", binarize=True, width=8, hidden=32))
    path = tmp_path_factory.mktemp("pack") / "lenet.bnnpack"
    export(model, path, SHAPE, name="lenet5", source={"model": {"name": "lenet5", "options":
           {"width": 8, "hidden": 32}}})  # fmt: skip
    return model, path


def rewrite(source: Path, target: Path, change) -> Path:
    """A copy of ``source`` whose JSON header ``change`` edits, with a valid checksum."""
    header, data = read_parts(source)
    change(header)
    return write_parts(target, header, data)


def test_round_trip_keeps_graph_metadata_and_tensors(lenet):
    _, path = lenet
    network = load(path)
    assert network.metadata["model"] == "lenet5" and network.input_shape == [1, 28, 28]
    assert network.metadata["source"]["model"]["options"] == {"width": 8, "hidden": 32}
    binary = [node for node in network.nodes if node.op.startswith("binary")]
    assert [node.name for node in binary] == ["conv2", "fc1"]
    assert binary[1].modules == ["fc1", "bn3"]  # the batch norm folded into fc1


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "is truncated"),
        (lambda data: data[:20], "is truncated: 20 bytes, not even the preamble"),
        (lambda data: data[:-100] + bytes([data[-100] ^ 1]) + data[-99:], "checksum"),
        (lambda data: data + b"\0", "1 bytes follow the end"),
        (lambda data: data[:8] + struct.pack("<I", 7) + data[12:], "file format 7, this "
         "runtime reads format 1: upgrade bnn"),
        (lambda data: b"PK\x03\x04" + data[4:], "is not a .bnnpack file"),
        (lambda data: b"", "is empty"),
    ],
    ids=["half", "preamble", "bit_flip", "trailing", "version", "magic", "empty"],
)  # fmt: skip
def test_damaged_files_give_clear_errors(lenet, tmp_path, damage, message):
    _, path = lenet
    broken = tmp_path / "broken.bnnpack"
    broken.write_bytes(damage(path.read_bytes()))
    with pytest.raises(RuntimeFormatError, match=message):
        load(broken)


def test_a_valid_checksum_over_a_bad_graph_is_still_refused(lenet, tmp_path):
    _, path = lenet

    def unknown_op(header):
        header["graph"]["nodes"][0]["op"] = "gelu"

    def dangling(header):
        header["graph"]["nodes"][1]["inputs"] = ["nowhere"]

    def short_tensor(header):
        first = next(iter(header["tensors"].values()))
        first["nbytes"] -= 4

    with pytest.raises(RuntimeFormatError, match="unknown operation"):
        load(rewrite(path, tmp_path / "a.bnnpack", unknown_op))
    with pytest.raises(RuntimeFormatError, match="input 'nowhere' is not defined before it"):
        load(rewrite(path, tmp_path / "b.bnnpack", dangling))
    with pytest.raises(RuntimeFormatError, match="does not fit its"):
        load(rewrite(path, tmp_path / "c.bnnpack", short_tensor))
    with pytest.raises(RuntimeFormatError, match="does not exist"):
        load(tmp_path / "missing.bnnpack")


def test_runtime_runs_with_torch_hidden(lenet, tmp_path):
    model, path = lenet
    x = np.random.default_rng(0).standard_normal((5, *SHAPE), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import sys

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision", "pydantic"):
                    raise ImportError(f"{{name}} is hidden in this test")
                return None

        sys.meta_path.insert(0, Blocker())
        import numpy as np
        from bnn_runtime.executor import load

        network = load({str(path)!r})
        np.save({str(tmp_path / "y.npy")!r}, network(np.load({str(tmp_path / "x.npy")!r})))
        heavy = [m for m in sys.modules if m.split(".")[0] in ("torch", "pydantic", "bnn_models")]
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert_agree(expected, np.load(tmp_path / "y.npy"))


def test_input_errors(lenet):
    _, path = lenet
    network = load(path)
    with pytest.raises(RuntimeInputError, match=r"takes input of shape \[N, 1, 28, 28\]"):
        network(np.zeros((1, 3, 28, 28), np.float32))
    with pytest.raises(RuntimeInputError, match="float32 input"):
        network(np.zeros((1, 1, 28, 28), np.int64))


def test_every_float_operation_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = Everything()
    model.binary.bconfig = BConfig(
        activation_pre_process="input_bias", weight_pre_process="xnor_weight", pad_value=1
    )
    model = convert(model)
    with torch.no_grad():
        model.norm.running_var.uniform_(0.5, 2)
        model.binary.activation_pre_process.bias.uniform_(-0.2, 0.2)
    model.eval()
    shape = (4, 23, 19)
    export(model, tmp_path / "all.bnnpack", shape)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(x).numpy()
    got = load(tmp_path / "all.bnnpack")(x.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("channels", [32, 64, 100])
def test_bits_are_the_kernels_packed_layout(channels):
    weight = np.random.default_rng(channels).standard_normal((6, channels, 3, 3))
    stored = BitTensor.from_signs(weight.transpose(0, 2, 3, 1) >= 0)
    assert stored.nbytes == (6 * 9 * channels + 7) // 8
    np.testing.assert_array_equal(stored.words(), kernels.pack_weights(weight))
    np.testing.assert_array_equal(stored.signs(), weight.transpose(0, 2, 3, 1) >= 0)


def test_graph_check_names_the_problem():
    node = Node("a", "relu", ["input"])
    Graph("input", [3], [node], ["a"]).check()
    with pytest.raises(RuntimeFormatError, match="node 'b' \\(conv2d\\): missing attribute"):
        Graph("input", [3], [Node("b", "conv2d", ["input"], tensors={"weight": "w"})],
              ["b"]).check()  # fmt: skip
    with pytest.raises(RuntimeFormatError, match="takes 2 input"):
        Graph("input", [3], [Node("c", "add", ["input"])], ["c"]).check()
    with pytest.raises(RuntimeFormatError, match="graph output 'z' is not defined"):
        Graph("input", [3], [node], ["z"]).check()


def test_signed_twin_equals_the_model_and_exports_to_onnx(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet8_bireal", binarize="react", width=8).eval()
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        np.testing.assert_allclose(signed_twin(model)(x), model(x), rtol=1e-5, atol=1e-5)
    onnx = pytest.importorskip("onnx")
    from bnn.deploy import export_onnx

    path = export_onnx(model, tmp_path / "model.onnx", SHAPE)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    ops = {node.op_type for node in graph.graph.node}
    assert {"Where", "GreaterOrEqual", "Conv", "Mul"} <= ops and "Sign" not in ops


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_command(capsys, tmp_path):
    target = tmp_path / "lenet.bnnpack"
    code, out, _ = run(capsys, "export", "lenet5", "-o", str(target))
    assert code == 0 and target.exists()
    assert "bnn summary   predicts 123,048.000 B" in out and "the tensors match" in out
    assert "2 packed binary layers" in out
    code, out, _ = run(capsys, "export", "binarynet_mlp", "-o", str(tmp_path / "m.bnnpack"),
                       "--float16", "--json")  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["float_dtype"] == "float16" and report["size"]["matches"]
    assert report["file_bytes"] == (tmp_path / "m.bnnpack").stat().st_size
    code, _, err = run(capsys, "export", "lenet5", "--bconfig", "adabin", "-o",
                       str(tmp_path / "x.bnnpack"))  # fmt: skip
    assert code == 2 and "layer conv2" in err and "adabin_input is not packable" in err
    code, _, err = run(capsys, "export", "lenet_5", "-o", str(tmp_path / "y.bnnpack"))
    assert code == 2 and "Unknown model 'lenet_5'" in err


def test_export_command_with_onnx(capsys, tmp_path):
    pytest.importorskip("onnx")
    code, out, _ = run(capsys, "export", "lenet5", "-o", str(tmp_path / "l.bnnpack"), "--onnx")
    assert code == 0 and (tmp_path / "l.onnx").exists() and "onnx" in out


def test_bench_command(capsys, lenet, tmp_path):
    code, out, _ = run(capsys, "bench", "lenet5", "--rounds", "1", "--warmup", "0", "--no-peers")
    assert code == 0 and "whole network" in out and "conv2" in out and "binary_conv2d" in out
    _, path = lenet
    code, out, _ = run(
        capsys, "bench", str(path), "--rounds", "2", "--json", "--threads", "1", "--no-peers"
    )
    report = json.loads(out)
    assert code == 0 and report["rounds"] == 2 and report["threads"] == 1
    assert report["speedup"] == pytest.approx(report["torch_ms"] / report["runtime_ms"])
    assert len(report["round_speedups"]) == 2 and min(report["round_speedups"]) > 0
    assert report["paired_speedup"] == pytest.approx(statistics.median(report["round_speedups"]))
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["fc1"]["modules"] == ["fc1", "bn3"] and layers["fc1"]["torch_ms"] > 0
    assert layers["flatten"]["torch_ms"] is None
    orphan = rewrite(path, tmp_path / "o.bnnpack", lambda h: h["metadata"].pop("source"))
    code, _, err = run(capsys, "bench", str(orphan), "--rounds", "1")
    assert code == 2 and "does not record which registered model" in err
    broken = tmp_path / "broken.bnnpack"
    broken.write_bytes(path.read_bytes()[:-1])
    code, _, err = run(capsys, "bench", str(broken))
    assert code == 2 and "is truncated" in err
    code, _, err = run(capsys, "bench", "lenet5", "--rounds", "0")
    assert code == 2 and "--rounds must be a positive integer" in err


def test_bench_reports_a_bad_isa_switch_without_a_traceback(capsys, lenet, monkeypatch):
    _, path = lenet
    monkeypatch.setenv("BNN_RUNTIME_ISA", "sse9")
    code, out, err = run(capsys, "bench", str(path), "--rounds", "1", "--no-peers")
    assert code == 2 and out == ""
    assert "BNN_RUNTIME_ISA='sse9' is not an ISA path" in err and "Traceback" not in err


@pytest.mark.parametrize("batch", [1, 3])
def test_large_float_convolution_split_into_bands(batch, tmp_path):
    torch.manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3), nn.MaxPool2d(3, 2, 1)).eval()
    export(stem, tmp_path / "stem.bnnpack", (3, 192, 192))
    x = torch.randn(batch, 3, 192, 192)
    with torch.no_grad():
        expected = stem(x).numpy()
    got = load(tmp_path / "stem.bnnpack", threads=2)(x.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_large_pooling_split_into_bands(batch, ceil_mode):
    from bnn_runtime import float_ops

    x = torch.randn(batch, 64, 101, 97)
    nhwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())
    maximum = float_ops.max_pool2d(nhwc, (3, 3), (2, 2), (1, 1), ceil_mode, threads=2)
    average = float_ops.avg_pool2d(nhwc, (3, 3), (2, 2), (1, 1), ceil_mode, False, None, 2)
    expected_max = F.max_pool2d(x, 3, 2, 1, ceil_mode=ceil_mode).permute(0, 2, 3, 1)
    expected_avg = F.avg_pool2d(x, 3, 2, 1, ceil_mode=ceil_mode, count_include_pad=False)
    np.testing.assert_array_equal(maximum, expected_max.numpy())
    np.testing.assert_allclose(average, expected_avg.permute(0, 2, 3, 1).numpy(), atol=1e-6)


TOY_RECIPE = """\
version: 1
name: toy
seed: 0
model: {name: lenet5, width: 8, hidden: 16}
binarize: {bconfig: react}
data:
  dataset: {name: synthetic, learnable: true, length: 256}
  batch_size: 32
training:
  epochs: 1
  optimizers: {name: adam, lr: 0.01}
logging: {plot: false}
output: {dir: "runs/{name}"}
"""


def test_export_a_trained_checkpoint_and_its_recipe(capsys, tmp_path, monkeypatch):
    from bnn.deploy.source import load_source

    monkeypatch.chdir(tmp_path)
    Path("toy.yaml").write_text(TOY_RECIPE)
    code, _, err = run(capsys, "train", "toy.yaml", "--quiet", "--device", "cpu")
    assert code == 0, err
    code, out, _ = run(capsys, "export", "runs/toy/best.pt", "-o", "toy.bnnpack")
    assert code == 0 and "checkpoint runs/toy/best.pt (stage main, epoch 1)" in out
    code, out, _ = run(capsys, "export", "toy.yaml", "-o", "again.bnnpack", "--json")
    assert code == 0 and json.loads(out)["source"].startswith("checkpoint runs/toy/best.pt")
    source = load_source("runs/toy/best.pt")
    assert source.trained and type(source.model.conv2).__name__ == "BinaryConv2d"
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = source.model(x).numpy()
    assert_agree(expected, load("toy.bnnpack")(x.numpy()))
    network = load("again.bnnpack")
    assert network.metadata["source"]["model"] == {
        "name": "lenet5",
        "options": {"width": 8, "hidden": 16},
    }
