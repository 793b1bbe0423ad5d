"""A ``.bnnpack`` whose header was edited on purpose (checksum recomputed) is refused
before anything is planned, with a message naming the file, the node and the field;
a network called with another input size checks it first; ``bnn bench FILE`` rebuilds
the float twin its metadata names only within limits."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnn import BConfig, prepare_binary_model
from bnn.cli import main
from bnn.deploy import export
from bnn.deploy.bench import float_twin_from_metadata
from bnn_core.errors import ConfigError
from bnn_runtime import validate
from bnn_runtime.errors import RuntimeFormatError, RuntimeInputError
from bnn_runtime.executor import load
from tests.bnnpack_edit import read_parts, write_parts, write_raw

SHAPE = (3, 12, 10)


class Small(nn.Module):
    """A float and a binary convolution with a fused shortcut and PReLU, both poolings,
    concatenation, slicing, padding, a scalar, a float and a binary linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.binary = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(8)
        self.act = nn.PReLU(8)
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.average = nn.AvgPool2d(2, ceil_mode=True)
        self.fc = nn.Linear(16 * 5 * 6, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.act(self.norm(self.binary(x)) + x)
        z = torch.cat([self.pool(y), self.average(y)], dim=1)
        z = F.pad(z[:, :, ::2, :], (1, 0, 1, 1)) * 0.5
        z = self.fc(z.flatten(1))
        return F.softmax(self.head(F.hardtanh(z)), dim=1)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[nn.Module, Path]:
    """The model (eval mode, binarized but for its first and hidden linear layer) and
    its exported file."""
    torch.manual_seed(0)
    bconfig = BConfig(activation_pre_process="input_bias", weight_pre_process="xnor_weight")
    model = prepare_binary_model(Small(), bconfig, ignore_layers_name=["stem", "fc"]).eval()
    path = tmp_path_factory.mktemp("validate") / "small.bnnpack"
    export(model, path, SHAPE)
    return model, path


def node(header: dict[str, Any], name: str) -> dict[str, Any]:
    return next(n for n in header["graph"]["nodes"] if n["name"] == name)


def attr(name: str, key: str, value: Any):
    def change(header: dict[str, Any]) -> None:
        node(header, name)["attrs"][key] = value

    return change


def tensor_shape(name: str, shape: list[int]):
    """The tensor keeps its offset, its entry a shorter or reshaped extent."""

    def change(header: dict[str, Any]) -> None:
        entry = header["tensors"][name]
        count = int(np.prod(shape))
        entry["shape"] = shape
        entry["nbytes"] = (count + 7) // 8 if entry["dtype"] == "bits" else 4 * count

    return change


def edited(source: Path, target: Path, change) -> Path:
    header, data = read_parts(source)
    header = copy.deepcopy(header)
    change(header)
    return write_parts(target, header, data)


def refused(path: Path, change, pattern: str, tmp_path: Path) -> str:
    with pytest.raises(RuntimeFormatError, match=pattern) as caught:
        load(edited(path, tmp_path / "edited.bnnpack", change))
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "edited.bnnpack")), message
    assert "\n" not in message
    return message


def test_the_untouched_file_loads_runs_and_round_trips_through_the_editor(small, tmp_path):
    model, path = small
    copy_path = edited(path, tmp_path / "same.bnnpack", lambda header: None)
    assert copy_path.read_bytes() == path.read_bytes()
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(load(copy_path)(x.numpy()), expected, rtol=1e-4, atol=1e-6)


ATTRIBUTES = [
    ("binary", "padding", [1, 99999999999], r"attribute 'padding' must be a pair of ints in "
     r"\[0, 4096\], got \[1, 99999999999\]"),
    ("stem", "padding", [1 << 40, 1], "attribute 'padding' must be a pair"),
    ("stem", "dilation", [-1, 1], r"attribute 'dilation' must be a pair of ints in \[1, 1024\]"),
    ("stem", "kernel_size", "3", "attribute 'kernel_size' must be a pair of ints"),
    ("stem", "kernel_size", [3.0, 3], "attribute 'kernel_size' must be a pair of ints"),
    ("stem", "kernel_size", [3], "attribute 'kernel_size' must be a pair of ints"),
    ("stem", "kernel_size", [True, 3], "attribute 'kernel_size' must be a pair of ints"),
    ("stem", "kernel_size", None, "attribute 'kernel_size' must be a pair of ints"),
    ("stem", "stride", [0, 1], "attribute 'stride' must be a pair of ints"),
    ("stem", "groups", True, "attribute 'groups' must be an int"),
    ("stem", "groups", 1e30, "attribute 'groups' must be an int"),
    ("stem", "groups", 2**70, "attribute 'groups' must be an int"),
    ("stem", "groups", 3, r"attribute 'groups' \(3\) must divide in_channels \(3\) and "
     r"out_channels \(8\)"),
    ("stem", "kernel_size", [5, 5], r"tensor 'weight' \('stem.weight'\) must be float32 or "
     r"float16 of shape \[8, 3, 5, 5\], got float32 \[8, 3, 3, 3\]"),
    ("stem", "in_channels", 4, "attribute 'in_channels' is 4, but its input has 3 channels"),
    ("binary", "pad_value", 2, "attribute 'pad_value' must be one of 0, 1 and -1"),
    ("binary", "out_channels", 16, r"tensor 'weight' \('binary.weight'\) must be bits of "
     r"shape \[16, 3, 3, 8\], got bits \[8, 3, 3, 8\]"),
    ("pool", "ceil_mode", 1, "attribute 'ceil_mode' must be a boolean"),
    ("pool", "padding", [2, 2], r"attribute 'padding' \[2, 2\] must be at most half of "
     r"kernel_size \[3, 3\]"),
    ("pool", "kernel_size", [64, 3], r"its 64x3 kernel does not fit its 12x10 input"),
    ("average", "divisor", 0, r"attribute 'divisor' must be null or an int in \[1, "),
    ("average", "count_include_pad", None, "attribute 'count_include_pad' must be a boolean"),
    ("getitem", "axis", 0, r"attribute 'axis' must be an int in \[1, 3\]"),
    ("getitem", "start", 6, "slice 6:6:2 of axis 2 \\(length 6\\) is empty"),
    ("getitem", "step", -1, "attribute 'step' must be an int in"),
    ("pad", "pads", [1, -1, 0, 0], r"attribute 'pads' must be a list of 2, 4 or 6 ints"),
    ("pad", "pads", [1] * 8, r"attribute 'pads' must be a list of 2, 4 or 6 ints"),
    ("pad", "value", float("nan"), "attribute 'value' must be a finite number"),
    ("mul", "mul", float("inf"), "attribute 'mul' must be a finite number"),
    ("mul", "add", "0", "attribute 'add' must be a finite number"),
    ("mul", "extra", 1, "unknown attribute\\(s\\) 'extra'"),
    ("fc", "in_features", 481, "attribute 'in_features' is 481, but its input has 480 features"),
    ("head", "in_features", [16], "attribute 'in_features' must be an int"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "key", "value", "pattern"),
    ATTRIBUTES,
    ids=[f"{name}.{key}={str(value)[:12]}" for name, key, value, _ in ATTRIBUTES],
)
def test_attribute_of_the_wrong_type_or_range_is_refused(small, tmp_path, name, key, value,
                                                          pattern):  # fmt: skip
    _, path = small
    header, _ = read_parts(path)
    op = node(header, name)["op"]
    message = refused(path, attr(name, key, value), pattern, tmp_path)
    assert f"node {name!r} ({op}): " in message


TENSORS = [
    (tensor_shape("stem.weight", [8, 3, 9, 1]), "stem", r"tensor 'weight' \('stem.weight'\) "
     r"must be float32 or float16 of shape \[8, 3, 3, 3\], got float32 \[8, 3, 9, 1\]"),
    (tensor_shape("stem.bias", [4]), "stem", r"tensor 'bias' .* of shape \[8\], got float32 \[4\]"),
    (tensor_shape("binary.scale", [1]), "binary", r"tensor 'scale' .* of shape \[8\]"),
    (tensor_shape("binary.threshold", [8, 1]), "binary", r"tensor 'threshold' .* shape \[8\]"),
    (tensor_shape("act.slope", [3]), "act", r"tensor 'slope' .* of shape \[8\] or \[1\]"),
    (tensor_shape("head.threshold", [4]), "head", r"tensor 'threshold' .* of shape \[16\]"),
    (tensor_shape("head.weight", [4, 8]), "head", r"tensor 'weight' .* bits of shape \[4, 16\]"),
    (lambda h: node(h, "stem")["tensors"].update(weight="binary.weight"), "stem",
     r"tensor 'weight' \('binary.weight'\) must be float32 or float16 .* got bits"),
    (lambda h: node(h, "binary")["tensors"].update(weight="stem.weight"), "binary",
     r"tensor 'weight' \('stem.weight'\) must be bits"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "name", "pattern"), TENSORS)
def test_tensor_of_the_wrong_dtype_or_shape_is_refused(small, tmp_path, change, name, pattern):
    _, path = small
    message = refused(path, change, pattern, tmp_path)
    assert f"node {name!r} (" in message


def test_a_prelu_slope_of_one_value_is_legitimate(small, tmp_path):
    _, path = small
    network = load(edited(path, tmp_path / "one.bnnpack", tensor_shape("act.slope", [1])))
    assert network(np.ones((1, *SHAPE), np.float32)).shape == (1, 4)


def rename(header: dict[str, Any], old: str, new: str) -> None:
    node(header, old)["name"] = new


GRAPHS = [
    (lambda h: node(h, "add").update(inputs=["binary", "input"]), "node 'add' \\(add\\): adds "
     r"values of different shapes \[8, 12, 10\] and \[3, 12, 10\]"),
    (lambda h: node(h, "cat").update(inputs=["pool", "act"]), "node 'cat' \\(cat\\): "
     "concatenates values that differ in rank or beyond the channel axis"),
    (lambda h: node(h, "softmax").update(inputs=["act"]), r"softmax takes a \[features\] input"),
    (lambda h: node(h, "fc").update(inputs=["act"]), r"linear takes a \[features\] input"),
    (lambda h: node(h, "pool").update(inputs=["nowhere"]), "input 'nowhere' is not defined"),
    (lambda h: node(h, "pool").update(inputs=["cat"]), "input 'cat' is not defined before it"),
    (lambda h: node(h, "pool").update(name="stem"), "node 'stem' \\(max_pool2d\\): the name is "
     "defined twice"),
    (lambda h: node(h, "pool").update(name="input"), "the name is defined twice"),
    (lambda h: node(h, "pool").update(op="gelu"), "node 'pool' \\(gelu\\): unknown operation"),
    (lambda h: node(h, "pool").update(shape=[8, 6, 6]), r"node 'pool' \(max_pool2d\): its "
     r"recorded shape \[8, 6, 6\] differs from the \[8, 6, 5\]"),
    (lambda h: node(h, "pool").update(shape=[8, 6.0, 5]), "node 'pool'.*'shape' must be a list "
     "of ints"),
    (lambda h: node(h, "pool").update(name=7), "node #4.*'name' must be a string"),
    (lambda h: node(h, "pool").update(inputs="act"), "node 'pool'.*'inputs' must be a list"),
    (lambda h: node(h, "pool").update(attrs=[]), "node 'pool'.*'attrs' must be an object"),
    (lambda h: node(h, "stem")["tensors"].update(weight="absent"), "node 'stem' \\(conv2d\\): "
     "its weight tensor 'absent' is not stored"),
    (lambda h: node(h, "stem")["tensors"].pop("weight"), "tensor\\(s\\) weight missing"),
    (lambda h: node(h, "stem")["tensors"].update(gain="stem.bias"), "unknown tensor role"),
    (lambda h: node(h, "stem")["tensors"].pop("bias"), "tensor 'stem.bias' is stored but no "
     "node uses it"),
    (lambda h: h["graph"].update(outputs=["nothing"]), "graph output 'nothing' is not defined"),
    (lambda h: h["graph"].update(outputs=[]), "the graph has no output"),
    (lambda h: h["graph"]["inputs"][0].update(shape=[3, 70000, 10]), "the graph input 'input': "
     r"every dimension of a sample must be in \[1, 65,536\]"),
    (lambda h: h["graph"]["inputs"][0].update(shape=[3, 12]), r"a sample must be \[features\] "
     r"or \[C, H, W\]"),
    (lambda h: h["graph"]["inputs"][0].update(dtype="int8"), "the graph input must be float32"),
    (lambda h: h["graph"]["inputs"].append(h["graph"]["inputs"][0]), "exactly one input"),
    (lambda h: h.update(metadata=[1]), "'metadata' must be an object"),
    (lambda h: h.update(version=2), "the header's version 2 differs"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "pattern"), GRAPHS)
def test_broken_graph_is_refused(small, tmp_path, change, pattern):
    _, path = small
    refused(path, change, pattern, tmp_path)


def entry(name: str, **fields: Any):
    return lambda h: h["tensors"][name].update(fields)


LAYOUTS = [
    (entry("stem.bias", offset=0), "tensor 'stem.bias' at offset 0 overlaps tensor "
     "'stem.weight'|tensor 'stem.weight' at offset 0 overlaps tensor 'stem.bias'"),
    (entry("stem.bias", offset=-16), "tensor 'stem.bias': its 'offset' must be an int >= 0"),
    (entry("stem.bias", offset=868), "its offset 868 is not a multiple of 16"),
    (entry("stem.bias", offset=1 << 40), "ends beyond the .*-byte data section"),
    (entry("stem.bias", offset="864"), "its 'offset' must be an int"),
    (entry("stem.bias", dtype="float64"), "unknown dtype 'float64'"),
    (entry("stem.bias", dtype=["float32"]), r"unknown dtype \[.float32.\]"),
    (entry("stem.bias", shape=[0], nbytes=0), r"its shape must be a list of 1 to 4 ints"),
    (entry("stem.bias", shape=[True] * 8), r"its shape must be a list of 1 to 4 ints"),
    (entry("stem.bias", shape=[1 << 20, 1 << 20]), r"its shape must be a list"),
    (entry("stem.bias", shape=[8.0]), r"its shape must be a list of 1 to 4 ints"),
    (entry("stem.bias", nbytes=28), "does not fit its 28 bytes: it needs 32"),
    (entry("stem.bias", extra=1), "exactly 'dtype', 'shape', 'offset' and 'nbytes'"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "pattern"), LAYOUTS)
def test_tensor_entry_out_of_its_bounds_is_refused(small, tmp_path, change, pattern):
    _, path = small
    message = refused(path, change, pattern, tmp_path)
    assert "tensor '" in message


def test_limits_on_the_number_of_nodes_and_the_header(small, tmp_path, monkeypatch):
    _, path = small
    monkeypatch.setattr(validate, "MAX_NODES", 5)
    refused(path, lambda h: None, "the graph has 14 nodes, over 5", tmp_path)
    monkeypatch.undo()
    monkeypatch.setattr(validate, "MAX_HEADER_BYTES", 100)
    refused(path, lambda h: None, "header length .* is over the limit of 100 bytes", tmp_path)


@pytest.mark.parametrize(
    ("header", "pattern"),
    [
        (b'{"format": "bnnpack", "format": "bnnpack"}', "the key 'format' appears twice"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"version": 1' + b"0" * 5000 + b"}", "cannot be parsed"),
        (b"\xff\xfe", "cannot be parsed"),
    ],
    ids=["duplicate_key", "deep", "long_int", "not_utf8"],
)
def test_header_that_is_not_plain_json_is_refused(small, tmp_path, header, pattern):
    _, path = small
    _, data = read_parts(path)
    with pytest.raises(RuntimeFormatError, match=pattern):
        load(write_raw(tmp_path / "raw.bnnpack", header, data))


def test_call_with_another_input_size_is_checked_first(small):
    _, path = small
    network = load(path)
    x = torch.randn(1, 3, 20, 18, generator=torch.Generator().manual_seed(2))
    with pytest.raises(RuntimeInputError, match=r"input of shape \[N, 3, 20, 18\]: node 'fc' "
                       r"\(linear\): attribute 'in_features' is 480, but its input has "
                       "[0-9,]+ features"):  # fmt: skip
        network(x.numpy())
    with pytest.raises(RuntimeInputError, match=r"every dimension of a sample must be in"):
        network(np.zeros((1, 3, 1, 70_000), np.float32))
    with pytest.raises(RuntimeInputError, match="holds no sample"):
        network(np.zeros((0, *SHAPE), np.float32))


def test_any_input_size_whose_outputs_are_not_empty_runs(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    export(model, tmp_path / "any.bnnpack", (1, 6, 6))
    network = load(tmp_path / "any.bnnpack")
    x = torch.randn(2, 1, 9, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(network(x.numpy()), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeInputError, match=r"input of shape \[N, 1, 2, 5\]: node '0' "
                       r"\(conv2d\): its 3x3 kernel does not fit its 2x5 input padded by 0x0: "
                       "the output would be 0x3"):  # fmt: skip
        network(np.zeros((1, 1, 2, 5), np.float32))


def test_executor_refuses_a_short_vector_that_validation_let_through(small, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    _, path = small
    short = edited(path, tmp_path / "short.bnnpack", tensor_shape("binary.bias", [4]))
    monkeypatch.setattr(validate._Tensors, "expect", lambda self, role, *shapes, bits=False: None)
    with pytest.raises(RuntimeFormatError, match=r"node 'binary' \(binary_conv2d\): tensor "
                       "'bias' must hold 8 values, got shape \\[4\\]"):  # fmt: skip
        load(short)


def lenet_file(tmp_path: Path, options: Any, name: Any = "lenet5") -> Path:
    """A small exported LeNet-5 whose metadata records ``name`` and ``options``."""
    torch.manual_seed(0)
    from bnn_core.registries import create_model

    model = create_model("lenet5", binarize=True, width=4, hidden=16)
    path = tmp_path / "lenet.bnnpack"
    export(model, path, (1, 28, 28), name="lenet5", source={"model": {"name": name,
           "options": options}})  # fmt: skip
    return path


def test_float_twin_is_rebuilt_from_metadata_only_within_limits(tmp_path):
    path = lenet_file(tmp_path, {"width": 4, "hidden": 16})
    twin = float_twin_from_metadata(load(path))
    assert sum(p.numel() for p in twin.parameters()) == load(path).tensor_elements
    header, data = read_parts(path)
    cases = [
        ({"width": 100_000}, "has [0-9,]+ parameters against the [0-9,]+ values the file "
         "stores .*: it is not the network in the file"),
        ({"width": 4, "hidden": 16, "junk": {"nested": 1}}, "not plain values"),
        ({"width": 1 << 40}, "not plain values"),
        ({"width": "wide"}, "parameter 'width'"),
        ([1, 2], "not plain values"),
    ]  # fmt: skip
    for options, pattern in cases:
        header["metadata"]["source"]["model"]["options"] = options
        edited_path = write_parts(tmp_path / "twin.bnnpack", header, data)
        with pytest.raises(ConfigError, match=pattern):
            float_twin_from_metadata(load(edited_path))
    header["metadata"]["source"] = "lenet5"
    with pytest.raises(ConfigError, match="does not record which registered model"):
        float_twin_from_metadata(load(write_parts(tmp_path / "none.bnnpack", header, data)))


def test_bench_refuses_a_twin_the_file_does_not_hold(tmp_path, capsys):
    path = lenet_file(tmp_path, {"width": 4, "hidden": 16})
    header, data = read_parts(path)
    header["metadata"]["source"]["model"]["options"] = {"width": 100_000}
    edited = write_parts(tmp_path / "wide.bnnpack", header, data)
    assert main(["bench", str(edited), "--rounds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bnn bench: error: ") and "float comparison is refused" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_every_limit_is_documented_in_the_module():
    doc = validate.__doc__ or ""
    for name in [n for n in dir(validate) if n.startswith("MAX_")]:
        assert f"``{name}``" in doc, name
